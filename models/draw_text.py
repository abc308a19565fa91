"""Read a scene description in words into what MMGAN draws (:class:`models.mmgan.Layout`).

Understood: any of the six Sort-of-CLEVR colours (red, blue, green, orange, yellow, gray or
grey), each at most once, each a square or a circle (or unspecified: 'a red object'), placed
by quadrant or half ('at the top left', 'in the lower right corner', 'on the left', 'at the
top') or relative to another object ('left of', 'right of', 'above', 'below', 'under'). ::

    >>> d = parse("a green square left of a gray circle")
    >>> d.understood()
    'a green square left of the gray circle; a gray circle'

A relation is drawn at quadrant level: 'A left of B' puts A in the left half and B in the
right half. What is left open (a shape, a half, a whole position) is chosen at random by
:meth:`Description.layout`, among the layouts that satisfy every constraint. Anything the parser
cannot use raises :class:`DescriptionError` with one line saying what it understood.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field

from models import clevr

MAX_LENGTH = 400
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
MAX_PER_QUADRANT = 3
"""At most this many objects share a quadrant (four 11 px objects barely fit; three always do)."""


@dataclass(frozen=True)
class Placed:
    colour: str
    shape: str
    quadrant: str
    """One of QUADRANTS."""


@dataclass(frozen=True)
class Layout:
    """What to draw: at most one object per colour, each with a shape and a quadrant."""

    objects: tuple[Placed, ...]

    def key(self) -> str:
        """A canonical string ('blue square bottom right; red circle top left'), order-free."""
        return "; ".join(sorted(f"{o.colour} {o.shape} {o.quadrant}" for o in self.objects))

    def describe(self) -> str:
        """'a red circle at the top left and a blue square at the bottom right'."""
        parts = [f"{'an' if o.colour[0] in 'aeiou' else 'a'} {o.colour} {o.shape} at the {o.quadrant}" for o in self.objects]
        return " and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " and " + parts[-1]



_COLOUR_ALIASES = {"grey": "gray"}
_SHAPE_WORDS = {
    "square": "square", "squares": "square", "box": "square", "boxes": "square", "block": "square",
    "circle": "circle", "circles": "circle", "dot": "circle", "disc": "circle", "disk": "circle",
    "ball": "circle", "round": "circle",
    "object": None, "objects": None, "thing": None, "shape": None, "one": None,
}
_OTHER_COLOURS = {"purple", "pink", "black", "white", "brown", "cyan", "magenta", "violet", "teal",
                  "navy", "gold", "silver", "beige", "maroon", "turquoise", "indigo", "lime"}
_OTHER_SHAPES = {"triangle", "triangles", "star", "stars", "rectangle", "rectangles", "oval", "ellipse",
                 "hexagon", "pentagon", "diamond", "heart", "line", "cross", "cube", "sphere", "cylinder"}
_VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
_HORIZONTAL = {"left": "left", "right": "right"}
_RELATIONS = {"left": "left of", "right": "right of", "above": "above", "over": "above",
              "below": "below", "under": "below", "beneath": "below", "underneath": "below"}
_SCENE_WORDS = {"image", "picture", "scene", "canvas", "frame", "drawing", "page"}
_NUMBER_WORDS = {"two", "three", "four", "five", "six", "2", "3", "4", "5", "6"}


class DescriptionError(ValueError):
    """A description that cannot be drawn; the message is one line for the user."""


@dataclass
class Spec:
    colour: str
    shape: str | None = None
    vertical: str | None = None
    horizontal: str | None = None

    def phrase(self) -> str:
        what = f"{'an' if self.colour[0] in 'aeiou' else 'a'} {self.colour} {self.shape or 'object'}"
        where = " ".join(w for w in (self.vertical, self.horizontal) if w)
        return f"{what} at the {where}" if where else what


@dataclass
class Description:
    objects: dict[str, Spec] = field(default_factory=dict)
    """colour -> what is asked of that object, in the order named."""
    relations: list[tuple[str, str, str]] = field(default_factory=list)
    """(colour A, 'left of' | 'right of' | 'above' | 'below', colour B)."""

    def understood(self) -> str:
        """What the parser read, e.g. 'a red circle at the top left; a blue square left of the gray circle'."""
        parts = []
        for c, s in self.objects.items():
            rel = [f"{r} the {b} {self.objects[b].shape or 'object'}" for a, r, b in self.relations if a == c]
            parts.append(" ".join([s.phrase()] + ([" and ".join(rel)] if rel else [])))
        return "; ".join(parts) if parts else "nothing I can draw"

    def layouts(self) -> list[Layout]:
        """Every quadrant layout (shapes left open stay open: None) that satisfies the description."""
        specs = list(self.objects.values())
        options = []
        for s in specs:
            vs = [s.vertical] if s.vertical else ["top", "bottom"]
            hs = [s.horizontal] if s.horizontal else ["left", "right"]
            options.append([f"{v} {h}" for v in vs for h in hs])
        out = []
        for combo in itertools.product(*options):
            where = {s.colour: q for s, q in zip(specs, combo)}
            if any(combo.count(q) > MAX_PER_QUADRANT for q in QUADRANTS):
                continue
            if all(_holds(where[a], r, where[b]) for a, r, b in self.relations):
                out.append(Layout(tuple(Placed(s.colour, s.shape or "", where[s.colour]) for s in specs)))
        return out

    def layout(self, rng: random.Random | None = None) -> Layout:
        """One layout satisfying the description, open choices (quadrant, shape) drawn from ``rng``."""
        rng = rng or random.Random(0)
        options = self.layouts()
        if not options:
            raise DescriptionError(f"these cannot all hold at once in a 2x2 grid of quadrants "
                                   f"(at most {MAX_PER_QUADRANT} objects a quadrant): {self.understood()}")
        chosen = rng.choice(options)
        return Layout(tuple(Placed(o.colour, o.shape or rng.choice(clevr.SHAPES), o.quadrant) for o in chosen.objects))


def _holds(qa: str, relation: str, qb: str) -> bool:
    va, ha = qa.split()
    vb, hb = qb.split()
    return {"left of": ha == "left" and hb == "right", "right of": ha == "right" and hb == "left",
            "above": va == "top" and vb == "bottom", "below": va == "bottom" and vb == "top"}[relation]


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    text = re.sub(r"\b(top|bottom|upper|lower)(left|right)\b", r"\1 \2", text)
    return re.findall(r"[a-z]+|\d+|[,;.]", text)


_HELP = ("I can draw squares and circles in red, blue, green, orange, yellow or gray, by quadrant "
         "or relation (e.g. 'a red circle at the top left and a blue square left of a green circle')")


def parse(text: str) -> Description:
    """Read a description. Raises :class:`DescriptionError` (one line) when nothing can be drawn
    from it or part of it names something outside the palette."""
    if len(text) > MAX_LENGTH:
        raise DescriptionError(f"a description is at most {MAX_LENGTH} characters")
    toks = _tokens(text)
    desc = Description()
    current: str | None = None  # the object a position or relation attaches to
    pending_rel: tuple[str, str] | None = None  # (colour A, relation) waiting for its B
    subject: str | None = None  # A of the last relation: 'X under Y and left of Z' keeps X

    def fail(why: str) -> DescriptionError:
        return DescriptionError(f"{why}; {_HELP}. Understood so far: {desc.understood()}")

    i = 0
    while i < len(toks):
        w = toks[i]
        colour = _COLOUR_ALIASES.get(w, w)
        if colour in clevr.COLOURS:
            shape, j = None, i + 1
            while j < len(toks) and j <= i + 2 and toks[j] not in _SHAPE_WORDS and toks[j] in ("coloured", "colored", "big", "small", "little", "filled", "solid"):
                j += 1
            if j < len(toks) and toks[j] in _SHAPE_WORDS:
                shape = _SHAPE_WORDS[toks[j]]
                j += 1
            elif j < len(toks) and toks[j] in _OTHER_SHAPES:
                raise fail(f"I cannot draw a {toks[j].rstrip('s')}")
            known = desc.objects.get(colour)
            if known is not None:
                if pending_rel is None and known.shape is not None and shape is not None and known.shape != shape:
                    raise fail(f"{colour} is named twice (one object per colour)")
                if pending_rel is None and not (i > 0 and toks[i - 1] == "the"):
                    raise fail(f"{colour} is named twice (one object per colour)")
                if shape and known.shape and shape != known.shape:
                    raise fail(f"the {colour} object cannot be both a {known.shape} and a {shape}")
                known.shape = known.shape or shape
            else:
                desc.objects[colour] = Spec(colour, shape)
            if pending_rel is not None:
                a, rel = pending_rel
                if a == colour:
                    raise fail(f"the {colour} object cannot be {rel} itself")
                desc.relations.append((a, rel, colour))
                pending_rel, subject = None, a
            current = colour
            i = j
            continue
        if w in _OTHER_COLOURS:
            raise fail(f"I cannot draw {w}")
        if w in _OTHER_SHAPES:
            raise fail(f"I cannot draw a {w.rstrip('s')}")
        if w in _NUMBER_WORDS and i + 1 < len(toks) and (toks[i + 1] in _SHAPE_WORDS or toks[i + 1] in clevr.COLOURS):
            raise fail("one object per colour: name each object with its own colour")
        # relation: 'left of X', 'to the right of X', 'above X', 'under X'
        if w in _RELATIONS and current is not None:
            nxt = toks[i + 1] if i + 1 < len(toks) else ""
            after = [t for t in toks[i + 2:i + 5] if t not in ("the", "a", "an")]
            is_side = w in ("left", "right")
            targets_object = (nxt == "of" if is_side else True) and bool(after) and _COLOUR_ALIASES.get(after[0], after[0]) in clevr.COLOURS
            if targets_object:
                conj = i > 0 and toks[i - 1] in ("and", ",", "but", "also")
                pending_rel = (subject if conj and subject else current, _RELATIONS[w])
                i += 2 if is_side else 1
                continue
            if not is_side and w in ("above", "over", "below", "under", "beneath", "underneath"):
                raise fail(f"'{w}' needs another coloured object after it")
        # position: 'top left', 'upper right corner', 'on the left', 'at the bottom'
        if w in _VERTICAL or w in _HORIZONTAL:
            if current is None:
                raise fail(f"'{w}' comes before any object it could place")
            spec = desc.objects[current]
            j = i
            while j < len(toks) and (toks[j] in _VERTICAL or toks[j] in _HORIZONTAL or toks[j] in ("hand", "side", "corner", "half")):
                t = toks[j]
                if t in _VERTICAL:
                    if spec.vertical and spec.vertical != _VERTICAL[t]:
                        raise fail(f"the {current} object cannot be at both the {spec.vertical} and the {_VERTICAL[t]}")
                    spec.vertical = _VERTICAL[t]
                elif t in _HORIZONTAL:
                    if spec.horizontal and spec.horizontal != _HORIZONTAL[t]:
                        raise fail(f"the {current} object cannot be both {spec.horizontal} and {_HORIZONTAL[t]}")
                    spec.horizontal = _HORIZONTAL[t]
                j += 1
            # 'left of the picture' is a place, not a relation
            if j + 2 < len(toks) and toks[j] == "of" and toks[j + 1] == "the" and toks[j + 2] in _SCENE_WORDS:
                j += 3
            i = j
            continue
        i += 1
    if pending_rel is not None:
        raise fail(f"'{pending_rel[1]}' needs a coloured object after it")
    if not desc.objects:
        shown = text.strip()[:60] or "(nothing)"
        raise DescriptionError(f"{_HELP}; I found no object to draw in '{shown}'")
    desc.layout(random.Random(0))  # raises when the constraints cannot all hold
    return desc
