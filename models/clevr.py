"""Sort-of-CLEVR: a seeded procedural visual question answering set (Santoro et al. 2017).

Each scene is a 75x75 RGB image on a white background holding six objects, one of each
colour (red, blue, green, orange, yellow, gray); each object is a square or a circle and no
two objects overlap. Questions come in six types, three non-relational and three relational:

========== ===================================================================== ===========
type       canonical form                                                        answers
========== ===================================================================== ===========
shape      What is the shape of the {c} object?                                  square/circle
horizontal Is the {c} object on the left or right of the image?                  left/right
vertical   Is the {c} object on the top or bottom of the image?                  top/bottom
closest    What is the shape of the object closest to the {c} object?            square/circle
furthest   What is the shape of the object furthest from the {c} object?         square/circle
count      How many objects have the same shape as the {c} object?               one ... six
========== ===================================================================== ===========

Every type also has paraphrases (:data:`TEMPLATES`), and a seventh kind, ``describe``
("Describe the image" and paraphrases), is answered by a caption naming every object and
its quadrant (:func:`caption`). Answers are words; :func:`score_reply` says whether a free
text reply gives exactly one of a question's candidate answers and whether it is the right
one (the end-to-end evaluation rule).

Everything is a pure function of a seed: ``make_scene(seed)`` always draws the same scene,
``questions_for(scene, seed)`` the same questions. Scenes are resampled until the closest
and furthest object of every object is unique, so every relational answer is well defined.
Objects keep a small margin from the border because the image encoder centre-crops
(a 75 px image scaled to 256 loses about 5 px a side in the 224 crop).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 75
HALF = 5
"""Half the side of a square / the radius of a circle, in pixels (objects are 11 px across)."""
MARGIN = 10
"""Smallest distance from an object's centre to the border."""
COLOURS = ("red", "blue", "green", "orange", "yellow", "gray")
RGB = {
    "red": (255, 0, 0),
    "blue": (0, 0, 255),
    "green": (0, 160, 0),
    "orange": (255, 140, 0),
    "yellow": (240, 220, 0),
    "gray": (128, 128, 128),
}
SHAPES = ("square", "circle")
QUESTION_TYPES = ("shape", "horizontal", "vertical", "closest", "furthest", "count")
NON_RELATIONAL = ("shape", "horizontal", "vertical")
RELATIONAL = ("closest", "furthest", "count")
DESCRIBE = "describe"
NUMBERS = ("one", "two", "three", "four", "five", "six")
ANSWERS = ("square", "circle", "left", "right", "top", "bottom") + NUMBERS
"""Every answer word, in the order the answer head uses (see :func:`answer_vocabulary`)."""
NONE_ANSWER = "none"
"""Answer-head class for 'this is not a Sort-of-CLEVR question about a Sort-of-CLEVR scene'."""

CANDIDATES = {
    "shape": ("square", "circle"),
    "horizontal": ("left", "right"),
    "vertical": ("top", "bottom"),
    "closest": ("square", "circle"),
    "furthest": ("square", "circle"),
    "count": NUMBERS,
}
"""The answers a reply is checked against, per question type."""
SYNONYMS = {
    "one": ("one", "1"), "two": ("two", "2"), "three": ("three", "3"),
    "four": ("four", "4"), "five": ("five", "5"), "six": ("six", "6"),
    "gray": ("gray", "grey"),
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "shape": (
        "What is the shape of the {c} object?",
        "What shape is the {c} object?",
        "Is the {c} object a square or a circle?",
        "Which shape does the {c} thing have?",
        "Tell me the shape of the {c} object.",
    ),
    "horizontal": (
        "Is the {c} object on the left or right of the image?",
        "Is the {c} object on the left side or the right side?",
        "Which side is the {c} object on, left or right?",
        "Is the {c} shape in the left or the right half of the picture?",
    ),
    "vertical": (
        "Is the {c} object on the top or bottom of the image?",
        "Is the {c} object at the top or at the bottom?",
        "Is the {c} shape in the top half or the bottom half of the picture?",
        "Which half is the {c} object in, top or bottom?",
    ),
    "closest": (
        "What is the shape of the object closest to the {c} object?",
        "What shape is the object nearest to the {c} object?",
        "Which shape is closest to the {c} object?",
        "Is the object nearest the {c} one a square or a circle?",
    ),
    "furthest": (
        "What is the shape of the object furthest from the {c} object?",
        "What shape is the object farthest from the {c} object?",
        "Which shape is furthest away from the {c} object?",
        "Is the object farthest from the {c} one a square or a circle?",
    ),
    "count": (
        "How many objects have the same shape as the {c} object?",
        "How many objects share the shape of the {c} object?",
        "Count the objects with the same shape as the {c} one.",
        "How many shapes are like the {c} object, counting it?",
    ),
    DESCRIBE: (
        "Describe the image.",
        "Describe the image",
        "What is in this image?",
        "What do you see in the picture?",
        "Describe the picture.",
    ),
}
"""Natural-language forms per question type; the first is the canonical one."""

