"""Evaluate the fusion core on held-out Sort-of-CLEVR scenes: answer head and end to end.

* :func:`eval_items` draws a balanced, seeded question set on held-out scenes (seeds the
  training never sees): the same number of questions of each type, typed (canonical form or
  paraphrases) or spoken (held-out recognizer transcripts, see :func:`models.train.load_spoken`).
* :func:`evaluate_answers` asks each question through any ``answer_fn(question, image) -> str``
  and scores the reply with :func:`models.clevr.score_reply` (right when it names exactly one
  of the candidate answers and that one is correct). The application wires ``answer_fn`` to
  ``Assistant.ask`` (the generator's words, ``assistant eval``); :func:`head_answer_fn` gives
  the answer head's own word, for the "head" column beside it.
* :func:`format_table` renders the per-type accuracies as a Markdown table.

``models/`` never imports the application, so the end-to-end function is passed in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models import clevr

AnswerFn = Callable[[str, Image.Image], str]
"""(question text, image) -> the reply text."""


@dataclass(frozen=True)
class EvalItem:
    scene_seed: int
    kind: str
    colour: str
    question: str
    """What is asked (typed text, or what the recognizer heard)."""
    answer: str
    variant: str = "typed"
    reference: str = ""
    """The typed form the item came from (equals ``question`` for typed items)."""


@dataclass
class EvalResult:
    variant: str
    per_type: dict[str, float]
    non_relational: float
    relational: float
    overall: float
    n: int
    seconds: float
    examples: list[dict] = field(default_factory=list)
    """A few (question, reply, answer, right) records, for reading."""


def eval_items(first_seed: int, n_per_type: int, *, variant: str = "typed", paraphrase: bool = False,
               spoken: dict[str, list[str]] | None = None, seed: int = 0) -> list[EvalItem]:
    """``n_per_type`` questions of each of the six types on held-out scenes ``first_seed, ...``
    (one question per scene and type, colours drawn from ``seed``).

    ``variant="spoken"`` replaces each question by a held-out recognizer transcript of its
    canonical form (``spoken``: {typed question: [transcripts]}); questions whose form was
    not spoken, or was heard as nothing, are skipped."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_per_type):
        scene = clevr.make_scene(first_seed + i)
        for kind in clevr.QUESTION_TYPES:
            colour = clevr.COLOURS[int(rng.integers(6))]
            t = int(rng.integers(len(clevr.TEMPLATES[kind]))) if paraphrase else 0
            q = clevr.make_question(scene, kind, colour, t)
            asked = q.text
            if variant == "spoken":
                heard = (spoken or {}).get(q.text, [])
                if not heard:
                    continue
                asked = heard[int(rng.integers(len(heard)))]
            items.append(EvalItem(scene.seed, kind, colour, asked, q.answer, variant, q.text))
    return items


def evaluate_answers(answer_fn: AnswerFn, items: list[EvalItem], *, variant: str = "typed",
                     progress: Callable[[int, int], None] | None = None, keep_examples: int = 12) -> EvalResult:
    """Ask every item through ``answer_fn`` and score the replies (see :func:`models.clevr.score_reply`)."""
    right: dict[str, int] = {k: 0 for k in clevr.QUESTION_TYPES}
    total: dict[str, int] = {k: 0 for k in clevr.QUESTION_TYPES}
    examples = []
    t0 = time.perf_counter()
    images: dict[int, Image.Image] = {}
    for n, item in enumerate(items):
        image = images.get(item.scene_seed)
        if image is None:
            images.clear()  # items come scene by scene: keep one image
            image = images[item.scene_seed] = clevr.render(clevr.make_scene(item.scene_seed))
        reply = answer_fn(item.question, image)
        ok = clevr.score_reply(reply, item.kind, item.answer)
        right[item.kind] += ok
        total[item.kind] += 1
        if len(examples) < keep_examples and (not ok or n % 7 == 0):
            examples.append({"question": item.question, "reply": reply, "answer": item.answer, "right": ok})
        if progress:
            progress(n + 1, len(items))
    per_type = {k: right[k] / total[k] for k in clevr.QUESTION_TYPES if total[k]}

    def share(kinds):
        t = sum(total[k] for k in kinds)
        return sum(right[k] for k in kinds) / t if t else float("nan")

    return EvalResult(variant, per_type, share(clevr.NON_RELATIONAL), share(clevr.RELATIONAL),
                      share(clevr.QUESTION_TYPES), sum(total.values()), time.perf_counter() - t0, examples)


def head_answer_fn(core, image_encoder, text_encoder) -> AnswerFn:
    """The answer head alone as an ``answer_fn``: real image encoder and text embeddings in,
    the head's answer word out (the caption for 'describe', '' for 'none')."""
    last: dict = {}  # the last image (kept alive, so identity is safe) and its tokens

    @torch.inference_mode()
    def answer(question: str, image: Image.Image) -> str:
        if last.get("image") is not image:
            last.update(image=image, tokens=image_encoder.encode([image]).tokens)  # (1, 49, 320)
        text, mask = text_encoder([question])  # (1, T, 576), (1, T)
        out = core({"image": (last["tokens"], None)}, text, mask)
        return reading(core.cfg, out, 0).word

    return answer


