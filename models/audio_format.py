"""The audio every part of the assistant exchanges: mono float32 at 16 kHz, in 32 ms frames.

One place for both numbers; this module imports nothing, so the application can read them
without loading any speech engine."""

SAMPLE_RATE = 16_000
"""Samples a second: what Whisper and the VAD expect; every audio input is resampled to it."""
FRAME = 512
"""Samples in one Silero VAD frame (32 ms at 16 kHz); the microphone delivers blocks this size."""
