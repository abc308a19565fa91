"""Evaluate the fusion core on held-out Sort-of-CLEVR scenes: answer head and end to end.

* :func:`eval_items` draws a balanced, seeded question set on held-out scenes (seeds the
  training never sees): the same number of questions of each type, canonical or paraphrased.
* :func:`evaluate_answers` asks each typed question through any ``answer_fn(question, image)
  -> str`` and scores the reply with :func:`models.clevr.score_reply` (right when it names
  exactly one of the candidate answers and that one is correct). The application wires
  ``answer_fn`` to ``Assistant.ask`` (the generator's words, ``assistant eval``);
  :func:`head_answer_fn` gives the answer head's own word, for the "head" column beside it.
* :func:`spoken_items` + :func:`evaluate_spoken`: the same questions *spoken*: each is
  synthesized by eSpeak NG in a voice of a voice set (rotating; by default
  :data:`models.speech.voices.EVAL_VOICES`, voices no training transcript was made from),
  white noise is added, and the audio goes through ``spoken_fn(audio, image) -> (transcript,
  reply)``, which the application wires to ``Assistant.ask(audio=..., images=...)``: the whole
  app path (recognition with the scene bias, fusion, generator). Accuracy per voice too.
* :func:`evaluate_descriptions` asks for a description of each held-out scene and scores the
  reply object by object (:func:`models.clevr.score_description`: colour named, shape,
  left/right, top/bottom); :func:`format_describe_table` renders it.
* :func:`format_table` renders the per-type accuracies as a Markdown table, with the
  spoken/typed ratio and a per-voice table when there is something to show.

``models/`` never imports the application, so the end-to-end functions are passed in.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models import clevr
from models.image import encode_grid

AnswerFn = Callable[[str, Image.Image], str]
"""(question text, image) -> the reply text."""
SpokenFn = Callable[[np.ndarray, Image.Image], tuple[str, "str | None"]]
"""(audio (T,) float32 16 kHz, image) -> (what was heard, the reply text; None when only recognizing)."""
SpeechFn = Callable[["EvalItem"], np.ndarray]
"""A spoken item -> its audio, (T,) float32 16 kHz (see :class:`EspeakSpeech`)."""

SPOKEN = "spoken"
"""Variant name: spoken by the evaluation voices (never used for any training transcript)."""
SPOKEN_TUNING = "spoken (tuning voices)"
"""Variant name: spoken by the voices the training transcripts were made with (for comparison)."""


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
    """The typed form the item came from (what a spoken item says)."""
    voice: str = ""
    """Spoken items: the eSpeak NG voice."""
    rate: int = 0
    """Spoken items: words per minute."""
    pitch: int | None = None
    """Spoken items: eSpeak pitch (0-99)."""
    snr_db: float | None = None
    """Spoken items: white noise this many dB below the speech."""
    voice_label: str = ""
    """Spoken items: the per-voice bucket (the voice, with its rate when the voice set fixes it)."""


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
    per_voice: dict[str, float] = field(default_factory=dict)
    """Spoken: accuracy per voice."""
    per_voice_n: dict[str, int] = field(default_factory=dict)
    heard_exactly: float | None = None
    """Spoken: share of transcripts equal to the words spoken (case and punctuation aside)."""


def eval_items(first_seed: int, n_per_type: int, *, paraphrase: bool = False, seed: int = 0) -> list[EvalItem]:
    """``n_per_type`` questions of each of the six types on held-out scenes ``first_seed, ...``
    (one question per scene and type, colours drawn from ``seed``; canonical forms, or
    paraphrases drawn from the same generator)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_per_type):
        scene = clevr.make_scene(first_seed + i)
        for kind in clevr.QUESTION_TYPES:
            colour = clevr.COLOURS[int(rng.integers(6))]
            t = int(rng.integers(len(clevr.TEMPLATES[kind]))) if paraphrase else 0
            q = clevr.make_question(scene, kind, colour, t)
            items.append(EvalItem(scene.seed, kind, colour, q.text, q.answer, "typed", q.text))
    return items