# Questions and images that are *not* Sort-of-CLEVR, for the answer head's "none" class.
OTHER_QUESTIONS = (
    "What is the capital of France?",
    "Tell me a joke.",
    "What colour is the background?",
    "Is there a cat in this picture?",
    "What animal is this?",
    "How are you today?",
    "What is written on the sign?",
    "Who painted this?",
    "Write a haiku about the sea.",
    "What is two plus two?",
    "Summarise this photo in one word.",
    "Is it raining in the picture?",
    "What is the red car doing?",
    "How many people are in the photo?",
    "What is the shape of the table?",
    "Is the dog on the left or the right?",
    "What time is it?",
    "Translate hello into Spanish.",
    "What kind of food is this?",
    "Where was this photo taken?",
)


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    x: int
    """Centre column in pixels (0 = left)."""
    y: int
    """Centre row in pixels (0 = top)."""

    @property
    def horizontal(self) -> str:
        return "left" if self.x < IMAGE_SIZE / 2 else "right"

    @property
    def vertical(self) -> str:
        return "top" if self.y < IMAGE_SIZE / 2 else "bottom"


@dataclass(frozen=True)
class Scene:
    seed: int
    objects: tuple[SceneObject, ...]

    def by_colour(self, colour: str) -> SceneObject:
        for o in self.objects:
            if o.colour == colour:
                return o
        raise KeyError(f"no {colour} object in scene {self.seed}")

    def render(self) -> Image.Image:
        return render(self)


@dataclass(frozen=True)
class Question:
    kind: str
    """One of QUESTION_TYPES or DESCRIBE."""
    colour: str | None
    text: str
    answer: str
    """The answer word (for DESCRIBE: the caption)."""
    template: int = 0
    """Index into TEMPLATES[kind] (0 = canonical)."""

    @property
    def relational(self) -> bool:
        return self.kind in RELATIONAL


def _distance2(a: SceneObject, b: SceneObject) -> int:
    return (a.x - b.x) ** 2 + (a.y - b.y) ** 2


def _well_defined(objects: list[SceneObject]) -> bool:
    """True when every object has a unique closest and a unique furthest other object."""
    for o in objects:
        d = sorted(_distance2(o, p) for p in objects if p is not o)
        if d[0] == d[1] or d[-1] == d[-2]:
            return False
    return True


def make_scene(seed: int) -> Scene:
    """Draw the scene for ``seed``: six objects, one per colour, no overlap (boxes apart by >= 2 px)."""
    rng = random.Random(seed)
    while True:
        objects: list[SceneObject] = []
        for colour in COLOURS:
            for _ in range(1000):
                x = rng.randint(MARGIN, IMAGE_SIZE - 1 - MARGIN)
                y = rng.randint(MARGIN, IMAGE_SIZE - 1 - MARGIN)
                # Bounding boxes [x-HALF, x+HALF] must be separated: Chebyshev distance > 2*HALF + 1.
                if all(max(abs(x - o.x), abs(y - o.y)) > 2 * HALF + 2 for o in objects):
                    break
            else:  # pragma: no cover - 1000 misses in a row does not happen at this density
                break
            objects.append(SceneObject(colour, rng.choice(SHAPES), x, y))
        if len(objects) == len(COLOURS) and _well_defined(objects):
            return Scene(seed, tuple(objects))


