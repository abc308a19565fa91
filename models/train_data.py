"""The fusion core's training data: Sort-of-CLEVR scenes and questions (with their noisy-text
and spoken variants) as cached features, sampled in reproducible batches (:class:`ClevrData`).
The training loop is :mod:`models.train`."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from models import clevr
from models.features import TextTable, image_tokens
from models.image import GRIDS

if TYPE_CHECKING:
    from models.train import TrainConfig

DESCRIBE_ANSWER = "describe"
"""Answer-head class for 'this asks for a description: read the caption head'."""


def answer_vocabulary() -> list[str]:
    """The answer head's classes: the 12 answer words, then 'none' and 'describe'."""
    return list(clevr.ANSWERS) + [clevr.NONE_ANSWER, DESCRIBE_ANSWER]


def to_device(batch: dict, device) -> dict:
    """A batch's tensors on ``device``."""
    return {k: v.to(device) for k, v in batch.items()}

# ------------------------------------------------------------------------------ text variants

_HOMOPHONES = {
    "red": ["read", "rid", "bread"], "blue": ["blew", "below"], "right": ["write", "bright"],
    "gray": ["grey", "great", "grade"], "four": ["for"], "two": ["to", "too"], "the": ["a", "uh"],
    "square": ["squared", "where"], "circle": ["circles", "cycle"], "left": ["lift", "laughed"],
    "top": ["stop", "tap"], "bottom": ["button", "bottle"], "object": ["objects", "subject"],
    "shape": ["shaped", "change"], "yellow": ["hello", "yellows"], "green": ["greene", "screen"],
    "orange": ["arrange", "oranges"], "closest": ["close", "closes"], "furthest": ["farthest", "first"],
    "many": ["money"], "is": ["as", "it's"], "of": ["off", "a"],
}
_KEEP = set(clevr.COLOURS) | {h for c in clevr.COLOURS for h in _HOMOPHONES.get(c, [])}
"""Never dropped: without its colour (or what it was misheard as) a question is unanswerable."""


def noisy_text(text: str, rng: random.Random) -> str:
    """A recognizer-like corruption: lower case, no punctuation, then one to three of
    homophone swaps, dropped or repeated words, and fillers (colour words are never dropped)."""
    words = re.sub(r"[^a-z' ]+", " ", text.lower()).split()
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        i = rng.randrange(len(words))
        w = words[i]
        if op < 0.5 and w in _HOMOPHONES:
            words[i] = rng.choice(_HOMOPHONES[w])
        elif op < 0.7 and w not in _KEEP and len(words) > 3:
            del words[i]
        elif op < 0.85:
            words.insert(i, w)
        else:
            words.insert(i, rng.choice(["uh", "um", "and", "so"]))
    return " ".join(words)


def question_strings(noise_variants: int, seed: int = 0) -> dict[tuple[str, str | None, int], list[str]]:
    """(kind, colour, template) -> [clean text, noisy variant 1, ...] for every question form."""
    out = {}
    for kind, forms in clevr.TEMPLATES.items():
        colours = [None] if kind == clevr.DESCRIBE else list(clevr.COLOURS)
        for colour in colours:
            for t, form in enumerate(forms):
                text = form.format(c=colour)
                rng = random.Random(f"{seed}/{text}")
                out[(kind, colour, t)] = [text] + [noisy_text(text, rng) for _ in range(noise_variants)]
    return out


# ------------------------------------------------------------------------------ data