def spoken_items(items: list[EvalItem], voices, *, variant: str = SPOKEN, rates=None, pitches=None,
                 snr_db: tuple[float, float] | None = None, seed: int = 0) -> list[EvalItem]:
    """The typed ``items`` as spoken items: the same questions, each given a voice of ``voices``
    (entries of :mod:`models.speech.voices`: names or (name, rate[, pitch]) or objects with
    those fields), rotating so every voice asks every question type equally often (voice of
    the i-th scene's j-th type: ``voices[(i + j) % len(voices)]``), a rate and pitch (the
    voice's own, else drawn from the training rates and pitches) and a noise level (uniform
    in ``snr_db``, default 10-30 dB, as the training transcripts)."""
    from models.spoken_data import SPOKEN_PITCHES, SPOKEN_RATES, SPOKEN_SNR_DB, voice_spec

    voices = list(voices)
    if not voices:
        raise ValueError("spoken evaluation needs at least one voice")
    rates, pitches = rates or SPOKEN_RATES, pitches or SPOKEN_PITCHES
    snr_db = snr_db or SPOKEN_SNR_DB
    rng = np.random.default_rng([seed, 7])
    scene_index: dict[int, int] = {}
    out = []
    for it in items:
        s = scene_index.setdefault(it.scene_seed, len(scene_index))
        name, rate, pitch = voice_spec(voices[(s + clevr.QUESTION_TYPES.index(it.kind)) % len(voices)])
        label = f"{name} ({rate} wpm)" if rate else name
        rate = rate or int(rng.choice(rates))
        pitch = pitch if pitch is not None else int(rng.choice(pitches))
        snr = round(float(rng.uniform(*snr_db)), 1)
        out.append(replace(it, variant=variant, reference=it.reference or it.question, voice=name, rate=rate,
                           pitch=pitch, snr_db=snr, voice_label=label))
    return out


class EspeakSpeech:
    """A spoken item -> its audio: eSpeak NG in the item's voice, rate and pitch, resampled to
    16 kHz, with white noise at the item's SNR (seeded by the item, so a rerun hears the same).
    ``synthesizer``: ``(voice, rate, pitch) -> synthesizer`` (default eSpeak NG)."""

    def __init__(self, synthesizer=None, seed: int = 0):
        from models.spoken_data import espeak_factory

        self.synthesizer = synthesizer or espeak_factory()
        self.seed = seed

    def __call__(self, item: EvalItem) -> np.ndarray:  # -> (T,) float32, 16 kHz
        from models.spoken_data import noisy_speech

        rng = np.random.default_rng([self.seed, item.scene_seed, clevr.QUESTION_TYPES.index(item.kind)])
        synth = self.synthesizer(item.voice, item.rate, item.pitch)
        return noisy_speech(synth, item.reference or item.question, float(item.snr_db or 100.0), rng)


class _Tally:
    """Right/total per question type (and per voice) -> an :class:`EvalResult`."""

    def __init__(self, variant: str, keep_examples: int):
        self.variant, self.keep = variant, keep_examples
        self.right = {k: 0 for k in clevr.QUESTION_TYPES}
        self.total = {k: 0 for k in clevr.QUESTION_TYPES}
        self.voice_right: dict[str, int] = {}
        self.voice_total: dict[str, int] = {}
        self.exact = self.heard = 0
        self.examples: list[dict] = []
        self.t0 = time.perf_counter()

    def add(self, n: int, item: EvalItem, reply: str, heard: str | None = None) -> bool:
        ok = clevr.score_reply(reply, item.kind, item.answer)
        self.right[item.kind] += ok
        self.total[item.kind] += 1
        if item.voice_label:
            self.voice_right[item.voice_label] = self.voice_right.get(item.voice_label, 0) + ok
            self.voice_total[item.voice_label] = self.voice_total.get(item.voice_label, 0) + 1
        if heard is not None:
            self.heard += 1
            self.exact += _words(heard) == _words(item.reference)
        if len(self.examples) < self.keep and (not ok or n % 7 == 0):
            ex = {"question": item.reference or item.question, "reply": reply, "answer": item.answer, "right": ok}
            if heard is not None:
                ex.update(heard=heard, voice=item.voice_label)
            self.examples.append(ex)
        return ok

    def result(self) -> EvalResult:
        right, total = self.right, self.total
        per_type = {k: right[k] / total[k] for k in clevr.QUESTION_TYPES if total[k]}

        def share(kinds):
            t = sum(total[k] for k in kinds)
            return sum(right[k] for k in kinds) / t if t else float("nan")

        return EvalResult(
            self.variant, per_type, share(clevr.NON_RELATIONAL), share(clevr.RELATIONAL),
            share(clevr.QUESTION_TYPES), sum(total.values()), time.perf_counter() - self.t0, self.examples,
            per_voice={v: self.voice_right[v] / n for v, n in self.voice_total.items()},
            per_voice_n=dict(self.voice_total),
            heard_exactly=self.exact / self.heard if self.heard else None,
        )


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("grey", "gray")).split()


