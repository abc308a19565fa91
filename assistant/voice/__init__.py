"""Voice in and out: microphone with toggle-to-talk and a smart end of turn, playback, streamed
spoken replies, barge-in, and the hands-free loop. Works without any sound card (tests inject
fake streams; the CLI falls back to files).

One concept a module, each importable alone; everything public is re-exported here:

============================  ==================================================================
:mod:`.devices`               PortAudio lookup, the stream factory protocol, SounddeviceStreams
:mod:`.playback`              :class:`Player` (queued clips, stop at once), :func:`play`
:mod:`.speech_output`         :class:`SpeechOutput`: streamed reply text -> speech, sentence by sentence
:mod:`.listener`              :class:`Listener`: microphone -> utterances -> transcripts
:mod:`.barge_in`              :class:`BargeIn` (the user, not the assistant's echo), :func:`connect_barge_in`
:mod:`.talk`                  :class:`TalkLoop`: listen -> answer aloud -> listen again
============================  ==================================================================

Audio devices
-------------
All device access goes through a *stream factory* (:class:`SounddeviceStreams` by default)::

    factory.open_input(samplerate, blocksize, device, callback, on_error)  # callback((n,) float32 block)
    factory.open_output(samplerate, blocksize, device, callback)           # callback(n) -> (n,) float32

Each returns a stream with ``start()``, ``stop()`` and ``close()``. Pass any object with those
two methods as ``streams=`` to :class:`Listener`, :class:`Player`, :class:`SpeechOutput` or
:class:`TalkLoop` to run without hardware (see ``tests/voice/fakes.py``). Without PortAudio
(``import sounddevice`` raises OSError) or without a device, opening raises
:class:`~assistant.errors.DeviceError` with one line saying what to install or pass.

Listening (the TUI's microphone button)
---------------------------------------
::

    listener = Listener(settings, recognizer=bot.recognizer,
                        on_level=meter.update,          # 0..1, about 30 times a second
                        on_transcript=submit,            # str, after end of speech
                        on_state=status.set)             # "listening", "speech", "transcribing", "idle"
    listener.toggle()      # press once: start; press again: stop (transcribes what was said)

The utterance ends by itself after ``voice.end_silence_ms`` of silence (Silero VAD), or after
``voice.quick_end_ms`` when the transcript so far already reads as a finished request; it keeps
``voice.preroll_ms`` of audio from before speech began. ``on_heard`` receives an
:class:`Utterance` (audio, text and :class:`UtteranceTimings`). ``listener.listen()`` is the
blocking form: it starts, waits for the end of speech (or :meth:`Listener.stop`) and returns
the utterance as float32 16 kHz samples. Callbacks run on the listener's worker thread: the
TUI should hop back to its loop (``app.call_from_thread``).

Speaking (streamed replies)
---------------------------
::

    out = SpeechOutput(bot.synthesizer, on_notice=notify)   # opens the speaker lazily
    for chunk in bot.stream(question):
        show(chunk)
        out.feed(chunk)        # complete sentences are synthesized and played at once
    spoken = out.end()         # SpokenReply: audio, sample_rate, sentences, timeline, path
    out.stop()                 # any time, any thread: silence now, drop queued sentences

With no output device the reply is written to a WAV file in the data dir and ``on_notice``
gets one line saying where (``spoken.path``).

Barge-in
--------
``connect_barge_in(listener, out, cancel=bot.cancel)`` keeps the microphone open while the
assistant speaks. Speech interrupts playback only when it is clearly the user's: while audio
plays, the VAD threshold rises to ``voice.barge_in_threshold``, speech must last
``voice.barge_in_ms``, and the microphone level must exceed the level of what is being played
(the known playback samples, scaled by an echo gain learned while the assistant talks) by
``voice.barge_in_margin_db``. So the assistant's own voice leaking from the speaker into the
microphone does not stop it. With ``voice.barge_in = false`` the microphone is not listened
to while the assistant speaks.

Hands-free
----------
``TalkLoop(bot).run()`` listens, answers aloud and listens again until Ctrl-C (see
:mod:`assistant.voice.talk`); ``assistant talk`` and the TUI's F5 run it.
"""

from __future__ import annotations

from assistant.errors import DeviceError
from assistant.voice.barge_in import BargeIn, connect_barge_in
from assistant.voice.devices import (
    FRAME, SAMPLE_RATE, AudioDevice, SounddeviceStreams, Stream, StreamFactory, list_devices, resolve_device,
    sounddevice,
)
from assistant.voice.listener import Listener, Utterance, UtteranceTimings
from assistant.voice.playback import Player, play, stop_playback
from assistant.voice.speech_output import ReplyTimeline, SpeechOutput, SpokenReply
from assistant.voice.talk import TalkLoop, TalkTurn, stream_reply
from models.speech import speak_text

__all__ = [
    "AudioDevice", "BargeIn", "DeviceError", "FRAME", "Listener", "Player", "ReplyTimeline", "SAMPLE_RATE",
    "SpeechOutput", "SpokenReply", "SounddeviceStreams", "Stream", "StreamFactory", "TalkLoop", "TalkTurn",
    "Utterance", "UtteranceTimings", "connect_barge_in", "list_devices", "play", "resolve_device", "sounddevice",
    "speak_text", "stop_playback", "stream_reply",
]