class ClevrData:
    """Cached features + answers for a range of scenes and of non-scene images, and a sampler.

    Batches are drawn by :meth:`batch` from a numpy generator, so a (seed, step) pair always
    gives the same batch (resuming repeats nothing and skips nothing)."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        split: str,
        texts: TextTable,
        strings: dict,
        spoken: dict[str, list[str]],
        encoder=None,
        teacher_grid: str = "",
    ):
        self.cfg = cfg
        first, count = (cfg.train_first_seed, cfg.train_scenes) if split == "train" else (cfg.eval_first_seed, cfg.eval_scenes)
        ofirst, ocount = (cfg.other_first_seed, cfg.other_images) if split == "train" else (cfg.eval_other_first_seed, cfg.eval_other_images)
        cache = cfg.cache_dir or None
        self.scenes = [clevr.make_scene(s) for s in range(first, first + count)]
        grid = cfg.fusion.get("image_grid", "final")
        self.image = image_tokens(encoder, "scene", first, count, cache, grid=grid)  # (S, N, D) float16: 49 x 320 or 196 x 432
        self.other = image_tokens(encoder, "other", ofirst, ocount, cache, grid=grid) if ocount else None  # (O, N, D)
        # A teacher core on another grid (the align stage's ``align_teacher``) reads its own tokens of the same images.
        self.teacher_grid = teacher_grid if teacher_grid and teacher_grid != grid else None
        if self.teacher_grid:
            self.teacher_image = image_tokens(encoder, "scene", first, count, cache, grid=teacher_grid)  # (S, N', D')
            self.teacher_other = image_tokens(encoder, "other", ofirst, ocount, cache, grid=teacher_grid) if ocount else None
        vocab = answer_vocabulary()
        self.vocab = vocab
        kinds = clevr.QUESTION_TYPES
        # answers[s, k, c]: answer index of question type k about colour c in scene s
        self.answers = torch.tensor(
            [[[vocab.index(clevr.answer(sc, k, c)) for c in clevr.COLOURS] for k in kinds] for sc in self.scenes]
        )  # (S, 6, 6)
        self.facts = torch.tensor([clevr.caption_targets(sc) for sc in self.scenes])  # (S, 18)
        # The attention loss compares the core's own attention (over its core_grid when it has one) with these cells.
        core_tokens = GRIDS[cfg.fusion["core_grid"]][0] if cfg.fusion.get("core_grid") else self.image.shape[1]
        self.cells = object_cells(self.scenes, core_tokens) if cfg.attention_weight > 0 else None  # (S, 6, N)
        self.slot_xy, self.slot_shape = object_slots(self.scenes)  # (S, 6, 2), (S, 6): the slot reasoner's targets
        self.texts, self.strings, self.spoken = texts, strings, spoken
        # Row tables: rows[(kind, colour, template)] = (clean row, [noisy rows], [spoken rows])
        self.rows = {}
        for key, variants in strings.items():
            clean = texts.index[variants[0]]
            noisy = [texts.index[v] for v in variants[1:]]
            heard = [texts.index[v] for v in spoken.get(variants[0], [])]
            self.rows[key] = (clean, noisy, heard)
        self.other_rows = [texts.index[q] for q in clevr.OTHER_QUESTIONS]

    def _row(self, key, rng: np.random.Generator, variant: str) -> int:
        clean, noisy, heard = self.rows[key]
        if variant == "spoken":
            return heard[rng.integers(len(heard))] if heard else clean
        if variant == "noisy":
            return noisy[rng.integers(len(noisy))] if noisy else clean
        if variant == "typed":
            return clean
        r = rng.random()  # "mix": the training distribution
        if heard and r < self.cfg.spoken_fraction:
            return heard[rng.integers(len(heard))]
        if noisy and r < self.cfg.spoken_fraction + self.cfg.noise_fraction:
            return noisy[rng.integers(len(noisy))]
        return clean

    def examples(self, n: int, rng: np.random.Generator, *, variant: str = "mix", canonical: bool = False,
                 none_fraction: float | None = None, describe_fraction: float | None = None) -> dict:
        """Sample n examples. Returns a dict of tensors:
        image (n, N, D) float32 (49 x 320, or 196 x 432 on the fine grid), text (n, T, 576), text_mask (n, T), answer (n,) long,
        facts (n, 18), has_facts (n,) bool, kind (n,) long (0-5 question types, 6 describe,
        7 none), scene (n,) long (-1 for non-scene images), row (n,) text rows, colour (n,) the
        named colour (-1: none); with a teacher on another grid also teacher_image (n, N', D'),
        the same images on the teacher's grid; with object slots slot_xy (n, 6, 2) and
        slot_shape (n, 6), every object's centre and shape (zeros for non-scene images)."""
        nf = self.cfg.none_fraction if none_fraction is None else none_fraction
        df = self.cfg.describe_fraction if describe_fraction is None else describe_fraction
        kinds = list(clevr.QUESTION_TYPES)
        scene = rng.integers(len(self.scenes), size=n)
        draw = rng.random(n)
        images, rows, answers, kind_ids, scene_ids, has_facts = [], [], [], [], [], []
        origins = []  # per example: scene index, or -(j + 1) for non-scene image j
        named = []  # per example: the colour index a question of types 0-5 names; else -1
        none_id, describe_id = self.vocab.index(clevr.NONE_ANSWER), self.vocab.index(DESCRIBE_ANSWER)
        for i in range(n):
            s = int(scene[i])
            if draw[i] < nf:  # a 'none' example: non-scene image with any question, or scene + unrelated question
                if self.other is not None and rng.random() < 0.6:
                    j = int(rng.integers(len(self.other)))
                    img = self.other[j]
                    k = clevr.DESCRIBE if rng.random() < 0.3 else kinds[rng.integers(6)]
                    colour = None if k == clevr.DESCRIBE else clevr.COLOURS[rng.integers(6)]
                    t = 0 if canonical else int(rng.integers(len(clevr.TEMPLATES[k])))
                    row = self._row((k, colour, t), rng, variant)
                    s = -1
                    origins.append(-(j + 1))
                else:
                    img = self.image[s]
                    row = self.other_rows[rng.integers(len(self.other_rows))]
                    origins.append(s)
                images.append(img), rows.append(row), answers.append(none_id), kind_ids.append(7)
                scene_ids.append(s), has_facts.append(False), named.append(-1)
            elif draw[i] < nf + df:  # describe a scene
                t = 0 if canonical else int(rng.integers(len(clevr.TEMPLATES[clevr.DESCRIBE])))
                images.append(self.image[s]), rows.append(self._row((clevr.DESCRIBE, None, t), rng, variant))
                origins.append(s)
                answers.append(describe_id), kind_ids.append(6), scene_ids.append(s), has_facts.append(True)
                named.append(-1)
            else:
                k, c = int(rng.integers(6)), int(rng.integers(6))
                t = 0 if canonical else int(rng.integers(len(clevr.TEMPLATES[kinds[k]])))
                images.append(self.image[s]), rows.append(self._row((kinds[k], clevr.COLOURS[c], t), rng, variant))
                origins.append(s)
                answers.append(int(self.answers[s, k, c])), kind_ids.append(k), scene_ids.append(s), has_facts.append(False)
                named.append(c)
        rows_t = torch.tensor(rows)
        text, mask = self.texts.lookup(rows_t)  # (n, T, 576), (n, T)
        sid = torch.tensor(scene_ids)
        facts = torch.zeros(n, self.facts.shape[1])
        ok = sid >= 0
        facts[ok] = self.facts[sid[ok]]
        batch = {
            "image": torch.stack(images).float(),  # (n, N, D): 49 x 320 or 196 x 432
            "text": text,
            "text_mask": mask,
            "answer": torch.tensor(answers),
            "facts": facts,  # (n, 18)
            "has_facts": torch.tensor(has_facts),
            "kind": torch.tensor(kind_ids),
            "scene": sid,
            "row": rows_t,
            "colour": torch.tensor(named),  # (n,) the named colour's index, -1 for none / describe
        }
        if self.cfg.fusion.get("object_slots"):  # every object's centre and shape, for the slot reasoner
            batch["slot_xy"], batch["slot_shape"] = torch.zeros(n, *self.slot_xy.shape[1:]), torch.zeros(n, self.slot_shape.shape[1], dtype=torch.long)
            batch["slot_xy"][ok], batch["slot_shape"][ok] = self.slot_xy[sid[ok]], self.slot_shape[sid[ok]]  # (n, 6, 2), (n, 6)
        if self.cells is not None:  # where the named object lies, for the attention loss
            colour = batch["colour"]  # (n,)
            attended = torch.tensor([k < len(kinds) and kinds[k] in ATTENDED_KINDS for k in kind_ids])
            attend = attended & (colour >= 0)
            cells = torch.zeros(n, self.cells.shape[2], dtype=torch.bool)
            cells[attend] = self.cells[sid[attend], colour[attend]]
            batch["attend"], batch["cells"] = attend, cells  # (n,), (n, N)
        if self.teacher_grid:
            batch["teacher_image"] = torch.stack(
                [self.teacher_image[o] if o >= 0 else self.teacher_other[-o - 1] for o in origins]).float()  # (n, N', D')
        return batch