def evaluate_answers(answer_fn: AnswerFn, items: list[EvalItem], *, variant: str = "typed",
                     progress: Callable[[int, int], None] | None = None, keep_examples: int = 12) -> EvalResult:
    """Ask every item through ``answer_fn`` and score the replies (see :func:`models.clevr.score_reply`).
    Spoken items that were already heard (``question`` is then the transcript) are asked as heard."""
    tally = _Tally(variant, keep_examples)
    scenes = _SceneImages()
    for n, item in enumerate(items):
        reply = answer_fn(item.question, scenes(item.scene_seed))
        tally.add(n, item, reply, heard=item.question if item.voice else None)
        if progress:
            progress(n + 1, len(items))
    return tally.result()


def evaluate_spoken(spoken_fn: SpokenFn, items: list[EvalItem], *, speech: SpeechFn | None = None,
                    head_fn: AnswerFn | None = None, progress: Callable[[str, int, int], None] | None = None,
                    keep_examples: int = 12) -> tuple[dict[str, EvalResult], list[EvalItem]]:
    """Speak every item (``speech``, default :class:`EspeakSpeech`), pass the audio and the
    scene through ``spoken_fn`` and score its reply; with ``head_fn`` also score the answer
    head on the same transcript. Returns ({"end to end": ..., "head": ...} (those that ran),
    the items with ``question`` set to what was heard)."""
    speech = speech or EspeakSpeech()
    variant = items[0].variant if items else SPOKEN
    e2e, head = _Tally(variant, keep_examples), _Tally(variant, keep_examples)
    scenes = _SceneImages()
    heard_items = []
    for n, item in enumerate(items):
        image = scenes(item.scene_seed)
        heard, reply = spoken_fn(speech(item), image)
        heard = (heard or "").strip()
        heard_items.append(replace(item, question=heard))
        if reply is not None:
            e2e.add(n, item, reply, heard)
        if head_fn is not None:
            head.add(n, item, head_fn(heard, image) if heard else "", heard)
        if progress:
            progress(variant, n + 1, len(items))
    out = {}
    if head_fn is not None:
        out["head"] = head.result()
    if sum(e2e.total.values()):
        out["end to end"] = e2e.result()
    return out, heard_items


class _SceneImages:
    """Scene seed -> its rendered image; items come scene by scene, so one is kept."""

    def __init__(self):
        self.seed, self.image = None, None

    def __call__(self, seed: int) -> Image.Image:
        if seed != self.seed:
            self.seed, self.image = seed, clevr.render(clevr.make_scene(seed))
        return self.image


