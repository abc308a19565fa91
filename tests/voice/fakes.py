"""Fake audio devices: a stream factory whose microphone plays back given samples and whose
speaker records what it is sent. Nothing touches a sound card.

``FakeStreams.run(seconds)`` drives both in lock step, block by block, as a full-duplex
device would: each step the speaker callback is asked for a block, then the microphone
callback receives a block made of the scripted microphone audio plus ``echo`` times what the
speaker just played (the assistant's own voice leaking back into the microphone).
"""

from __future__ import annotations

import numpy as np


class FakeStream:
    def __init__(self, kind, samplerate, blocksize, device, callback):
        self.kind, self.samplerate, self.blocksize, self.device, self.callback = kind, samplerate, blocksize, device, callback
        self.started = self.closed = False

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


class FakeStreams:
    """A stream factory for tests (see the module docstring)."""

    def __init__(self, mic: np.ndarray | None = None, *, rate: int = 16_000, echo: float = 0.0, echo_delay: int = 0,
                 fail_output: bool = False, fail_input: bool = False):
        self.mic = np.zeros(0, np.float32) if mic is None else np.asarray(mic, np.float32)
        self.rate, self.echo, self.echo_delay = rate, echo, echo_delay
        self.fail_output, self.fail_input = fail_output, fail_input
        self.input: FakeStream | None = None
        self.output: FakeStream | None = None
        self.played: list[np.ndarray] = []
        self._mic_pos = 0
        self._echo_line = np.zeros(echo_delay, np.float32)

    def open_input(self, samplerate, blocksize, device, callback):
        if self.fail_input:
            from assistant.errors import DeviceError

            raise DeviceError("no microphone (fake)")
        self.input = FakeStream("input", samplerate, blocksize, device, callback)
        return self.input

    def open_output(self, samplerate, blocksize, device, callback):
        if self.fail_output:
            from assistant.errors import DeviceError

            raise DeviceError("no audio devices: the PortAudio library is missing (fake)")
        self.output = FakeStream("output", samplerate, blocksize, device, callback)
        return self.output

    def speaker_audio(self) -> np.ndarray:
        return np.concatenate(self.played) if self.played else np.zeros(0, np.float32)

    def step(self, n: int = 512) -> None:
        """One block of ``n`` microphone samples at 16 kHz (and the matching speaker block)."""
        echo_block = np.zeros(n, np.float32)
        if self.output is not None and self.output.started:
            m = round(n * self.output.samplerate / self.rate)
            out = np.asarray(self.output.callback(m), np.float32)
            self.played.append(out)
            if self.echo:
                import soxr

                back = soxr.resample(out, self.output.samplerate, self.rate)[:n] if self.output.samplerate != self.rate else out
                back = np.pad(back, (0, n - len(back)))
                line = np.concatenate([self._echo_line, back])
                echo_block = self.echo * line[:n]
                self._echo_line = line[n:]
        if self.input is not None and self.input.started:
            block = self.mic[self._mic_pos:self._mic_pos + n]
            self._mic_pos += n
            block = np.pad(block, (0, n - len(block))) + echo_block
            self.input.callback(block.astype(np.float32))

    def run(self, seconds: float, n: int = 512) -> None:
        for _ in range(int(seconds * self.rate / n)):
            self.step(n)

    def feed_all(self, n: int = 512, tail_s: float = 1.5) -> None:
        """Push the whole scripted microphone audio plus ``tail_s`` of silence."""
        self.run((len(self.mic) - self._mic_pos) / self.rate + tail_s, n)
