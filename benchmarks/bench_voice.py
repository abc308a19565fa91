"""Voice benchmark: recognition accuracy and speed, synthesis speed, time to first audio and
voice-to-voice latency on the default offline stack. A script, not a test.

    .venv/bin/python benchmarks/bench_voice.py            # everything (about 12 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_voice.py --quick    # fewer sentences and voices
    .venv/bin/python benchmarks/bench_voice.py --no-llm   # skip the generator (latency without it)

Speech is synthesized by eSpeak NG with several voices and rates, padded with silence, with
and without white noise (20 dB SNR), then recognized. The sentences here are *not* the
ones the recognizer's combination rule was tuned on. WER is reported for in-domain requests
(commands, common questions, Sort-of-CLEVR questions) and open speech separately, for the
generic pocketsphinx model, the domain model alone, and the combination (the default).
Prints markdown tables (pasted into docs/VOICE.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.speech import load_synthesizer  # noqa: E402
from models.speech.asr import PocketsphinxRecognizer  # noqa: E402
from models.speech.domain import word_error_rate  # noqa: E402
from models.speech.vad import SileroVAD  # noqa: E402

IN_DOMAIN = [
    "What is the shape of the gray object?",
    "Is the green object on the left or right of the image?",
    "Is the red object on the top or bottom of the image?",
    "How many objects have the same shape as the orange object?",
    "What is the shape of the object that is furthest from the blue object?",
    "What is the color of the object closest to the yellow object?",
    "How many objects are there?",
    "What can you see in the photo?",
    "Describe the picture.",
    "What is the capital of Germany?",
    "Summarize the recording.",
    "Stop listening.",
    "What time is it?",
    "Read the text in the image.",
    "How many circles are there?",
]
OPEN = [
    "I left my keys on the kitchen table this morning.",
    "The museum opens at nine and closes at five.",
    "Could you send me the report before the meeting?",
    "Rain is expected over the whole region tomorrow.",
    "Their garden is full of roses and tall sunflowers.",
    "The new bridge will connect the two villages.",
    "He plays the piano every evening after dinner.",
    "Fresh bread smells wonderful in the early morning.",
    "The company hired twenty new engineers last year.",
    "We watched a documentary about ocean animals.",
    "My brother fixed the old bicycle in the garage.",
    "The train was delayed because of the snow.",
]
VOICES = [("en-us", 175), ("en-us+f3", 160), ("en", 190), ("en-us+m3", 140)]
SR = 16_000


def synth16(synth, text: str) -> np.ndarray:
    import soxr

    return soxr.resample(synth.synthesize(text), synth.sample_rate, SR).astype(np.float32)


def make_case(speech: np.ndarray, snr_db: float | None, rng) -> np.ndarray:
    audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(8000, np.float32)])
    if snr_db is None:
        return audio + rng.normal(0, 0.002, len(audio)).astype(np.float32)
    rms = float(np.sqrt(np.mean(speech ** 2)))
    return audio + rng.normal(0, rms / 10 ** (snr_db / 20), len(audio)).astype(np.float32)


def bench_recognition(rec: PocketsphinxRecognizer, voices, sentences_in, sentences_open) -> dict:
    rng = np.random.default_rng(0)
    results = {}  # (engine, kind, noise) -> list[(ref, hyp)]
    seconds = {"generic": 0.0, "domain": 0.0, "combined": 0.0, "vad": 0.0}
    audio_s = 0.0
    for voice, rate in voices:
        synth = load_synthesizer(voice=voice, rate=rate)
        for kind, sentences in (("in-domain", sentences_in), ("open", sentences_open)):
            for sentence in sentences:
                speech = synth16(synth, sentence)
                for noise in (None, 20.0):
                    audio = make_case(speech, noise, rng)
                    audio_s += len(audio) / SR
                    t = time.perf_counter()
                    segments = rec.segments(audio)
                    seconds["vad"] += time.perf_counter() - t
                    hyps = {"generic": [], "domain": [], "combined": []}
                    for start, end in segments:
                        out = rec.decode_all(audio[start:end])
                        hyps["generic"].append(out["generic"][0])
                        hyps["domain"].append(out["domain"][0])
                        hyps["combined"].append(rec.choose(out)[0])
                        seconds["generic"] += out["generic"][2]
                        seconds["domain"] += out["domain"][2]
                    label = "clean" if noise is None else "20 dB"
                    for engine, texts in hyps.items():
                        results.setdefault((engine, kind, label), []).append((sentence, " ".join(t for t in texts if t)))
    seconds["combined"] = seconds["generic"] + seconds["domain"] + seconds["vad"]
    return {"pairs": results, "seconds": seconds, "audio_s": audio_s}


def print_wer(res: dict, voices) -> None:
    print(f"\nWord error rate, {len(voices)} eSpeak voices/rates, clean and with white noise at 20 dB SNR\n")
    print("| recognizer | in-domain clean | in-domain 20 dB | open clean | open 20 dB | RTF (2 cores) |")
    print("|---|---|---|---|---|---|")
    names = {"generic": "pocketsphinx, generic LM", "domain": "pocketsphinx, domain LM only", "combined": "**pocketsphinx, domain + generic (default)**"}
    secs = res["seconds"]
    for engine in ("generic", "domain", "combined"):
        cells = []
        for kind in ("in-domain", "open"):
            for noise in ("clean", "20 dB"):
                cells.append(f"{word_error_rate(res['pairs'][(engine, kind, noise)]):.3f}")
        rtf = (secs[engine] + (0 if engine == "combined" else secs["vad"])) / res["audio_s"]
        print(f"| {names[engine]} | " + " | ".join(cells) + f" | {rtf:.2f} |")
    for kind in ("in-domain", "open"):
        pairs = res["pairs"][("combined", kind, "clean")]
        print(f"\nexamples ({kind}, combined):")
        for ref, hyp in pairs[:4]:
            print(f"  {ref!r} -> {hyp!r}")


def bench_tts() -> dict:
    synth = load_synthesizer()
    text = ("The red object is a circle. It is on the left side of the image, near the top. "
            "The closest object to it is the blue square.")
    synth.synthesize("warm up")
    times = []
    for _ in range(5):
        t = time.perf_counter()
        audio = synth.synthesize(text)
        times.append(time.perf_counter() - t)
    first = "The red object is a circle."
    t_first = []
    for _ in range(5):
        t = time.perf_counter()
        synth.synthesize(first)
        t_first.append(time.perf_counter() - t)
    return {"rtf": statistics.median(times) / (len(audio) / synth.sample_rate),
            "first_sentence_s": statistics.median(t_first), "audio_s": len(audio) / synth.sample_rate}


def bench_latency(rec: PocketsphinxRecognizer, vad: SileroVAD, use_llm: bool) -> dict:
    """End of the user's speech -> first reply audio, stage by stage (median of 3)."""
    from assistant.voice import Listener

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "voice"))
    from fakes import FakeStreams  # the test fakes: no sound card needed

    synth = load_synthesizer()
    question = "What is the capital of France?"
    speech = synth16(load_synthesizer(voice="en-us+m3", rate=160), question)
    generator = None
    if use_llm:
        from models.generator import Generator

        cache = os.environ.get("SYNESTHESIA_TEST_CACHE") or os.path.expanduser("~/.cache/synesthesia-tests")
        generator = Generator.load(cache_dir=cache)
    rows = []
    for _ in range(4):  # the first utterance of a session is decoded in one pass (see PocketsphinxStream)
        streams = FakeStreams(np.concatenate([np.zeros(8000, np.float32), speech]))
        got: list[str] = []
        listener = Listener(vad=vad, recognizer=rec, streams=streams, inline=True, end_silence_ms=700,
                            on_transcript=got.append)
        listener.start()
        steps, busy, last = 0, 0.0, 0.0
        while not got and steps < 1000:
            t = time.perf_counter()
            streams.step()  # 32 ms of microphone audio: VAD, and decoding once speech started
            last = time.perf_counter() - t
            busy += last
            steps += 1
        # Audio time from the real end of speech to the end-of-speech event (the silence the
        # detector must hear); the recognizer decoded the words while they were spoken.
        endpoint_s = steps * 512 / SR - (0.5 + len(speech) / SR)
        text = got[0]
        asr_s = last  # the last block: end of speech detected, last frames decoded, both models' final passes
        live_rtf = (busy - last) / (steps * 512 / SR)
        t = time.perf_counter()
        llm_first_sentence = None
        if generator is not None:
            messages = [{"role": "system", "content": "You are a helpful assistant. Answer briefly."},
                        {"role": "user", "content": text}]
            from models.speech.text import SentenceStream

            splitter = SentenceStream()
            reply = ""
            for chunk in generator.stream(messages):
                reply += chunk
                done = splitter.feed(chunk)
                if done:
                    llm_first_sentence = time.perf_counter() - t
                    reply_first = done[0]
                    break
            if llm_first_sentence is None:
                llm_first_sentence = time.perf_counter() - t
                reply_first = (splitter.flush() or ["(nothing)"])[0]
        else:
            reply_first = "The capital of France is Paris."
        t = time.perf_counter()
        synth.synthesize(reply_first)
        tts_s = time.perf_counter() - t
        playback_s = 1024 / synth.sample_rate  # one output block before sound leaves the card
        rows.append({"end of speech (700 ms setting)": endpoint_s, "recognition (final passes)": asr_s,
                     "generator to first sentence": llm_first_sentence or 0.0,
                     "synthesis of first sentence": tts_s, "output buffer": playback_s,
                     "_text": text, "_reply": reply_first, "_live_rtf": live_rtf})
    first, rows = rows[0], rows[1:]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if not k.startswith("_")}
    med["_text"], med["_reply"] = rows[0]["_text"], rows[0]["_reply"]
    med["_live_rtf"] = statistics.median(r["_live_rtf"] for r in rows)
    med["_first_asr"] = first["recognition (final passes)"]
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 voices, 6 sentences of each kind")
    ap.add_argument("--no-llm", action="store_true", help="skip the generator in the latency run")
    ap.add_argument("--latency-only", action="store_true", help="only the voice-to-voice latency")
    args = ap.parse_args()
    voices = VOICES[:2] if args.quick else VOICES
    sin, sopen = (IN_DOMAIN[:6], OPEN[:6]) if args.quick else (IN_DOMAIN, OPEN)

    print(f"# Voice benchmark ({os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start)")
    vad = SileroVAD()
    t = time.perf_counter()
    rec = PocketsphinxRecognizer(vad=vad)
    print(f"\npocketsphinx + domain LM ({len(rec.sentences)} phrases) loaded in {time.perf_counter() - t:.1f} s")

    if not args.latency_only:
        tts = bench_tts()
        res = bench_recognition(rec, voices, sin, sopen)
        print_wer(res, voices)
        print(f"\nrecognized {res['audio_s']:.0f} s of audio; VAD RTF {res['seconds']['vad'] / res['audio_s']:.3f}")

        print("\n| synthesis (eSpeak NG) | value |\n|---|---|")
        print(f"| real-time factor | {tts['rtf']:.4f} |")
        print(f"| first sentence synthesized (time to first audio once the sentence is written) | {tts['first_sentence_s'] * 1000:.0f} ms |")

    lat = bench_latency(rec, vad, use_llm=not args.no_llm)
    heard, reply, live_rtf = lat.pop("_text"), lat.pop("_reply"), lat.pop("_live_rtf")
    first_asr = lat.pop("_first_asr")
    total = sum(lat.values())
    print(f"\nVoice-to-voice latency for a spoken 'What is the capital of France?' (heard as {heard!r}; "
          f"first reply sentence {reply!r}; decoding while listening ran at {live_rtf:.2f} x real time)\n")
    print("| stage | seconds | share |\n|---|---|---|")
    for stage, s in lat.items():
        print(f"| {stage} | {s:.2f} | {100 * s / total:.0f}% |")
    print(f"| **total: end of speech to first reply audio** | **{total:.2f}** | 100% |")
    print(f"\n(median of 3 turns after the first; the session's first utterance is decoded in one pass "
          f"after it ends: recognition {first_asr:.2f} s)")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