def head_answer_fn(core, image_encoder, text_encoder) -> AnswerFn:
    """The answer head alone as an ``answer_fn``: real image encoder and text embeddings in,
    the head's answer word out (the caption for 'describe', '' for 'none')."""
    last: dict = {}  # the last image (kept alive, so identity is safe) and its tokens

    @torch.inference_mode()
    def answer(question: str, image: Image.Image) -> str:
        if last.get("image") is not image:
            last.update(image=image, tokens=encode_grid(image_encoder, [image], core.cfg.image_grid).tokens)  # (1, N, D)
        text, mask = text_encoder([question])  # (1, T, 576), (1, T)
        out = core({"image": (last["tokens"], None)}, text, mask)
        read = reading(core.cfg, out, 0)
        return read.caption or read.word

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
    """Markdown: one row per question type (+ non-relational, relational, overall), one column
    per result; for spoken columns also the share heard exactly and, when the same kind of
    typed column is there (``head, typed`` for ``head, spoken``), spoken / typed overall; then
    a per-voice table when any column is spoken."""
    cols = list(results)
    lines = ["| question type | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for k in clevr.QUESTION_TYPES:
        lines.append(f"| {k} | " + " | ".join(_pct(results[c].per_type.get(k)) for c in cols) + " |")
    for label, attr in (("non-relational", "non_relational"), ("relational", "relational"), ("overall", "overall")):
        lines.append(f"| **{label}** | " + " | ".join(_pct(getattr(results[c], attr)) for c in cols) + " |")
    lines.append("| questions | " + " | ".join(str(results[c].n) for c in cols) + " |")
    spoken = [c for c in cols if results[c].heard_exactly is not None]
    if spoken:
        ratios = spoken_typed_ratios(results)
        lines.append("| heard exactly | " + " | ".join(_pct(results[c].heard_exactly) for c in cols) + " |")
        if ratios:
            lines.append("| **spoken / typed** | " + " | ".join(f"{ratios[c]:.3f}" if c in ratios else "—" for c in cols) + " |")
        voices = list(dict.fromkeys(v for c in spoken for v in results[c].per_voice))
        if voices:
            lines += ["", "| voice | " + " | ".join(spoken) + " |", "| --- |" + " ---: |" * len(spoken)]
            for v in voices:
                cells = [f"{_pct(results[c].per_voice[v])} ({results[c].per_voice_n.get(v, 0)})"
                         if v in results[c].per_voice else "—" for c in spoken]
                lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spoken_typed_ratios(results: dict[str, EvalResult]) -> dict[str, float]:
    """{spoken column: its overall accuracy / the overall accuracy of the typed column of the
    same kind ("end to end, spoken" / "end to end, typed")}, where both are present."""
    out = {}
    for name, res in results.items():
        kind, _, variant = name.partition(", ")
        typed = results.get(f"{kind}, typed")
        if variant != "typed" and res.heard_exactly is not None and typed is not None and typed.overall:
            out[name] = res.overall / typed.overall
    return out


def _pct(v) -> str:
    return "—" if v is None or v != v else f"{100 * v:.1f}%"


def save_results(path: str | Path, results: dict[str, EvalResult], meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta or {}, "results": {k: asdict(v) for k, v in results.items()}}, indent=1))
    return path