@dataclass
class Reading:
    word: str
    """The answer head's top class ('none' and 'describe' included)."""
    probability: float
    caption: str = ""
    """For 'describe': the caption head's sentence."""


def reading(cfg, out, index: int) -> Reading:
    """The heads' output for example ``index`` of a FusionOutput."""
    probs = out.answer_logits[index].float().softmax(dim=-1)  # (A,)
    p, i = float(probs.max()), int(probs.argmax())
    word = cfg.answers[i]
    cap = ""
    if word == "describe" and out.caption_logits is not None:
        cap = clevr.caption_from_facts(out.caption_logits[index].float().sigmoid().tolist())
    return Reading(word, p, cap)


def format_table(results: dict[str, EvalResult]) -> str:
    """Markdown: one row per question type (+ non-relational, relational, overall), one column per result."""
    cols = list(results)
    lines = ["| question type | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for k in clevr.QUESTION_TYPES:
        lines.append(f"| {k} | " + " | ".join(_pct(results[c].per_type.get(k)) for c in cols) + " |")
    for label, attr in (("non-relational", "non_relational"), ("relational", "relational"), ("overall", "overall")):
        lines.append(f"| **{label}** | " + " | ".join(_pct(getattr(results[c], attr)) for c in cols) + " |")
    lines.append("| questions | " + " | ".join(str(results[c].n) for c in cols) + " |")
    return "\n".join(lines)


def _pct(v) -> str:
    return "—" if v is None or v != v else f"{100 * v:.1f}%"


def save_results(path: str | Path, results: dict[str, EvalResult], meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta or {}, "results": {k: asdict(v) for k, v in results.items()}}, indent=1))
    return path


def run_evaluation(answer_fn: AnswerFn | None, *, core=None, image_encoder=None, text_encoder=None,
                   first_seed: int = 1_000_000, n_per_type: int = 50, spoken: dict[str, list[str]] | None = None,
                   paraphrase: bool = False, progress: Callable[[str, int, int], None] | None = None,
                   variants: tuple[str, ...] = ("typed", "spoken")) -> dict[str, EvalResult]:
    """The evaluation ``assistant eval`` runs: end to end (``answer_fn``) and answer head (when
    ``core`` and the encoders are given), typed and, with ``spoken`` transcripts, spoken
    (``variants`` picks which of the two run)."""
    sets = {}
    if "typed" in variants:
        sets["typed"] = eval_items(first_seed, n_per_type, paraphrase=paraphrase)
    if spoken and "spoken" in variants:
        sets["spoken"] = eval_items(first_seed, n_per_type, variant="spoken", spoken=spoken)
    results: dict[str, EvalResult] = {}
    for variant, items in sets.items():
        if core is not None:
            fn = head_answer_fn(core, image_encoder, text_encoder)
            results[f"head, {variant}"] = evaluate_answers(fn, items, variant=variant,
                                                           progress=_tag(progress, f"head {variant}"))
        if answer_fn is not None:
            results[f"end to end, {variant}"] = evaluate_answers(answer_fn, items, variant=variant,
                                                                 progress=_tag(progress, f"end to end {variant}"))
    return results


def _tag(progress, name):
    if progress is None:
        return None
    return lambda i, n: progress(name, i, n)


def generator_answer_fn(core, image_encoder, generator, *, system_prompt: str, question_first: bool = True,
                        max_new_tokens: int = 64, min_probability: float = 0.5) -> AnswerFn:
    """End to end without the application: image encoder -> fusion core -> evidence note
    (:func:`models.fusion.answer_evidence`) -> the generator's greedy reply.

    The user message is the question followed by the note in brackets (``question_first``,
    the layout the shipped weights were measured with; a 135M generator follows the most
    recent text best) or the note first. When the core answers 'none' (not a scene it
    knows) the image's ImageNet labels are the note instead, as in the application."""
    from models.fusion import answer_evidence
    from models.generator import Sampling

    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0)

    @torch.inference_mode()
    def answer(question: str, image: Image.Image) -> str:
        feats = image_encoder.encode([image], top_k=3)  # tokens (1, 49, 320)
        text, mask = generator.embed_text([question], max_tokens=core.cfg.max_text_tokens)  # (1, T, 576)
        out = core({"image": (feats.tokens, None)}, text, mask)
        note = answer_evidence(core.cfg, out, 0, question, min_probability=min_probability)
        if note:
            notes = [f"Scene analysis: {note}"]
        else:
            notes = ["The image shows, by an ImageNet classifier: " + ", ".join(f"{n} ({p:.0%})" for n, p in feats.labels[0])]
        bracketed = "\n".join(f"[{n}]" for n in notes)
        content = f"{question}\n{bracketed}" if question_first else f"{bracketed}\n{question}"
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": content}]
        return "".join(generator.stream(messages, sampling=sampling)).strip()

    return answer