def render(scene: Scene) -> Image.Image:
    """The scene as a 75x75 RGB image: white background, filled squares and circles."""
    im = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for o in scene.objects:
        box = (o.x - HALF, o.y - HALF, o.x + HALF, o.y + HALF)
        if o.shape == "square":
            draw.rectangle(box, fill=RGB[o.colour])
        else:
            draw.ellipse(box, fill=RGB[o.colour])
    return im


def answer(scene: Scene, kind: str, colour: str) -> str:
    """The answer word to a question of type ``kind`` about the ``colour`` object, by geometry."""
    obj = scene.by_colour(colour)
    others = [o for o in scene.objects if o is not obj]
    if kind == "shape":
        return obj.shape
    if kind == "horizontal":
        return obj.horizontal
    if kind == "vertical":
        return obj.vertical
    if kind == "closest":
        return min(others, key=lambda o: _distance2(obj, o)).shape
    if kind == "furthest":
        return max(others, key=lambda o: _distance2(obj, o)).shape
    if kind == "count":
        return NUMBERS[sum(o.shape == obj.shape for o in scene.objects) - 1]
    raise ValueError(f"unknown question type {kind!r}: choose one of {', '.join(QUESTION_TYPES)}")


def caption(scene: Scene) -> str:
    """'There are six objects: a red square at the top left, a blue circle at the bottom right, ...'"""
    parts = [f"{'an' if o.colour[0] in 'aeiou' else 'a'} {o.colour} {o.shape} at the {o.vertical} {o.horizontal}" for o in scene.objects]
    return "There are six objects: " + ", ".join(parts[:-1]) + f", and {parts[-1]}."


def caption_attributes() -> list[str]:
    """Names of the binary facts a caption is made of, in the caption head's order:
    for each colour '<colour> circle' (else square), '<colour> right' (else left),
    '<colour> bottom' (else top)."""
    return [f"{c} {a}" for c in COLOURS for a in ("circle", "right", "bottom")]


def caption_targets(scene: Scene) -> list[float]:
    """The scene's caption facts as 0/1, in :func:`caption_attributes` order."""
    out = []
    for c in COLOURS:
        o = scene.by_colour(c)
        out += [float(o.shape == "circle"), float(o.horizontal == "right"), float(o.vertical == "bottom")]
    return out


def caption_from_facts(probs: list[float] | np.ndarray) -> str:
    """Inverse of :func:`caption_targets`: probabilities (18) -> the caption sentence."""
    objects = []
    for i, c in enumerate(COLOURS):
        p_circle, p_right, p_bottom = (float(v) for v in probs[3 * i : 3 * i + 3])
        x = IMAGE_SIZE - 1 - MARGIN if p_right >= 0.5 else MARGIN
        y = IMAGE_SIZE - 1 - MARGIN if p_bottom >= 0.5 else MARGIN
        objects.append(SceneObject(c, "circle" if p_circle >= 0.5 else "square", x, y))
    return caption(Scene(-1, tuple(objects)))


def make_question(scene: Scene, kind: str, colour: str | None, template: int = 0) -> Question:
    forms = TEMPLATES[kind]
    text = forms[template % len(forms)].format(c=colour)
    ans = caption(scene) if kind == DESCRIBE else answer(scene, kind, colour or "")
    return Question(kind, colour if kind != DESCRIBE else None, text, ans, template % len(forms))


