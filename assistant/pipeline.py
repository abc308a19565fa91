"""One turn of conversation: text + images + audio in, a reply out.

    inputs ──► encode (image encoder, recognizer) ──► fuse (fusion core) ──► generate ──► speak
              ImageFeatures, transcripts              evidence + tokens       text stream   audio

:class:`Assistant` owns the loaded models and the conversation. Each stage is a method that
takes and returns plain dataclasses, so it can be tested alone with fakes:
:meth:`Assistant.prepare` (inputs -> :class:`Turn`), :meth:`Assistant.encode`,
:meth:`Assistant.fuse`, then :meth:`Assistant.stream` / :meth:`Assistant.ask`.

Beside it: the records a turn is made of (:class:`Turn`, :class:`Reply`, :func:`prepare_turn`)
in :mod:`assistant.turns`; how models are found and loaded lazily (:class:`LazyModels`, the
image encoder, fusion core, text reader and speech engines of an Assistant) in
:mod:`assistant.loading`; the plugin side of a turn (slash commands, tools, reply transforms,
the context plugins see: :class:`PluginTurns`) in :mod:`assistant.plugin_turns`.
"""

from __future__ import annotations

import os
import threading
import time
from importlib import resources
from typing import Iterator, Sequence

import numpy as np

from assistant import paths
from assistant.config import Settings
from assistant.errors import InputError, ModelError, first_line
from assistant.plugin_host.commands import unescape
from assistant.inputs import load_audio
from assistant.loading import (
    LazyModels,
    ModelInfo,
    Slot,
    accepts_context,
    load_plugin_host,
    packaged_fusion_dir,
    remote_generator,
    speech_engines,
)
from assistant.plugin_turns import PluginTurns
from assistant.turns import (
    MessageTooLong,
    Reply,
    Turn,
    attention_dicts,
    ocr_dicts,
    save_transcript,
    prepare_turn,
)

__all__ = [
    "Assistant", "MessageTooLong", "ModelInfo", "Reply", "Turn", "load_plugin_host", "packaged_fusion_dir",
    "prepare_turn", "remote_generator", "save_transcript", "speech_engines",
]


def understood(reading: str) -> str:
    """The evidence line for a spoken question as the fusion core read it."""
    return f"Understood as: {reading}"