def load_results(path: str | Path) -> tuple[dict[str, EvalResult], dict]:
    """(results, meta) from a :func:`save_results` file."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: EvalResult(**v) for k, v in raw["results"].items()}, raw.get("meta", {})


def run_evaluation(answer_fn: AnswerFn | None, *, core=None, image_encoder=None, text_encoder=None,
                   first_seed: int = 1_000_000, n_per_type: int = 50, paraphrase: bool = False,
                   progress: Callable[[str, int, int], None] | None = None,
                   variants: tuple[str, ...] = ("typed",), spoken_fn: SpokenFn | None = None,
                   voices=None, tuning_voices=None, speech: SpeechFn | None = None,
                   seed: int = 0) -> dict[str, EvalResult]:
    """The evaluation ``assistant eval`` runs: end to end (``answer_fn`` for typed questions,
    ``spoken_fn`` for spoken ones) and answer head (when ``core`` and the encoders are given).

    ``variants``: any of "typed", :data:`SPOKEN` (the questions spoken by ``voices``, default
    :data:`models.speech.voices.EVAL_VOICES`) and :data:`SPOKEN_TUNING` (spoken by
    ``tuning_voices``, default ``TUNING_VOICES``: the voices of the training transcripts, for
    comparison). All variants ask the same questions about the same scenes. Spoken variants
    need ``spoken_fn`` (with ``answer_fn`` None it only has to recognize: reply None)."""
    typed = eval_items(first_seed, n_per_type, paraphrase=paraphrase, seed=seed)
    results: dict[str, EvalResult] = {}
    head = head_answer_fn(core, image_encoder, text_encoder) if core is not None else None
    if "typed" in variants:
        if head is not None:
            results["head, typed"] = evaluate_answers(head, typed, progress=_tag(progress, "head typed"))
        if answer_fn is not None:
            results["end to end, typed"] = evaluate_answers(answer_fn, typed, progress=_tag(progress, "end to end typed"))
    for variant in (SPOKEN, SPOKEN_TUNING):
        if variant not in variants:
            continue
        if spoken_fn is None:
            raise ValueError("a spoken evaluation needs spoken_fn (audio, image) -> (transcript, reply)")
        vs = voices if variant == SPOKEN else tuning_voices
        if not vs:
            from models.speech import voices as voice_sets

            vs = voice_sets.EVAL_VOICES if variant == SPOKEN else voice_sets.TUNING_VOICES
        items = spoken_items(typed, vs, variant=variant, seed=seed)
        res, _ = evaluate_spoken(spoken_fn, items, speech=speech, head_fn=head, progress=progress)
        for kind in ("head", "end to end"):
            if kind in res:
                results[f"{kind}, {variant}"] = res[kind]
    return results


@dataclass
class DescribeResult:
    """Descriptions of held-out scenes scored object by object (:func:`models.clevr.score_description`)."""

    scenes: int
    per_object: dict[str, float]
    """Share of the scenes' objects (6 a scene) whose colour is named ("named"), whose shape,
    left/right, top/bottom, both position words ("position"), or everything ("whole") is right."""
    scenes_right: float
    """Share of scenes described entirely right (every object whole, none listed twice)."""
    repeated: float
    """Colours named more than once, per scene."""
    seconds: float
    examples: list[dict] = field(default_factory=list)


DESCRIBE_FIELDS = ("named", "shape", "horizontal", "vertical", "position", "whole")


def evaluate_descriptions(answer_fn: AnswerFn, first_seed: int, n_scenes: int, *,
                          question: str = clevr.TEMPLATES[clevr.DESCRIBE][0], keep_examples: int = 3,
                          progress: Callable[[int, int], None] | None = None) -> DescribeResult:
    """Ask ``answer_fn`` to describe each of the scenes ``first_seed, ...`` and score the replies."""
    t0 = time.time()
    totals = dict.fromkeys(DESCRIBE_FIELDS, 0)
    right = extra = 0
    examples = []
    for i in range(n_scenes):
        scene = clevr.make_scene(first_seed + i)
        reply = answer_fn(question, clevr.render(scene))
        score = clevr.score_description(reply, scene)
        for k in DESCRIBE_FIELDS:
            totals[k] += getattr(score, k)
        right += score.scene_right
        extra += score.extra
        if len(examples) < keep_examples:
            examples.append({"scene": scene.seed, "reply": reply, "truth": clevr.caption(scene), "whole": score.whole})
        if progress:
            progress(i + 1, n_scenes)
    objects = max(1, n_scenes * len(clevr.COLOURS))
    return DescribeResult(n_scenes, {k: v / objects for k, v in totals.items()}, right / max(1, n_scenes),
                          extra / max(1, n_scenes), time.time() - t0, examples)


def format_describe_table(results: dict[str, DescribeResult]) -> str:
    """Markdown: one row per per-object measure, one column per result."""
    cols = list(results)
    lines = ["| objects described (share of 6 per scene) | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    labels = {"named": "colour named", "shape": "shape right", "horizontal": "left/right right",
              "vertical": "top/bottom right", "position": "position (both) right", "whole": "**all right**"}
    for k in DESCRIBE_FIELDS:
        lines.append(f"| {labels[k]} | " + " | ".join(_pct(results[c].per_object[k]) for c in cols) + " |")
    lines.append("| **scenes entirely right** | " + " | ".join(_pct(results[c].scenes_right) for c in cols) + " |")
    lines.append("| colours named twice, per scene | " + " | ".join(f"{results[c].repeated:.2f}" for c in cols) + " |")
    lines.append("| scenes | " + " | ".join(str(results[c].scenes) for c in cols) + " |")
    return "\n".join(lines)


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
    from models.sampling import Sampling

    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0)

    @torch.inference_mode()
    def answer(question: str, image: Image.Image) -> str:
        feats = encode_grid(image_encoder, [image], core.cfg.image_grid, top_k=3)  # tokens (1, N, D)
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