def questions_for(scene: Scene, seed: int | None = None, paraphrase: bool = True) -> list[Question]:
    """All 36 questions of a scene (6 types x 6 colours) plus one description request.

    With ``paraphrase`` each question takes a template drawn from ``seed`` (default: the scene's
    seed); without, every question is in its canonical form."""
    rng = random.Random(scene.seed if seed is None else seed)
    out = []
    for kind in QUESTION_TYPES:
        for colour in COLOURS:
            t = rng.randrange(len(TEMPLATES[kind])) if paraphrase else 0
            out.append(make_question(scene, kind, colour, t))
    t = rng.randrange(len(TEMPLATES[DESCRIBE])) if paraphrase else 0
    out.append(make_question(scene, DESCRIBE, None, t))
    return out


def other_image(seed: int) -> Image.Image:
    """A seeded image that is *not* a Sort-of-CLEVR scene (noise, gradients, stripes, blobs in
    other colours, photos-like textures), for the answer head's 'none' class."""
    rng = np.random.default_rng(seed)
    kind = seed % 5
    size = int(rng.integers(64, 160))
    if kind == 0:  # coloured noise, smoothed
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(im, dtype=np.int16) + rng.integers(-30, 30, (size, size, 3))
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if kind == 1:  # gradient
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, size)[:, None, None]
        arr = (a * (1 - t) + b * t)[:, :, :].repeat(size, axis=1)
        return Image.fromarray(arr.astype(np.uint8))
    if kind == 2:  # stripes
        period = int(rng.integers(4, 20))
        c1, c2 = tuple(int(v) for v in rng.integers(0, 256, 3)), tuple(int(v) for v in rng.integers(0, 256, 3))
        im = Image.new("RGB", (size, size), c1)
        d = ImageDraw.Draw(im)
        for x in range(0, size, period * 2):
            d.rectangle((x, 0, x + period - 1, size), fill=c2)
        return im.rotate(float(rng.uniform(0, 180)), fillcolor=c1)
    if kind == 3:  # many random blobs on a coloured background
        bg = tuple(int(v) for v in rng.integers(0, 256, 3))
        im = Image.new("RGB", (size, size), bg)
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(10, 40))):
            x, y = rng.integers(0, size, 2)
            r = int(rng.integers(3, 20))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            d.ellipse((int(x) - r, int(y) - r, int(x) + r, int(y) + r), fill=fill)
        return im
    # kind 4: a blurred, posterised random field (rough "photo" texture)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.float32)
    arr = arr * rng.uniform(0.5, 1.2) + rng.normal(0, 12, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


# -- scoring replies ---------------------------------------------------------------------------

def _pattern(word: str) -> re.Pattern:
    forms = SYNONYMS.get(word, (word,))
    alts = "|".join(re.escape(f) for f in forms)
    return re.compile(rf"(?<![\w-])(?:{alts})(?:s|es)?(?![\w-])", re.IGNORECASE)


def mentioned(reply: str, kind: str) -> list[str]:
    """The candidate answers of question type ``kind`` that the reply mentions (whole words;
    plurals and digits count: 'squares', '3')."""
    return [c for c in CANDIDATES[kind] if _pattern(c).search(reply)]


def score_reply(reply: str, kind: str, correct: str) -> bool:
    """A reply is right when it mentions exactly one candidate answer and that one is correct."""
    found = mentioned(reply, kind)
    return len(found) == 1 and found[0] == correct


@dataclass(frozen=True)
class DescriptionScore:
    """How well a free-text description states a scene, object by object (6 objects)."""

    named: int
    """Objects whose colour the description names."""
    shape: int
    """Objects whose shape is the first shape word after their colour (before the next colour)."""
    horizontal: int
    vertical: int
    position: int
    """Objects whose left/right and top/bottom words are both right."""
    whole: int
    """Objects with colour, shape and both position words right."""
    extra: int
    """Colours named more than once (a description that lists an object twice)."""

    @property
    def scene_right(self) -> bool:
        return self.whole == len(COLOURS) and self.extra == 0


_FIRST = {kind: re.compile("|".join(rf"(?<![\w-])({w})s?(?![\w-])" for w in words), re.IGNORECASE)
          for kind, words in (("shape", SHAPES), ("horizontal", ("left", "right")), ("vertical", ("top", "bottom")))}


def score_description(reply: str, scene: Scene) -> DescriptionScore:
    """Score a description of ``scene`` per object: the text from an object's colour word up to
    the next colour word is what the description says about it ("a red square at the top
    left, ..."); its first shape word, left/right word and top/bottom word are compared with
    the scene. An object whose colour is never named scores nothing."""
    spots = []  # (position in the reply, colour)
    for colour in COLOURS:
        spots += [(m.start(), colour) for m in _pattern(colour).finditer(reply)]
    spots.sort()
    said: dict[str, str] = {}
    extra = 0
    for i, (start, colour) in enumerate(spots):
        end = spots[i + 1][0] if i + 1 < len(spots) else len(reply)
        if colour in said:
            extra += 1
            continue
        said[colour] = reply[start:end]
    counts = dict.fromkeys(("shape", "horizontal", "vertical", "position", "whole"), 0)
    for colour, text in said.items():
        obj = scene.by_colour(colour)
        truth = {"shape": obj.shape, "horizontal": obj.horizontal, "vertical": obj.vertical}
        ok = {}
        for kind, pattern in _FIRST.items():
            m = pattern.search(text)
            ok[kind] = m is not None and m.group(0).lower().rstrip("s") == truth[kind]
            counts[kind] += ok[kind]
        counts["position"] += ok["horizontal"] and ok["vertical"]
        counts["whole"] += all(ok.values())
    return DescriptionScore(named=len(said), extra=extra, **counts)


# -- turning the fusion core's answer into evidence the generator repeats ----------------------

_KIND_WORDS = (
    ("closest", re.compile(r"\b(closest|nearest|near|close)\b", re.IGNORECASE)),
    ("furthest", re.compile(r"\b(furthest|farthest|further|farther|far)\b", re.IGNORECASE)),
)
_COLOUR_WORDS = {"grey": "gray"}


def question_colour(question: str) -> str | None:
    """The first colour named in a question ('grey' counts as gray), or None."""
    for word in re.findall(r"[a-z]+", question.lower()):
        word = _COLOUR_WORDS.get(word, word)
        if word in COLOURS:
            return word
    return None


CHOICES = (("left", "right"), ("top", "bottom"), SHAPES)
"""Answer pairs a question can offer as a choice ('... on the left or right ...')."""


def rejected_choices(question: str, answer: str) -> tuple[str, ...]:
    """The other answers a question offers beside ``answer``, when it names a choice that
    includes ``answer``: ('Is the red object on the left or right?', 'right') -> ('left',);
    () when the question offers no such choice (a shape question that names no shapes)."""
    words = set(re.findall(r"[a-z]+", question.lower()))
    for pair in CHOICES:
        if answer in pair and words.issuperset(pair):
            return tuple(w for w in pair if w != answer)
    return ()


def answer_statement(question: str, answer: str) -> str:
    """A declarative sentence that states ``answer`` to a Sort-of-CLEVR ``question`` and names
    no other candidate answer, e.g. ('Is the red object a square or a circle?', 'square') ->
    'The red object is a square.' A small generator repeats such a sentence far more reliably
    than it picks the right word out of a quoted question that names both candidates."""
    colour = question_colour(question)
    subject = f"the {colour} object" if colour else "the object"
    if answer in ("left", "right"):
        return f"{subject.capitalize()} is on the {answer} side of the image."
    if answer in ("top", "bottom"):
        return f"{subject.capitalize()} is at the {answer} of the image."
    if answer in NUMBERS:  # measured: SmolLM2-135M repeats this form, not "Four objects have ..."
        return f"The answer is {answer}."
    if answer in SHAPES:
        for kind, pattern in _KIND_WORDS:
            if pattern.search(question):
                where = "closest to" if kind == "closest" else "furthest from"
                return f"The object {where} {subject} is a {answer}."
        return f"{subject.capitalize()} is a {answer}."
    raise ValueError(f"{answer!r} is not a Sort-of-CLEVR answer")