ATTENDED_KINDS = ("shape", "horizontal", "vertical")
"""Question types about one named object and nothing else: the attention loss asks the core
to look at that object for them (the relational ones also need other objects)."""


def object_cells(scenes: list, n_tokens: int) -> torch.Tensor:
    """For each scene and colour, the cells of the image encoder's square token grid that the
    object's pixels overlap (the grid covering the encoder's centre crop) -> (S, 6, N) bool."""
    from models.attention import covered_cells
    from models.image import crop_box

    side = round(n_tokens ** 0.5)
    if side * side != n_tokens:
        raise ValueError(f"the attention loss needs a square grid of image tokens, not {n_tokens}")
    box = crop_box(clevr.IMAGE_SIZE, clevr.IMAGE_SIZE)
    out = torch.zeros(len(scenes), len(clevr.COLOURS), side * side, dtype=torch.bool)
    for i, scene in enumerate(scenes):
        for c, colour in enumerate(clevr.COLOURS):
            for r, col in covered_cells(scene.by_colour(colour), box, (side, side)):
                out[i, c, r * side + col] = True
    return out


def crop_pixels() -> float:
    """How many scene pixels the image encoder's centre crop spans: the slots' 0..1 frame."""
    from models.image import crop_box

    left, _, right, _ = crop_box(clevr.IMAGE_SIZE, clevr.IMAGE_SIZE)
    return right - left


