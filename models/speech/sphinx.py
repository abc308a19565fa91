"""Pocketsphinx, adapted to the assistant's domain (a selectable engine: ``recognizer = "pocketsphinx"``).

The generic en-US trigram model that ships with pocketsphinx gets about half the words
wrong on synthetic voices. Like offline assistants such as Rhasspy, we adapt it to what the
assistant expects to hear: a trigram model is built (with pocketsphinx's own ``ArpaBoLM``)
from the in-domain sentences of :mod:`models.speech.domain` (commands, common requests,
Sort-of-CLEVR questions) plus any ``extra_phrases`` (plugin examples). The decoder holds two
searches, the domain model and the generic model, and each speech segment is decoded with
both. The two readings are then combined at the utterance level (:meth:`choose`): the domain
reading wins when it is close to something the domain model expects (high probability per
word under it) and fits the sounds about as well as the generic reading; otherwise the
generic reading is kept, so open speech still works. (Pocketsphinx's Python API does not expose interpolated language-model
sets, and mixing the 3.7-million-n-gram generic model with ours in Python at start-up is too
slow, hence the two passes.) :attr:`PocketsphinxRecognizer.last_source` says which won.

Since Whisper became the default (docs/VOICE.md has the measurements), pocketsphinx stays as
a small, very fast choice for the assistant's own commands; on speakers it was not tuned on
it is much less accurate than Whisper.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from models.speech.base import SAMPLE_RATE, Segmenting
from models.speech.domain import domain_corpus

__all__ = ["PocketsphinxRecognizer", "PocketsphinxStream", "build_domain_arpa"]

log = logging.getLogger(__name__)

_LN_LOGBASE = math.log(1.0001)  # pocketsphinx's log base: scores are integers in log_1.0001 units



_PAD = np.random.default_rng(1234).normal(0.0, 1e-4, 4000).astype(np.float32)  # 250 ms of faint noise


def _pcm16_raw(audio: np.ndarray) -> bytes:
    """(t,) float32 -> little-endian int16 bytes, level unchanged (for streaming)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _pcm16(audio: np.ndarray) -> bytes:
    """(t,) float32 -> (t + 8000,) little-endian int16 bytes for pocketsphinx.

    Peak-normalised to -3 dBFS and padded with 250 ms of faint noise on both sides: the
    decoder's cepstral mean normalisation and its silence model both need some non-speech
    around the words (speech that starts on the first sample loses its first word).
    """
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1e-4:
        audio = audio * (0.7 / peak)
    audio = np.concatenate([_PAD, audio, _PAD])
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def build_domain_arpa(sentences: Iterable[str], path: Path, discount: float = 0.3) -> Path:
    """Write a trigram ARPA model of ``sentences`` (normalised text, one per item) to ``path``."""
    from pocketsphinx.lm import ArpaBoLM

    text = "\n".join(sentences) + "\n"
    lm = ArpaBoLM(text=text, add_start=True, discount_mass=discount, case="lower")
    lm.compute()
    buf = io.StringIO()
    lm.write(buf)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


