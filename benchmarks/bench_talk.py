"""Talk latency on the product's own path: end of the user's speech -> first reply sample
handed to the speaker. A script, not a test.

    .venv/bin/python benchmarks/bench_talk.py              # 5 runs of 3 short questions
    .venv/bin/python benchmarks/bench_talk.py --quick      # 2 runs
    .venv/bin/python benchmarks/bench_talk.py --voice default   # questions in the default voice

A recorded question (synthesized by eSpeak NG "en-gb-scotland", an evaluation voice the
recognizer was not tuned on, or by the default synthesizer; resampled to 16 kHz) followed by
silence is played into a fake microphone at real-time pace (512 samples every 32 ms, on a
clock thread), and goes through exactly what ``assistant talk`` and the terminal UI run:
:class:`assistant.voice.TalkLoop` -> Listener (Silero VAD, smart end of turn) -> the real
recognizer (``Assistant.load().recognizer``) -> the real generator (``bot.stream``) ->
SpeechOutput with the real synthesizer -> a fake speaker pulling blocks at real-time pace.

The end of speech is the true one (the last sample of the question's audio above 2 % of its
peak, placed in time where the microphone block carrying it was delivered, minus the rest of
that block). The conversation is reset before each question; each reply is cut a moment after
its first sound (as if the user had heard enough), so the next question starts from an idle
CPU. One warm-up question is not counted.

Stages (they add up to the total):

* end-of-turn wait: end of speech -> the listener declares the turn over (early answer, quick
  rule or silence);
* recognition tail: -> the transcript is ready (what was not decoded while the user spoke);
* first token: -> the generator's first text chunk (prompt building, tools, first token);
* first sentence: -> the first complete sentence goes to synthesis;
* synthesis: -> the first sentence is synthesized;
* pause check: -> an early-answered request's pause has lasted ``quick_end_ms`` (the reply was
  prepared meanwhile but may not be heard before; 0 when the pause was confirmed first);
* to speaker: -> its first non-zero sample is handed to the output callback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.voice import TalkLoop  # noqa: E402

QUESTIONS = ["What is the capital of France?", "What time is it?", "Tell me a joke."]
WARMUP = "What is the capital of Italy?"
SR = 16_000
BLOCK = 512
STAGES = ["end_of_turn_wait", "recognition_tail", "first_token", "first_sentence", "synthesis", "pause_check",
          "to_speaker"]
TARGET_S = 0.8


# ----------------------------------------------------------------------------- real-time fake devices


class _ClockStream:
    """A device stream whose callback runs every ``period`` seconds of wall time (no drift)."""

    def __init__(self, period: float, tick) -> None:
        self.period, self.tick = period, tick
        self._run = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._run.set()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-device")
        self._thread.start()

    def _loop(self) -> None:
        next_t = time.perf_counter()
        while self._run.is_set():
            self.tick()
            next_t += self.period
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.perf_counter()  # fell behind (an overloaded machine): do not burst

    def stop(self) -> None:
        self._run.clear()

    def close(self) -> None:
        self._run.clear()


class RealTimeDevices:
    """A stream factory at wall-clock pace: a microphone that plays what :meth:`say` queued
    (then a faint noise floor) and a speaker that pulls blocks as a sound card would."""

    def __init__(self, noise: float = 0.001, seed: int = 0) -> None:
        self.lock = threading.Lock()
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.mic = np.zeros(0, np.float32)
        self.pos = 0
        self.speech_end_sample: int | None = None  # index into ``mic`` of the question's last speech sample
        self.speech_end_at: float | None = None  # perf_counter() of that sample
        self.pulled = 0

    def say(self, audio: np.ndarray, last_speech: int) -> None:
        with self.lock:
            self.mic = np.concatenate([self.mic[self.pos:], audio.astype(np.float32)])
            self.speech_end_sample = len(self.mic) - len(audio) + last_speech
            self.pos = 0
            self.speech_end_at = None

    @property
    def saying(self) -> bool:
        return self.pos < len(self.mic)

    def _mic_block(self, n: int) -> np.ndarray:
        now = time.perf_counter()
        with self.lock:
            block = self.noise * self.rng.standard_normal(n).astype(np.float32)
            part = self.mic[self.pos:self.pos + n]
            block[:len(part)] += part
            end = self.speech_end_sample
            if end is not None and self.pos <= end < self.pos + n:
                # The block is delivered once its last sample is recorded: the speech ended earlier.
                self.speech_end_at = now - (self.pos + n - 1 - end) / SR
                self.speech_end_sample = None
            self.pos += n
        return block

    def open_input(self, samplerate, blocksize, device, callback, on_error=None):
        assert samplerate == SR
        return _ClockStream(blocksize / samplerate, lambda: callback(self._mic_block(blocksize)))

    def open_output(self, samplerate, blocksize, device, callback):
        def pull() -> None:
            callback(blocksize)
            self.pulled += 1

        return _ClockStream(blocksize / samplerate, pull)


# ----------------------------------------------------------------------------- the run


def question_audio(text: str, voice: str) -> tuple[np.ndarray, int]:
    """(T,) float32 16 kHz: 0.3 s of silence, the question, 1.5 s of silence; and the index of its last speech sample."""
    import soxr

    from models.speech import load_synthesizer

    synth = load_synthesizer() if voice == "default" else load_synthesizer("espeak", voice=voice, rate=175)
    speech = soxr.resample(synth.synthesize(text), synth.sample_rate, SR).astype(np.float32)
    lead = np.zeros(int(0.3 * SR), np.float32)
    audio = np.concatenate([lead, speech, np.zeros(int(1.5 * SR), np.float32)])
    loud = np.flatnonzero(np.abs(speech) > 0.02 * np.abs(speech).max())
    return audio, len(lead) + int(loud[-1])


def wait_for(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise SystemExit(f"bench_talk: timed out waiting for {what}")
        time.sleep(0.005)


def ask(loop: TalkLoop, devices: RealTimeDevices, bot, audio: np.ndarray, last: int) -> dict:
    """One question through the loop; its timings."""
    bot.reset()
    n = len(loop.turns)
    devices.say(audio, last)
    wait_for(lambda: loop.output.timeline.first_sound is not None or len(loop.turns) > n, 60, "the first sound")
    time.sleep(0.3)
    loop.interrupt()  # heard enough: the next question starts from an idle machine
    wait_for(lambda: len(loop.turns) > n and loop.state == "listening", 60, "the loop to listen again")
    wait_for(lambda: not devices.saying, 10, "the question's trailing silence")
    turn = loop.turns[-1]
    if len(loop.turns) > n + 1:
        print(f"  (warning: {len(loop.turns) - n} turns for one question: {[t.heard for t in loop.turns[n:]]})")
    b = turn.breakdown()
    u = turn.utterance
    row = {"heard": turn.heard, "rule": u.rule, "reply": (turn.spoken.sentences[:1] or [""])[0] if turn.spoken else ""}
    truth = devices.speech_end_at
    if truth is not None and u.turn_end is not None and b["total"] is not None:
        row["end_of_turn_wait"] = u.turn_end - truth
        row["vad_lag"] = (u.speech_end - truth) if u.speech_end is not None else None
        for k in STAGES[1:]:
            row[k] = b[k]
        row["total"] = u.turn_end - truth + sum(b[k] for k in STAGES[1:])
    return row


def fmt(x) -> str:
    return f"{x:.2f}" if isinstance(x, float) else "–"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs over the questions (default 5)")
    ap.add_argument("--quick", action="store_true", help="2 runs")
    ap.add_argument("--early-ms", type=int, default=None,
                    help="voice.early_answer_ms for this run (0: off; default: the setting)")
    ap.add_argument("--voice", default="en-gb-scotland",
                    help="eSpeak NG voice of the questions, or 'default' for the default synthesizer")
    args = ap.parse_args()
    runs = 2 if args.quick else args.runs

    from assistant.config import Settings
    from assistant.pipeline import Assistant

    print(f"# Talk latency ({os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start)\n")
    t = time.perf_counter()
    settings = Settings.load()
    if args.early_ms is not None:
        settings.voice.early_answer_ms = args.early_ms
    bot = Assistant.load(settings, plugins=True)
    rec, synth = bot.recognizer, bot.synthesizer
    print(f"loaded in {time.perf_counter() - t:.1f} s: recognizer {rec.name}, synthesizer {synth.name}, "
          f"generator {getattr(bot.generator, 'name', '?')}; end of turn: early answer "
          f"{settings.voice.early_answer_ms} ms, quick {settings.voice.quick_end_ms} ms "
          f"(complete-looking transcript) / {settings.voice.end_silence_ms} ms; questions in voice {args.voice}\n")
    clips = {q: question_audio(q, args.voice) for q in [WARMUP] + QUESTIONS}

    devices = RealTimeDevices()
    errors: list[str] = []
    loop = TalkLoop(bot, streams=devices, on_error=errors.append, on_notice=errors.append)
    loop.start()
    try:
        ask(loop, devices, bot, *clips[WARMUP])
        rows = []
        for run in range(1, runs + 1):
            for q in QUESTIONS:
                row = ask(loop, devices, bot, *clips[q])
                row["run"], row["question"] = run, q
                rows.append(row)
                print(f"  run {run}: {q!r} -> heard {row['heard']!r}, total {fmt(row.get('total'))} s", flush=True)
    finally:
        loop.stop()
    for e in errors:
        print(f"  (notice: {e})")

    print("\n| run | question | heard | end | " + " | ".join(s.replace("_", " ") for s in STAGES) + " | **total** |")
    print("|---" * (5 + len(STAGES)) + "|")
    for r in rows:
        cells = [fmt(r.get(k)) for k in STAGES] + [f"**{fmt(r.get('total'))}**"]
        print(f"| {r['run']} | {r['question']} | {r['heard']} | {r['rule']} | " + " | ".join(cells) + " |")
    timed = [r for r in rows if r.get("total") is not None]
    if not timed:
        print("\nno run reached the speaker")
        return 1
    med = {k: statistics.median(r[k] for r in timed) for k in STAGES + ["total"]}
    print("| **median** | | | | " + " | ".join(fmt(med[k]) for k in STAGES) + f" | **{fmt(med['total'])}** |")
    rules = {rule: sum(r["rule"] == rule for r in timed) for rule in sorted({r["rule"] for r in timed})}
    lags = [r["vad_lag"] for r in timed if r.get("vad_lag") is not None]
    lag = f"; the VAD's end of speech came {statistics.median(lags) * 1000:.0f} ms after the true end (median)" if lags else ""
    print(f"\nmedian end of speech -> first reply sample: **{med['total']:.2f} s** "
          f"(target {TARGET_S} s: {'met' if med['total'] <= TARGET_S else 'not met'}); "
          f"turns ended by rule: {', '.join(f'{k} {v}/{len(timed)}' for k, v in rules.items())}{lag}")
    print("first reply sentences: " + "; ".join(sorted({repr(r['reply']) for r in timed})))
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