def object_slots(scenes: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Each scene's objects in colour order: centres (x, y) in the image encoder's crop (0..1
    across the token grid) (S, 6, 2), and shape indices into ``clevr.SHAPES`` (S, 6)."""
    from models.image import crop_box

    left, top, right, bottom = crop_box(clevr.IMAGE_SIZE, clevr.IMAGE_SIZE)
    xy = torch.tensor([[[(o.x - left) / (right - left), (o.y - top) / (bottom - top)] for o in map(sc.by_colour, clevr.COLOURS)]
                       for sc in scenes], dtype=torch.float32)
    shape = torch.tensor([[clevr.SHAPES.index(sc.by_colour(c).shape) for c in clevr.COLOURS] for sc in scenes])
    return xy, shape


def load_spoken(path: str, split: str = "train") -> dict[str, list[str]]:
    """{question: transcripts} from a :func:`make_spoken` file: every rendition but the last
    for ``split="train"``, only the last (a voice/rate/pitch/noise draw never trained on) for
    ``"eval"``, which the training-time spoken check reads. Those are still tuning voices: the
    spoken evaluation proper (:func:`models.evaluate.evaluate_spoken`) speaks with voices no
    transcript was made from. Empty transcripts (nothing recognized) are dropped."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: spoken questions file not found (make it with `python -m models.train CONFIG --make-spoken {p}`)")
    raw = json.loads(p.read_text(encoding="utf-8"))["transcripts"]
    pick = (lambda ts: ts[:-1]) if split == "train" else (lambda ts: ts[-1:])
    return {q: [t for t in pick(ts) if t.strip()] for q, ts in raw.items()}


def build_data(cfg: TrainConfig, text_encoder=None, image_encoder=None, splits=("train", "eval"),
               teacher_grid: str = "") -> dict[str, ClevrData]:
    """Texts and features for the splits (computed with the encoders when not cached). The
    eval split's spoken questions are the held-out renditions. ``teacher_grid``: also the image
    tokens on that grid (a teacher core's, see ``TrainConfig.align_teacher``)."""
    strings = question_strings(cfg.noise_variants, cfg.seed)
    spoken = {s: load_spoken(cfg.spoken_file, "train" if s == "train" else "eval") for s in splits}
    all_texts = [v for vs in strings.values() for v in vs] + list(clevr.OTHER_QUESTIONS)
    all_texts += [t for sp in spoken.values() for ts in sp.values() for t in ts]
    texts = TextTable.build(all_texts, text_encoder, cfg.cache_dir or None)
    return {s: ClevrData(cfg, split=s, texts=texts, strings=strings, spoken=spoken[s], encoder=image_encoder,
                          teacher_grid=teacher_grid) for s in splits}