class PocketsphinxRecognizer(Segmenting):
    """Pocketsphinx with the generic en-US model combined with a domain-adapted model.

    ``mode``: ``"combined"`` (default: domain and generic passes, see :meth:`choose`),
    ``"domain"`` (domain model only) or ``"generic"`` (the stock model only). ``cache_dir``
    keeps the built domain model (keyed by a hash of its sentences).
    """

    MODES = ("combined", "domain", "generic")

    def __init__(
        self,
        *,
        extra_phrases: Iterable[str] = (),
        mode: str = "combined",
        margin: float = 2.9,
        fluency_weight: float = 0.25,
        domain_weight: float = 1.0,
        cache_dir: str | os.PathLike | None = None,
        vad=None,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"pocketsphinx mode {mode!r}: choose one of {', '.join(self.MODES)}")
        try:
            import pocketsphinx
        except ImportError as e:
            raise RuntimeError("pocketsphinx is not installed: pip install pocketsphinx") from e
        super().__init__(vad)
        self.mode, self.margin = mode, float(margin)
        self.fluency_weight, self.domain_weight = float(fluency_weight), float(domain_weight)
        model = Path(pocketsphinx.get_model_path()) / "en-us"
        self._ps = pocketsphinx
        self._model = model
        self.decoder = self._new_decoder(str(model / "en-us.lm.bin"))
        self.generic = self.decoder.current_search()
        self._generic_lm = self.decoder.get_lm(self.generic)
        self.sentences: list[str] = []
        self.skipped: list[str] = []
        self._domain_path: Path | None = None
        if mode != "generic":
            self._add_domain(list(extra_phrases), cache_dir)
        self.last_source = ""
        self._stream_lock = threading.Lock()
        self._stream_decoders = None  # (domain, generic) decoders for streams, made on first use
        self._stream_warm = False  # have the streaming decoders' normalisation statistics adapted?
        self.name = {"combined": "pocketsphinx (domain LM)", "domain": "pocketsphinx (domain LM only)", "generic": "pocketsphinx (generic LM)"}[mode]

    def _add_domain(self, extra: list[str], cache_dir) -> None:
        known, skipped = [], []
        for sentence in domain_corpus(extra):
            missing = [w for w in sentence.split() if self.decoder.lookup_word(w) is None]
            (skipped if missing else known).append(sentence)
        if skipped:
            log.info("domain LM: %d phrases skipped (words not in the pronunciation dictionary): %s", len(skipped), skipped[:5])
        self.sentences, self.skipped = known, skipped
        digest = hashlib.sha256("\n".join(known).encode()).hexdigest()[:16]
        folder = Path(cache_dir) if cache_dir else Path(os.environ.get("TMPDIR", "/tmp"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"domain-{digest}.lm"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            build_domain_arpa(known, tmp)
            tmp.replace(path)
        self.decoder.add_lm_file("domain", str(path))
        self._domain_lm = self.decoder.get_lm("domain")
        self._domain_path = path

    def _new_decoder(self, lm: str):
        model = self._model
        config = self._ps.Config(
            hmm=str(model / "en-us"), dict=str(model / "cmudict-en-us.dict"),
            lm=lm, samprate=SAMPLE_RATE, loglevel="FATAL",
        )
        return self._ps.Decoder(config)

    def _run(self, search: str, pcm: bytes) -> tuple[str, float, int]:
        """Decode with one search: (text, acoustic log-likelihood per frame, frames)."""
        d = self.decoder
        d.activate_search(search)
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        return _result(d)

    def stream(self, context: str | None = None) -> "PocketsphinxStream":
        """Start recognizing audio as it arrives (the microphone): see :class:`PocketsphinxStream`."""
        return PocketsphinxStream(self)

    def decode_all(self, segment: np.ndarray) -> dict[str, tuple[str, float, float, float]]:
        """(t,) float32 -> {"generic"|"domain": (text, acoustic/frame, seconds, acoustic/frame)}.

        Every search on one segment, with timings (what :meth:`choose` takes; the benchmark
        uses it to score all three variants from one decoding)."""
        import time

        pcm = _pcm16(segment)
        out = {}
        for name in self._searches():
            t = time.perf_counter()
            text, acoustic, _ = self._run(name, pcm)
            out["generic" if name == self.generic else name] = (text, acoustic, time.perf_counter() - t, acoustic)
        return out

    def _searches(self) -> list[str]:
        return [self.generic] if self.mode == "generic" else [self.generic, "domain"]

    def fluency(self, text: str, search: str | None = None) -> float:
        """Mean natural-log probability per word of ``text`` under a model: the generic one
        (default) or ``search="domain"``."""
        words = ["<s>", *text.split(), "</s>"]
        if len(words) == 2:
            return -20.0
        lm = self._generic_lm if search is None else self._domain_lm
        total = 0.0
        for i in range(1, len(words)):
            # NGramModel.prob takes the word first, then its history, most recent first.
            total += lm.prob([words[i], *reversed(words[max(0, i - 2):i])])
        return total * _LN_LOGBASE / (len(words) - 1)

    def choose(self, results: dict) -> tuple[str, str]:
        """Pick the domain or the generic reading of one segment: (text, "domain"|"generic").

        ``results`` maps "domain" and "generic" to ``(text, score, seconds, acoustic per
        frame, ...)``. The evidence, weighed by a linear rule tuned on synthetic speech
        (separate sentences from the benchmark's, see docs/VOICE.md):

        * how close the domain reading is to what the assistant expects: its mean log
          probability per word under the *domain* model (about -1 to -2 for a request the
          model was built from or a near variant; -4 to -6 when open speech is forced through
          the domain model and comes out as word salad such as "the quit wrote bottom the
          where");
        * how well each reading fits the sounds (acoustic log-likelihood per frame);
        * how plausible each reading is as English (mean log probability under the generic model).
        """
        dom_text, gen_text = results["domain"][0], results["generic"][0]
        if not dom_text:
            return gen_text, "generic"
        if not gen_text:
            return dom_text, "domain"
        acoustic = results["domain"][3] - results["generic"][3]
        english = self.fluency(dom_text) - self.fluency(gen_text)
        expected = self.fluency(dom_text, "domain")
        score = acoustic + self.fluency_weight * english + self.domain_weight * expected + self.margin
        return (dom_text, "domain") if score >= 0 else (gen_text, "generic")

    def _decode(self, segment: np.ndarray) -> str:
        pcm = _pcm16(segment)  # (t,) -> int16 bytes
        if self.mode == "generic":
            self.last_source = "generic"
            return self._run(self.generic, pcm)[0]
        if self.mode == "domain":
            self.last_source = "domain"
            return self._run("domain", pcm)[0]
        dom, gen = self._run("domain", pcm), self._run(self.generic, pcm)
        results = {"domain": (dom[0], dom[1], 0.0, dom[1]), "generic": (gen[0], gen[1], 0.0, gen[1])}
        text, self.last_source = self.choose(results)
        return text


def _result(d) -> tuple[str, float, int]:
    """The finished utterance of decoder ``d``: (text, acoustic log-likelihood per frame, frames)."""
    hyp = d.hyp()
    text = hyp.hypstr if hyp else ""
    frames = max(1, d.n_frames())
    # The bindings hand scores over as probabilities (exp of the log score); take logs
    # again. The </s> entry repeats the last word's acoustic score, so it is left out.
    ascore = sum(math.log(max(s.ascore, 1e-300)) for s in d.seg() if s.word != "</s>")
    words = [w for w in text.split() if not w.startswith(("<", "[", "++"))]
    return " ".join(w.split("(")[0] for w in words), ascore / frames, frames


class PocketsphinxStream:
    """Incremental recognition of one utterance, decoded while it is being spoken.

    ``feed((n,) float32 16 kHz)`` decodes as audio arrives, with both the domain and the
    generic model (two decoders of their own, made on first use); ``finish()`` ends the
    utterance and returns the combined transcript, so after the speaker stops only the last
    fraction of a second remains to decode. ``cancel()`` drops it. One stream at a time per
    recognizer (a second waits for the first to finish).
    """

    def __init__(self, rec: "PocketsphinxRecognizer") -> None:
        self.rec = rec
        if not rec._stream_lock.acquire(timeout=60):
            raise RuntimeError("pocketsphinx: another recognition stream is still open (finish or cancel it)")
        try:
            if rec._stream_decoders is None:
                generic = rec._new_decoder(str(rec._model / "en-us.lm.bin"))
                domain = rec._new_decoder(str(rec._domain_path)) if rec.mode != "generic" else None
                rec._stream_decoders = (domain, generic)
            self.domain, self.generic = rec._stream_decoders
            self.active = [d for d in (self.domain, self.generic) if d is not None]
            if rec.mode == "domain":
                self.active = [self.domain]
            elif rec.mode == "generic":
                self.active = [self.generic]
            # Live cepstral mean normalisation starts from the model's generic estimate and
            # adapts utterance by utterance; until it has adapted once, the first utterance is
            # decoded in one pass at the end (with whole-utterance normalisation) instead.
            self.live = rec._stream_warm
            self.audio: list[np.ndarray] = []
            for d in self.active:
                d.start_utt()
            self._feed_pcm(_pcm16_raw(_PAD))
            self.open = True
        except BaseException:
            rec._stream_lock.release()
            raise

    def _feed_pcm(self, pcm: bytes) -> None:
        for d in self.active:
            d.process_raw(pcm, full_utt=False)

    def feed(self, audio: np.ndarray, speech: bool = True) -> None:
        """Decode the next (n,) float32 samples at 16 kHz (``speech`` is not needed here)."""
        if self.open and audio.size:
            if self.live:
                self._feed_pcm(_pcm16_raw(audio))
            else:
                self.audio.append(np.asarray(audio, np.float32).copy())

    def _close(self) -> list[tuple[str, float, int]]:
        self._feed_pcm(_pcm16_raw(_PAD))
        out = []
        for d in self.active:
            d.end_utt()
            out.append(_result(d))
        self.open = False
        self.rec._stream_lock.release()
        return out

    def partial(self) -> str | None:
        """Pocketsphinx gives no early transcript here: always None (the turn ends on silence)."""
        return None

    def finish(self, timeout: float | None = None) -> str:
        """End the utterance: its transcript ("" when nothing was said)."""
        if not self.open:
            return ""
        rec = self.rec
        if not self.live:
            self._close()
            audio = np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)
            with rec.lock:
                text = rec._decode(audio) if audio.size else ""
                cmn = rec.decoder.get_cmn()
            for d in self.active:
                d.set_cmn(cmn)  # the streaming decoders start from what this utterance taught
            rec._stream_warm = True
            return text
        results = self._close()
        if len(results) == 1:
            rec.last_source = rec.mode
            return results[0][0]
        dom, gen = results
        text, rec.last_source = rec.choose({"domain": (dom[0], dom[1], 0.0, dom[1]), "generic": (gen[0], gen[1], 0.0, gen[1])})
        return text

    def cancel(self) -> None:
        if self.open:
            self._close()