class Assistant(LazyModels, PluginTurns):
    """The loaded models and one conversation. Build it with :meth:`load`.

    Its lazily loaded models come from :class:`~assistant.loading.LazyModels`, its plugin side
    from :class:`~assistant.plugin_turns.PluginTurns`; the stages and the turn are here."""

    def __init__(self, settings: Settings, *, generator, image_encoder=None, fusion=None, fusion_source: str = "",
                 plugins=None, progress=None):
        """``image_encoder``: a loaded encoder (then ``fusion``, None meaning off, and
        ``fusion_source`` are taken as given), or None to load both on the first image turn."""
        self.settings = settings
        self.generator = generator
        self.plugins = plugins
        self._say = progress or (lambda message: None)
        if image_encoder is None:
            self._image_slot = Slot(self._load_image_encoder)
            self._fusion_slot = Slot(self._load_fusion_for_encoder)
        else:
            self._image_slot = Slot.ready(image_encoder)
            self._fusion_slot = Slot.ready((fusion, fusion_source))
        self._ocr_slot = Slot(self._load_ocr)
        self.history: list[dict] = []
        """The conversation as sent to the chat template (without the system message)."""
        self.last_reply: Reply | None = None
        self.notes: list[str] = []
        """Notes saved by /save (the session store reads them through ``on_note``)."""
        self.on_note = None
        """Called with each saved note (the TUI stores it in the session)."""
        self.notify = None
        """``notify(message, severity)``: how plugins report (timers, problems); None: stderr."""
        self._pending_context: list[str] = []  # text plugins put into the conversation (/read)
        self._last_labels: list = []  # the latest image's labels, for /labels
        self._ctx = None
        if plugins is not None:
            plugins.notify = self._notify  # plugin problems and timers reach the CLI/TUI through bot.notify
        self._recognizer = None
        self._synthesizer = None
        self._engines = None
        self._encoders = None
        self._image_source = ""
        self.greedy = False
        """Decode greedily whatever the sampling settings say (`assistant eval` sets it)."""
        self._speech_lock = threading.RLock()
        self._typical_label: str | None = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, config: Settings | str | os.PathLike | None = None, *, offline: bool | None = None,
             plugins: bool = True, progress=None) -> "Assistant":
        """Load the models named by the settings (a Settings, a TOML path, or None for the defaults)."""
        settings = config if isinstance(config, Settings) else Settings.load(config)
        if offline is not None:
            settings.offline = offline
        say = progress or (lambda message: None)
        from models.generator import Generator

        try:
            generator = Generator.load(
                settings.generator.model, device=settings.generator.device, runtime=settings.generator.runtime,
                activations=settings.generator.activations,
                cache_dir=paths.cache_dir(), offline=settings.offline, progress=say,
            )
        except (RuntimeError, ValueError) as e:
            raise ModelError(str(e)) from e
        if settings.generator.backend == "openai":
            generator = remote_generator(settings, generator)
        host = None
        if plugins:
            host = load_plugin_host(settings)
        # The image encoder and the fusion core load on the first image turn, the speech
        # engines on the first audio or spoken turn, the intent router on the first request a
        # tool's check accepts: a text question pays for none of them (see :meth:`preload`).
        return cls(settings, generator=generator, plugins=host, progress=progress)

    def _notify(self, message: str, severity: str) -> None:
        if self.notify is not None:
            self.notify(message, severity)
        else:
            import sys

            print(f"{severity}: {message}" if severity != "information" else message, file=sys.stderr, flush=True)


    # ------------------------------------------------------------------ stages

    def prepare(self, text: str | bytes = "", images: Sequence = (), audio: Sequence = ()) -> Turn:
        """Check and load the inputs (InputError names the bad file)."""
        return prepare_turn(self.settings, text, images, audio)

    def encode(self, turn: Turn) -> Turn:
        """Run the modality encoders: image tokens + labels, audio transcripts."""
        if turn.images:
            from models.image import encode_grid

            grid = self.fusion.cfg.image_grid if self.fusion is not None else "final"  # loads the core (and encoder) first
            t0 = time.perf_counter()
            s = self.settings.image
            feats = encode_grid(self.image_encoder, turn.images, grid, top_k=s.top_k, min_probability=s.min_probability)
            turn.image_tokens, turn.labels = feats.tokens, feats.labels
            turn.timings["image"] = time.perf_counter() - t0
            self.read_text(turn)
        if turn.audio:
            t0 = time.perf_counter()
            context = self.recognition_context(turn)
            turn.transcript = [self.transcribe(a, context=context) for a in turn.audio]
            turn.timings["speech"] = time.perf_counter() - t0
        return turn

    def read_text(self, turn: Turn) -> Turn:
        """The text in each image (``image.ocr``): ``turn.ocr``, one OcrResult (or None) per image."""
        mode = self.settings.image.ocr
        engine = self.ocr_engine if mode != "off" and turn.images else None
        if engine is None:
            return turn
        t0 = time.perf_counter()
        turn.ocr = []
        for i, image in enumerate(turn.images):
            try:
                turn.ocr.append(engine.read(image, full=mode == "on"))
            except (RuntimeError, ValueError, MemoryError) as e:  # one image's failure costs only its text
                self._notify(f"{turn.image_names[i]}: reading its text failed: {first_line(e)}", "warning")
                turn.ocr.append(None)
        turn.timings["ocr"] = time.perf_counter() - t0
        return turn

    def _text_note(self, turn: Turn, i: int) -> str | None:
        """"Image 1 (shot.png) contains text: ...": the lines read, as many as
        ``image.ocr_max_tokens`` allow; None when the image holds no text (nothing is invented)."""
        result = turn.ocr[i] if i < len(turn.ocr) else None
        if result is None or not result.lines:
            return None
        rows = result.rows()
        encode = getattr(self.generator, "encode", None)
        cost = (lambda t: len(encode(t))) if callable(encode) else (lambda t: max(1, len(t) // 3))
        with_text = sum(1 for r in turn.ocr if r is not None and r.lines)  # the images share the budget
        budget, used, kept = max(32, self.settings.image.ocr_max_tokens // max(1, with_text)), 0, []
        for row in rows:
            used += cost(row + "\n")
            if used > budget and kept:
                break
            kept.append(row)
        note = f"Image {i + 1} ({turn.image_names[i]}) contains text:\n" + "\n".join(kept)
        if len(kept) < len(rows):
            note += f"\n(… {len(rows) - len(kept)} more lines not shown)"
        if result.stopped:
            note += f"\n(reading stopped early: {result.stopped})"
        return note

    def fuse(self, turn: Turn) -> Turn:
        """Turn encoder outputs into evidence for the generator (and fusion tokens when trained)."""
        t0 = time.perf_counter()
        answered: set[int] = set()
        if turn.images and self.fusion is not None:  # (a turn without images does not load the fusion core)
            answered = self._run_fusion(turn)
        for i, labels in enumerate(turn.labels):
            if i in answered:  # the scene analysis speaks for this image; labels would only distract
                pass
            elif labels:
                seen = ", ".join(f"{name} ({p:.0%})" for name, p in labels)
                turn.evidence.append(f"Image {i + 1} ({turn.image_names[i]}) shows, by an ImageNet classifier: {seen}")
            else:
                turn.evidence.append(f"Image {i + 1} ({turn.image_names[i]}): the classifier is unsure what it shows")
            note = self._text_note(turn, i)
            if note:
                turn.evidence.append(note)
        for i, said in enumerate(turn.transcript):
            if turn.text.strip():  # audio beside typed text: its transcript is evidence
                turn.evidence.append(f"Audio {i + 1} ({turn.audio_names[i]}) says: {said or '(no speech)'}")
        turn.timings["fuse"] = time.perf_counter() - t0
        return turn

    def _run_fusion(self, turn: Turn) -> set[int]:
        """Ask the fusion core about each image; -> the indices of images it answered for.
        Its answer goes after the question (SmolLM2 repeats it most reliably there); it says
        nothing about images unlike its training data (real photos), which keep their labels."""
        import torch

        from models.clevr import rejected_choices
        from models.fusion import answer_evidence, confident_answer, effective_route, question_reading

        question = turn.question or "Describe the image"
        text, mask = self.generator.embed_text([question] * len(turn.images), max_tokens=self.fusion.cfg.max_text_tokens)
        with torch.inference_mode():
            out = self.fusion({"image": (turn.image_tokens, None)}, text, mask)
        soft = getattr(self.generator, "soft_tokens", True)  # a generator in this process takes soft tokens
        answered = set()
        # A spoken question about one picture is read back as the core understood it: Whisper
        # mishears ("on the left or like a video?"), and SmolLM2-135M then ignored a right note
        # in 9 of 249 such questions (tuning voices); with the reading, in none.
        spoken = not turn.text.strip() and bool(turn.question) and len(turn.images) == 1
        for i in range(len(turn.images)):
            read = question_reading(self.fusion.cfg, out, i) if spoken else None
            note = answer_evidence(self.fusion.cfg, out, i, read or question)
            if not note:  # a picture unlike its training scenes: neither its sentence nor its tokens
                continue
            answered.add(i)
            word = confident_answer(self.fusion.cfg, out, i)[0]  # there is a note, so there is a verdict
            route = effective_route(self.settings.fusion.route, self.fusion.cfg, soft, describe=word == "describe")
            tokens, words = route != "text", route != "tokens"
            if words:
                turn.question_read = read or ""
                turn.scene_notes.append(note if len(turn.images) == 1 else f"Image {i + 1}: {note}")
                if len(turn.images) == 1:  # the question offered a choice and the core took one side
                    # (the reading names the sides a misheard question lost; only the words
                    # said name the shapes of "Is the red object a square or a circle?")
                    choices = rejected_choices(question, word) + (rejected_choices(read, word) if read else ())
                    turn.ruled_out += list(dict.fromkeys(choices))
            if tokens:
                turn.fusion_tokens.append(out.tokens[i])
        turn.attention = self._attention_maps(turn, out, answered)
        return answered

    def _attention_maps(self, turn: Turn, out, answered: set[int]) -> list:
        """Per image, where the core's last cross-attention layer looked (models.attention), over
        the part of the picture the image encoder kept; [] when the core reports no attention."""
        from models.attention import attention_map, full_box

        weights = (out.attention or {}).get("image")  # (B, N)
        if weights is None:
            return []
        crop = getattr(self.image_encoder, "crop_box", None)
        threshold = self.fusion.cfg.domain_threshold
        maps = []
        for i, image in enumerate(turn.images):
            amap = attention_map(weights[i], crop(*image.size) if callable(crop) else full_box(image))
            if amap is not None:
                amap.answered = i in answered
                if out.domain_distance is not None and threshold > 0:
                    amap.known = bool(float(out.domain_distance[i]) <= threshold)
            maps.append(amap)
        return maps

    def user_message(self, turn: Turn, *, with_fusion: bool = False) -> str:
        """The user's message as the generator sees it: evidence in brackets, then the question."""
        lines = [f"[{note}]" for note in turn.evidence]
        lines += [f"[{note}]" for note in turn.context]
        if with_fusion and turn.fusion_tokens:
            from models.generator import FUSION_MARKER

            lines.append("[Image features: " + " ".join(FUSION_MARKER for _ in turn.fusion_tokens) + "]")
        question = turn.question or ("What is in this image?" if turn.images else "")
        if turn.question_read:
            lines.append(f"[{understood(turn.question_read)}]")
        lines.append(question)
        lines += [f"[Scene analysis: {note}]" for note in turn.scene_notes]
        return "\n".join(line for line in lines if line)

    # ------------------------------------------------------------------ turns

    def stream(self, text: str | bytes = "", images: Sequence = (), audio: Sequence = (), *,
               cancel: threading.Event | None = None, turn: Turn | None = None) -> Iterator[str]:
        """Yield the reply in chunks as it is generated; afterwards ``self.last_reply`` holds it.
        ``turn``: inputs already checked by :func:`prepare_turn` (then text/images/audio are ignored)."""
        with self._lock:
            self._cancel = cancel or threading.Event()
            turn = turn or self.prepare(text, images, audio)
            if self._is_command(turn):
                yield from self._command_turn(turn)
                return
            turn.text = unescape(turn.text)  # "//x" is the text "/x" for the model
            yield from self._turn(turn, self._cancel)


    # ------------------------------------------------------------------ turns

    def sampling(self):
        """How the generator picks tokens: the chat settings, or plain greedy decoding when
        :attr:`greedy` is set (evaluation wants the model's most likely answer, reproducibly)."""
        from models.sampling import Sampling

        g = self.settings.generator
        if self.greedy:
            return Sampling(max_new_tokens=g.max_new_tokens, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram=0)
        return Sampling(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k,
                        repetition_penalty=g.repetition_penalty, no_repeat_ngram=g.no_repeat_ngram,
                        ngram_penalty=g.ngram_penalty)

    def _turn(self, turn: Turn, cancel: threading.Event) -> Iterator[str]:
        start = time.perf_counter()
        if self.plugins is not None:  # plugins see (and may change) the inputs before any encoder
            turn = self.plugins.transform_turn(turn)
        self.check_fits(turn)  # before any encoder runs
        self.fuse(self.encode(turn))
        if (turn.audio and not turn.images and not turn.text.strip() and not turn.context
                and not any(t.strip() for t in turn.transcript)):  # nothing was asked: say so, make nothing up
            raise InputError(f"{', '.join(turn.audio_names)}: no speech heard (silence or noise only): nothing to answer")
        if turn.labels:
            self._last_labels = turn.labels[-1]
        turn.context[:0] = self._pending_context
        self._pending_context.clear()
        tool = self._use_tool(turn)
        hold = self._reply_transforms()  # a transformed reply is shown once, never streamed raw first
        plain = self.user_message(turn)
        g = self.settings.generator
        sampling = self.sampling()
        sampling.avoid_words = tuple(turn.ruled_out)
        budget = self.budget()
        system = [{"role": "system", "content": g.system_prompt}]
        try:
            messages = self.generator.fit(system + self.history + [{"role": "user", "content": plain}], budget,
                                          history=self.history_limit())
        except ValueError as e:
            raise self._too_long(turn, e, budget) from e
        if turn.fusion_tokens:
            messages[-1] = {"role": "user", "content": self.user_message(turn, with_fusion=True)}
        t0 = time.perf_counter()
        chunks: list[str] = []
        first = None
        try:
            for chunk in self.generator.stream(messages, inserts=turn.fusion_tokens, sampling=sampling, cancel=cancel,
                                               seed=g.seed):
                if first is None:
                    first = time.perf_counter() - t0
                chunks.append(chunk)
                if not hold:
                    yield chunk
        except (RuntimeError, ValueError) as e:
            if getattr(e, "context_too_long", False):  # a remote generator's server counted more than fits
                raise MessageTooLong(f"message: {e}", budget=budget) from e
            raise ModelError(f"generator failed: {e}") from e
        finally:
            written = "".join(chunks).strip()
            text_out = self.plugins.transform_reply(written) if hold and written else written
            turn.timings["first_token"] = first if first is not None else time.perf_counter() - t0
            turn.timings["generate"] = time.perf_counter() - t0
            turn.timings["total"] = time.perf_counter() - start + turn.timings.get("inputs", 0.0)
            partial = self.generator.stop_reason != "eos"
            read_as = [understood(turn.question_read)] if turn.question_read else []
            # The model's own history keeps what it wrote, so a transform never feeds on itself
            # ("[X] [X] Hello"); the transformed text is what is shown, spoken and stored.
            self.history = messages[1:-1] + [{"role": "user", "content": plain},
                                             {"role": "assistant", "content": written}]
            self.last_reply = Reply(text=text_out, transcript=turn.transcript, evidence=turn.evidence + read_as + turn.scene_notes,
                                    timings=turn.timings, partial=partial, image_names=turn.image_names,
                                    audio_inputs=turn.audio_names, tool=tool, ocr=ocr_dicts(turn),
                                    attention=attention_dicts(turn))
        if hold and text_out:
            yield text_out

    # ------------------------------------------------------------------ context budget

    def history_limit(self) -> int | None:
        """Tokens the earlier turns may take in the prompt (``generator.history_tokens``), or
        None: no limit (0, or a remote generator, whose server pays for its own context)."""
        limit = self.settings.generator.history_tokens
        return limit if limit and getattr(self.generator, "runtime", None) != "remote" else None

    def budget(self) -> int:
        """Tokens the system prompt and the user's message may take: the context budget less
        the room kept for the reply (older turns are dropped to make room, never this one)."""
        g = self.settings.generator
        return min(g.context_tokens, self.generator.context_window) - g.max_new_tokens

    def check_fits(self, turn: Turn) -> None:
        """Refuse a turn that cannot fit the context budget before any encoder works on it.

        The message is measured as the generator will see it, with each image's note
        estimated (its exact line with two labels of typical length: the labels are not known
        before encoding) and each recording's transcript left out (unknowable before
        recognition). A turn near the limit passes and is measured exactly after
        encoding; one clearly over it is refused in one line naming the limit."""
        if not (turn.images or turn.audio) or self._is_command(turn):
            return  # a text-only turn costs nothing to encode; generator.fit measures it
        budget = self.budget()
        system = {"role": "system", "content": self.settings.generator.system_prompt}

        def size(n_images: int) -> int:
            probe = Turn(text=turn.text, image_names=turn.image_names[:n_images], audio_names=turn.audio_names,
                         transcript=["" for _ in turn.audio], context=self._pending_context + turn.context)
            probe.images = [None] * n_images
            probe.evidence = [self._estimated_image_note(i, probe.image_names[i]) for i in range(n_images)]
            if turn.text.strip():
                probe.evidence += [f"Audio {i + 1} ({name}) says: " for i, name in enumerate(turn.audio_names)]
            return self.generator.count_tokens([system, {"role": "user", "content": self.user_message(probe)}])

        total = size(len(turn.images))
        if total <= budget:
            return
        if not turn.images:
            raise MessageTooLong(f"message: {total:,} tokens before the recording is even transcribed; the model's "
                                 f"context budget is {budget:,} tokens (shorten the text)", tokens=total, budget=budget)
        base = size(0)
        each = (total - base) / len(turn.images)
        fits = max(0, int((budget - base) // each)) if base <= budget else 0
        n = len(turn.images)
        where = "the text alone is too long" if base > budget else f"send at most {fits} image{'s' * (fits != 1)} per message"
        raise MessageTooLong(
            f"message: {n} images need about {total - base:,} tokens of notes (about {each:.0f} each) and the text "
            f"{base:,}; the model's context budget is {budget:,} tokens (generator.context_tokens less "
            f"max_new_tokens): {where}", tokens=total, budget=budget)

    def _estimated_image_note(self, index: int, name: str) -> str:
        """What ``fuse`` will probably write about an image before it is encoded: its line with
        two labels of median length (in tokens) among the ImageNet labels. Two, not
        ``image.top_k``: a photo usually gets one to three labels above ``image.min_probability``
        (measured on tests/data: 33 tokens an image, against 39 with three labels and 27 with one)."""
        if self._typical_label is None:
            # The label list is read as text: importing models.image would load torch just to refuse.
            text = resources.files("models").joinpath("data/imagenet_labels.txt").read_text(encoding="utf-8")
            encode = getattr(self.generator, "encode", None) or str.split
            names = sorted({line.split(",")[0].strip() for line in text.splitlines() if line.strip()})
            ordered = sorted(names, key=lambda n: (len(encode(f" {n} (10%),")), n))
            self._typical_label = ordered[len(ordered) // 2]
        shares = (45, 20)[:min(2, self.settings.image.top_k)]
        seen = ", ".join(f"{self._typical_label} ({p}%)" for p in shares)
        return f"Image {index + 1} ({name}) shows, by an ImageNet classifier: {seen}"

    def _too_long(self, turn: Turn, error: ValueError, budget: int) -> MessageTooLong:
        """The measured message is over the budget: keep what took time to make (the transcript)."""
        message = f"message: {error}"
        if not any(t.strip() for t in turn.transcript):
            return MessageTooLong(message, budget=budget)
        saved = save_transcript(turn)
        names = ", ".join(turn.audio_names)
        reply = Reply(text="", transcript=turn.transcript, evidence=turn.evidence, timings=turn.timings, partial=True,
                      image_names=turn.image_names, audio_inputs=turn.audio_names)
        return MessageTooLong(
            f"{message}; the transcript of {names} was kept in {saved} (too long to answer about at once: ask about "
            f"a part of it, e.g. `/read {saved}`)", budget=budget, transcript=turn.transcript, saved_to=saved, reply=reply)

    def ask(self, text: str | bytes = "", images: Sequence = (), audio: Sequence = (), *,
            speak: bool = False, cancel: threading.Event | None = None, turn: Turn | None = None,
            on_text=None) -> Reply:
        """One whole turn. ``on_text(chunk)`` sees the reply as it streams.

        With ``speak=True`` the reply also comes back as audio, synthesized sentence by
        sentence while the generator is still writing (as the voice loop does);
        ``timings["first_audio_s"]`` is the time from the start of the turn (the input audio
        in hand, the speech engines loaded: their first load is ``speech_load_s``) to the first
        reply sample ready to play."""
        if turn is None and (images or audio):
            turn = self.prepare(text, images, audio)
        if turn is not None:
            self.check_fits(turn)  # before the engines load and the encoders run
        t_load = time.perf_counter()
        if turn is not None and turn.audio:
            _ = self.recognizer  # engines load before the clock starts (their time is speech_load_s)
        synthesizer = self.synthesizer if speak else None
        load_s = time.perf_counter() - t_load
        t0 = time.perf_counter()
        out, first = None, []
        if speak:
            from assistant.voice import SpeechOutput

            out = SpeechOutput(synthesizer, play=False, on_notice=lambda line: self._notify(line, "warning"),
                               on_sentence=lambda sentence: first or first.append(time.perf_counter()),
                               first_sentence_first=True)
        try:
            for chunk in self.stream(text, images, audio, cancel=cancel, turn=turn):
                if on_text is not None:
                    on_text(chunk)
                if out is not None:
                    out.feed(chunk)
            reply = self.last_reply
            if out is not None and reply.text:
                t_end = time.perf_counter()
                spoken = out.end()
                reply.audio, reply.sample_rate = (spoken.audio, spoken.sample_rate) if spoken.audio.size else (None, None)
                reply.timings["speak"] = time.perf_counter() - t_end + spoken.synth_s
                if first:
                    reply.timings["first_audio_s"] = first[0] - t0
            if load_s > 0.01:
                reply.timings["speech_load_s"] = load_s
        finally:
            if out is not None:
                out.close()
        return reply

    def cancel(self) -> None:
        """Stop the reply in progress (safe to call from any thread)."""
        self._cancel.set()

    def reset(self) -> None:
        """Forget the conversation."""
        self.history = []
        self.last_reply = None
        self._pending_context.clear()
        self._last_labels = []
        self.generator.forget(keep=[self._system_message()])

    def _system_message(self) -> dict:
        return {"role": "system", "content": self.settings.generator.system_prompt}

    def warm_up(self) -> None:
        """Get ready for a first question now (e.g. while the user is still speaking): the
        plugins' intent router is loaded, and the system prompt (with a resumed session's
        recent history, as much as fits) is run through the generator once and its keys and
        values cached."""
        router = getattr(self.plugins, "warm_up", None)
        if router is not None:  # the tools' intent router loads its sentence encoder (about 3 s)
            router()
        prefill = getattr(self.generator, "prefill", None)
        if prefill is None:
            return
        if not self.history:
            prefill([self._system_message()])
            return
        # A resumed conversation: keep the turns that fit with room for a question, and run
        # them through the generator now, so the first question after resuming reuses them.
        if not self._lock.acquire(blocking=False):
            return  # a turn is running; it fits and caches the history itself
        try:
            room = min(256, self.budget() // 4)
            ahead = {"role": "user", "content": ""}  # cut where the next question's turn will cut
            try:
                fitted = self.generator.fit([self._system_message()] + self.history + [ahead], self.budget() - room,
                                            history=self.history_limit())[:-1]
            except ValueError:
                return
            self.history = fitted[1:]
        finally:
            self._lock.release()
        prefill(fitted)

    # ------------------------------------------------------------------ speech

    def recognition_context(self, turn: Turn) -> str | None:
        """What spoken input in ``turn`` is probably about, for the recognizer's bias.

        ``speech.bias = "auto"``: "scene" when an attached image looks like the scenes the
        fusion core was trained on (a question about it will use their words), else None.
        Biasing open speech toward scene words makes it worse (docs/VOICE.md), hence the check."""
        bias = self.settings.speech.bias
        if bias != "auto":
            return None if bias == "off" else bias
        if turn.image_tokens is None or self.fusion is None or not self.fusion.cfg.domain_threshold:
            return None  # (an audio-only turn does not load the fusion core)
        import torch

        with torch.inference_mode():
            distance = self.fusion.domain_distance(turn.image_tokens.to(self.fusion.domain_mean.device))  # (B,)
        return "scene" if bool((distance <= self.fusion.cfg.domain_threshold).any()) else None

    def transcribe(self, audio, context: str | None = None) -> str:
        """Audio (path or (array, rate) or float32 16 kHz array) -> text ('' for silence).
        ``context``: "scene" biases Whisper toward scene-question words; None: stock decoding."""
        if isinstance(audio, np.ndarray):
            samples = audio.astype(np.float32)
        else:
            samples = load_audio(audio, max_seconds=self.settings.speech.max_audio_seconds)
        rec = self.recognizer
        try:
            if context is not None and accepts_context(rec):
                return rec.transcribe(samples, context=context).strip()
            return rec.transcribe(samples).strip()
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"speech recognition failed: {first_line(e)}") from e

    def speak(self, text: str) -> tuple[np.ndarray, int]:
        """Text (Markdown is cleaned) -> (float32 mono samples, sample rate)."""
        from models.speech import speak_text
        from models.speech.text import speakable

        if not speakable(text).strip():
            raise InputError("speak: nothing speakable in the text")
        try:
            return speak_text(self.synthesizer, text)  # sentence by sentence, as a streamed reply sounds
        except (RuntimeError, ValueError, OSError) as e:
            raise ModelError(f"speech synthesis failed: {e}") from e
