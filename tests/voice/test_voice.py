"""Microphone, playback, streamed speech and barge-in, all on fake audio streams."""

import threading
import time

import numpy as np
import pytest

from assistant.errors import DeviceError
from assistant.voice import (
    AudioDevice, BargeIn, Listener, Player, SpeechOutput, connect_barge_in, resolve_device, sounddevice,
)

from models.speech.domain import word_errors

from .conftest import pad
from .fakes import FakeRecognizer as ScriptedRecognizer
from .fakes import FakeStreams


def FakeRecognizer(*texts, **kw):
    """Transcribes whole utterances (no stream): what it hears is exactly the utterance."""
    return ScriptedRecognizer(*texts, streaming=False, **kw)


# ------------------------------------------------------------------ devices


def test_missing_portaudio_is_one_clear_line(no_portaudio):
    with pytest.raises(DeviceError) as err:
        sounddevice()
    msg = str(err.value)
    assert "libportaudio2" in msg and "\n" not in msg and "--audio" in msg
    with pytest.raises(DeviceError):
        Player(sample_rate=22050).play(np.zeros(10, np.float32), 22050)


DEVICES = [
    AudioDevice(0, "HDA Intel PCH: ALC257 Analog", 2, 2, 48000.0, True, True),
    AudioDevice(1, "USB Headset Microphone", 1, 0, 16000.0),
    AudioDevice(2, "HDMI Output", 0, 8, 48000.0),
    AudioDevice(3, "USB Speaker", 0, 2, 48000.0),
]


def test_devices_by_index_and_name():
    assert resolve_device(None, "input", DEVICES) is None
    assert resolve_device("1", "input", DEVICES) == 1
    assert resolve_device(3, "output", DEVICES) == 3
    assert resolve_device("headset", "input", DEVICES) == 1
    assert resolve_device("HDMI Output", "output", DEVICES) == 2
    with pytest.raises(DeviceError, match="no such input device"):
        resolve_device("2", "input", DEVICES)
    with pytest.raises(DeviceError, match="ambiguous"):
        resolve_device("usb", "output", DEVICES + [AudioDevice(4, "USB DAC", 0, 2, 44100.0)])
    with pytest.raises(DeviceError, match="not found"):
        resolve_device("bluetooth", "output", DEVICES)


def test_sounddevice_microphone_that_dies_is_reported_once():
    """Without a sound card here, sounddevice itself is faked: its stream ends by itself."""
    from assistant.voice import SounddeviceStreams

    class FakeSD:
        class InputStream:
            def __init__(self, **kw):
                self.kw = kw
                FakeSD.last = self

            def start(self):
                pass

            def stop(self):
                self.kw["finished_callback"]()  # PortAudio calls it for our own stop too

            def close(self):
                pass

    streams = SounddeviceStreams.__new__(SounddeviceStreams)
    streams.sd = FakeSD
    errors, blocks = [], []
    stream = streams.open_input(16000, 4, 0, blocks.append, errors.append)
    stream.start()
    FakeSD.last.kw["callback"](np.ones((4, 1), np.float32), 4, None, None)
    assert blocks[0].shape == (4,)
    FakeSD.last.kw["finished_callback"]()  # unplugged: the stream became inactive by itself
    assert len(errors) == 1 and "stopped delivering audio" in errors[0]
    stream.stop()
    stream.close()
    assert len(errors) == 1  # ending it ourselves is not an error


# ------------------------------------------------------------------ microphone


def test_listener_ends_on_silence_keeps_preroll_and_transcribes(vad, say16):
    speech = say16("What is the shape of the red object?")
    streams = FakeStreams(pad(speech, before=1.0, after=0.0, noise=0.002))
    rec = FakeRecognizer()
    levels, transcripts, states = [], [], []
    listener = Listener(recognizer=rec, vad=vad, streams=streams, inline=True, end_silence_ms=700, preroll_ms=300,
                        on_level=levels.append, on_transcript=transcripts.append, on_state=states.append)
    assert listener.toggle() is True and streams.input.started
    streams.feed_all(tail_s=2.0)
    assert transcripts == ["hello there"]
    assert not listener.listening  # it stopped by itself at the end of speech,
    assert not streams.input.started and streams.input.closed  # and let go of the microphone
    heard = rec.heard[0]
    # Pre-roll: the utterance starts before the VAD fired, so the first syllable is kept:
    # it holds (almost) all the speech plus some leading silence, but not the whole second.
    assert len(speech) - 0.1 * 16000 < len(heard) < len(speech) + 1.2 * 16000
    lead = np.abs(heard[: int(0.1 * 16000)]).max()
    assert lead < 0.05  # begins in the silence before speech
    assert states[0] == "listening" and "speech" in states and states[-1] == "idle"
    assert min(levels) < 0.3 < max(levels)


def test_end_of_speech_latency_follows_the_setting(vad, say16):
    speech = say16("Describe this image.")
    for ms in (300, 700):
        streams = FakeStreams(pad(speech, 0.5, 0.0))
        done = []
        listener = Listener(vad=vad, streams=streams, inline=True, end_silence_ms=ms, on_utterance=done.append)
        listener.start()
        steps = 0
        while not done and steps < 400:
            streams.step()
            steps += 1
        after_speech_s = steps * 512 / 16000 - (0.5 + len(speech) / 16000)
        assert done and 0 < after_speech_s < ms / 1000 + 0.35, (ms, after_speech_s)


def test_toggle_off_mid_utterance_transcribes_what_was_heard(vad, say16):
    speech = say16("Is the blue object on the left or right of the image?")
    streams = FakeStreams(pad(speech, 0.5, 0.0))
    rec, transcripts = FakeRecognizer(), []
    listener = Listener(recognizer=rec, vad=vad, streams=streams, inline=True, on_transcript=transcripts.append)
    listener.toggle()
    streams.run(1.5)  # speech started but has not ended
    assert listener.state == "speech" and transcripts == []
    assert listener.toggle() is False
    assert transcripts == ["hello there"] and 0.5 * 16000 < len(rec.heard[0]) < 1.5 * 16000


def test_silence_gives_no_utterance(vad):
    streams = FakeStreams(np.random.default_rng(0).normal(0, 0.003, 3 * 16000).astype(np.float32))
    got = []
    listener = Listener(vad=vad, streams=streams, inline=True, on_utterance=got.append)
    listener.start()
    streams.feed_all()
    assert got == [] and listener.listening
    listener.stop(transcribe=False)
    assert not listener.listening


def test_threaded_listen_blocks_until_end_of_speech(vad, say16):
    speech = say16("Tell me a joke.")
    streams = FakeStreams(pad(speech, 0.4, 0.0))
    listener = Listener(vad=vad, streams=streams, samplerate=16000)

    def drive():
        if streams.input_started.wait(20):
            streams.feed_all(tail_s=1.5)

    threading.Thread(target=drive, daemon=True).start()
    audio = listener.listen(timeout=20)
    assert audio.dtype == np.float32 and len(speech) - 1600 < len(audio) < len(speech) + 16000


def test_microphone_at_48k_is_resampled(vad, say16):
    import soxr

    speech = say16("Describe this image.")
    mic48 = soxr.resample(pad(speech, 0.5, 0.0), 16000, 48000).astype(np.float32)
    streams = FakeStreams(mic48, rate=48000)
    got = []
    listener = Listener(vad=vad, streams=streams, inline=True, samplerate=48000, on_utterance=got.append)
    listener.start()
    streams.feed_all(n=1536, tail_s=1.5)
    assert got and abs(len(got[0]) - len(speech)) < 0.8 * 16000


# ------------------------------------------------------------------ playback and streamed speech


def test_player_plays_in_order_and_stops_at_once():
    streams = FakeStreams()
    player = Player(streams=streams, sample_rate=16000)
    player.play(np.full(1600, 0.5, np.float32), 16000)
    player.play(np.full(1600, -0.5, np.float32), 16000)
    assert player.is_playing
    streams.run(0.15)
    out = streams.speaker_audio()
    assert np.all(out[:1600] == 0.5) and np.all(out[1600:2400] == -0.5)
    player.play(np.full(16000, 0.25, np.float32), 16000)
    player.stop()
    streams.run(0.1)
    assert np.all(streams.played[-1] == 0) and not player.is_playing


def test_spoken_reply_starts_after_the_first_sentence(synth):
    streams = FakeStreams()
    spoken, first = [], threading.Event()
    out = SpeechOutput(synth, streams=streams, on_sentence=lambda s: (spoken.append(s), first.set()))
    out.feed("The red object is a circle. It is on the le")
    assert first.wait(10)
    # The first sentence is being played while the generator is still writing the second.
    assert spoken == ["The red object is a circle."]
    streams.run(0.3)
    assert np.abs(streams.speaker_audio()).max() > 0.05
    out.feed("ft of the image.")
    threading.Thread(target=lambda: [streams.run(0.2) or time.sleep(0.005) for _ in range(60)], daemon=True).start()
    reply = out.end(wait=True, timeout=20)
    assert reply.sentences == ["The red object is a circle.", "It is on the left of the image."]
    assert reply.first_audio_s is not None and reply.first_audio_s < 5
    assert reply.audio.size > synth.synthesize("The red object is a circle.").size
    out.close()


def test_no_output_device_falls_back_to_a_file(synth, tmp_path):
    notices = []
    out = SpeechOutput(synth, streams=FakeStreams(fail_output=True), fallback_dir=tmp_path, on_notice=notices.append)
    reply = out.speak("Hello. This goes to a file.")
    assert reply.path is not None and reply.path.exists() and reply.path.parent == tmp_path
    assert len(notices) == 1 and "\n" not in notices[0] and str(reply.path) in notices[0]
    import soundfile as sf

    data, rate = sf.read(reply.path)
    assert rate == synth.sample_rate and abs(len(data) - len(reply.audio)) < 2
    out.close()


def test_player_times_the_first_sound_of_a_clip():
    streams = FakeStreams()
    player = Player(streams=streams, sample_rate=16000, blocksize=512)
    sounded = []
    clip = np.concatenate([np.zeros(1600, np.float32), np.full(800, 0.5, np.float32)])  # leading silence
    player.play(clip, 16000, on_sound=lambda t: sounded.append((len(streams.played), t)))
    for _ in range(6):
        streams.step()
        if len(sounded) == 0:
            assert len(streams.played) <= 3  # blocks 1-3 hold only the clip's leading silence
    assert len(sounded) == 1 and sounded[0][0] == 3  # fired while the 4th block was being filled


def test_timeline_of_a_spoken_reply_and_a_stop_before_it(synth):
    streams = FakeStreams()
    out = SpeechOutput(synth, streams=streams)
    out.stop()  # nothing was playing: this must not silence the next reply
    threading.Thread(target=lambda: [streams.run(0.1) or time.sleep(0.005) for _ in range(100)], daemon=True).start()
    reply = out.speak("Hello there. How are you?")
    assert reply.sentences == ["Hello there.", "How are you?"] and not reply.stopped
    t = reply.timeline
    assert t.first_text <= t.first_sentence <= t.first_audio <= t.first_sound
    assert out.last_spoken is reply
    out.close()


def test_first_sentence_first_holds_the_generator_until_it_is_synthesized():
    from .fakes import ToneSynth

    class SlowSynth(ToneSynth):
        def synthesize(self, text):
            time.sleep(0.2)
            return super().synthesize(text)

    out = SpeechOutput(SlowSynth(), streams=FakeStreams(), first_sentence_first=True)
    out.feed("Hello")
    assert out.timeline.first_sentence is None  # no sentence yet: feed did not wait
    out.feed(" there. And then")
    assert out.timeline.first_audio is not None  # feed returned once the first sentence was synthesized
    out.feed(" more. And more.")  # later sentences do not hold the caller
    reply = out.end(wait=False)
    assert reply.sentences == ["Hello there.", "And then more.", "And more."]
    out.close()


def test_stop_drops_queued_sentences(synth):
    streams = FakeStreams()
    out = SpeechOutput(synth, streams=streams)
    out.feed("One. Two. Three. Four. Five. Six.")
    out.stop()
    streams.run(0.2)
    reply = out.end(wait=False, timeout=5)
    assert reply.stopped and len(reply.sentences) < 6
    out.close()


# ------------------------------------------------------------------ barge-in


def _barge_setup(vad, synth, mic, echo, barge_in=True, recognizer=None):
    streams = FakeStreams(mic, echo=echo, echo_delay=800)  # 50 ms speaker-to-mic delay
    out = SpeechOutput(synth, streams=streams)
    cancelled, transcripts = [], []
    listener = Listener(vad=vad, streams=streams, inline=True, recognizer=recognizer or FakeRecognizer(),
                        on_transcript=transcripts.append, barge_in=barge_in)
    connect_barge_in(listener, out, cancel=lambda: cancelled.append(True))
    return streams, out, listener, cancelled, transcripts


REPLY = "The red object is a circle. It is near the top left of the image. The blue one is a square."


@pytest.mark.parametrize("echo", [0.3, 1.0, 2.0])  # speaker leaking into the mic, up to louder than played
def test_own_voice_does_not_trigger_barge_in(vad, synth, echo):
    streams, out, listener, cancelled, transcripts = _barge_setup(vad, synth, np.zeros(0, np.float32), echo=echo)
    listener.start()
    out.speak(REPLY, wait=False)
    streams.run(4.0)
    assert cancelled == [] and listener.barge_ins == 0 and transcripts == []
    assert np.abs(streams.speaker_audio()).max() > 0.1  # it really was talking into the microphone


def test_user_speech_interrupts_playback_and_generation(vad, synth, say16):
    user = say16("Stop, what is the shape of the green object?", voice="en-us+m3", rate=160)
    mic = pad(user, before=1.5, after=0.0)  # the user starts talking 1.5 s into the reply
    rec = FakeRecognizer()
    streams, out, listener, cancelled, transcripts = _barge_setup(vad, synth, mic, echo=0.3, recognizer=rec)
    listener.start()
    out.speak(REPLY, wait=False)
    streams.run(4.0)
    assert cancelled == [True] and listener.barge_ins == 1
    assert not out.player.is_playing
    assert np.all(streams.played[-1] == 0)  # the speaker fell silent
    streams.run(1.5)
    assert transcripts == ["hello there"]  # what the user said is still heard as a request
    # ... from its first word: the utterance holds all of the user's speech, not only what
    # followed the moment barge-in fired (it keeps the pre-roll of the interrupting speech).
    assert len(rec.heard[0]) >= len(user)


def test_barge_in_off_keeps_the_microphone_deaf_while_speaking(vad, synth, say16):
    user = say16("Stop, what is the shape of the green object?", voice="en-us+m3", rate=160)
    streams, out, listener, cancelled, transcripts = _barge_setup(vad, synth, pad(user, 1.5, 0.0), echo=0.3,
                                                                  barge_in=False)
    listener.start()
    out.speak(REPLY, wait=False)
    streams.run(4.0)
    assert cancelled == [] and listener.barge_ins == 0 and out.player.is_playing
    assert transcripts == []  # talking over the reply is not heard at all


class _Playing:
    """A player that has been playing a steady tone (the reference for echo gating)."""

    is_playing = True

    def recent(self, n):
        return np.full(n, 0.1, np.float32)


def test_barge_in_hands_back_the_speech_with_its_preroll():
    barge = BargeIn(_Playing(), threshold=0.85, min_ms=96, margin_db=4.0, preroll_ms=64)  # 3 frames, 2 of pre-roll
    quiet = [np.full(512, 0.05 * (i + 1) / 20, np.float32) for i in range(20)]  # echo-like, below the tone
    for frame in quiet:
        assert barge.update(frame, 0.2) is None
    loud = [np.full(512, 0.9, np.float32) * (1 + i / 100) for i in range(3)]  # the user, far above the echo
    got = [barge.update(frame, 0.99) for frame in loud]
    assert got[:2] == [None, None] and got[2] is not None
    expected = np.concatenate(quiet[-2:] + loud)  # the pre-roll, then every frame of the interruption
    assert np.array_equal(got[2], expected)


def test_a_pause_after_a_short_first_word_keeps_that_word():
    """"Stop, what is ...": the count of user-like frames runs out in the pause after "Stop",
    and the interruption fires on the next words; what is handed back still starts at "Stop"
    (it used to start at the next words, one VM's run of the test above lost "Stop," so)."""
    barge = BargeIn(_Playing(), threshold=0.85, min_ms=192, margin_db=4.0, preroll_ms=64)  # 6 frames, 2 of pre-roll
    for i in range(20):
        assert barge.update(np.full(512, 0.0025 * (i + 1), np.float32), 0.2) is None  # the echo level
    stop = [np.full(512, 0.9, np.float32) for _ in range(3)]  # "Stop": 3 frames, not enough alone
    pause = [np.full(512, 0.01, np.float32) for _ in range(8)]  # 256 ms: the count runs out
    words = [np.full(512, 0.8 + i / 100, np.float32) for i in range(6)]
    got = [barge.update(f, 0.99) for f in stop] + [barge.update(f, 0.1) for f in pause] + [barge.update(f, 0.99) for f in words]
    assert all(g is None for g in got[:-1]) and got[-1] is not None
    assert np.array_equal(got[-1][-len(stop + pause + words) * 512:], np.concatenate(stop + pause + words))


# ------------------------------------------------------------------ end of turn, timings, lost microphone


@pytest.mark.parametrize("text, partial_after_s, quick_ms, rule", [
    ("What is the capital of France?", 0.1, 250, "quick"),  # reads as finished: a short pause ends it
    ("What is the", 0.1, 250, "silence"),  # not finished: wait for the full silence
    ("What is the capital of France?", None, 250, "silence"),  # no transcript ready at the short pause
    ("What is the capital of France?", 0.1, 0, "silence"),  # quick end off
], ids=["complete", "dangling", "not-ready", "off"])
def test_end_of_turn_rule(vad, say16, text, partial_after_s, quick_ms, rule):
    speech = say16("What is the capital of France?")
    streams = FakeStreams(pad(speech, 0.5, 0.0, noise=0.002))
    rec = ScriptedRecognizer(text, partial_after_s=partial_after_s)
    heard = []
    listener = Listener(recognizer=rec, vad=vad, streams=streams, inline=True, end_silence_ms=700,
                        quick_end_ms=quick_ms, on_heard=heard.append)
    listener.start()
    steps = 0
    while not heard and steps < 400:
        streams.step()
        steps += 1
    assert len(heard) == 1 and heard[0].text == text
    t = heard[0].timings
    assert t.rule == rule
    assert t.speech_start <= t.speech_end <= t.turn_end <= t.transcript
    # The recognizer heard the speech flagged as speech and the pause after it as silence.
    flags = rec.streams[0].flags
    assert flags[0] and flags[len(flags) // 2]
    trailing = len(flags) - max(i for i, f in enumerate(flags) if f) - 1
    waited_ms = trailing * 32
    assert (250 <= waited_ms < 450) if rule == "quick" else (700 <= waited_ms < 800), waited_ms


def test_microphone_unplugged_mid_utterance_keeps_what_was_said(vad, say16):
    speech = say16("Is the blue object on the left or right of the image?")
    streams = FakeStreams(pad(speech, 0.5, 0.0))
    rec, transcripts, errors, states = FakeRecognizer(), [], [], []
    listener = Listener(recognizer=rec, vad=vad, streams=streams, inline=True, on_transcript=transcripts.append,
                        on_error=errors.append, on_state=states.append)
    listener.start()
    streams.run(1.5)
    assert listener.state == "speech"
    streams.unplug()
    assert len(errors) == 1 and "kept what was said so far" in errors[0] and "\n" not in errors[0]
    assert transcripts == ["hello there"] and 0.8 * 16000 < len(rec.heard[0]) < 1.5 * 16000
    assert not listener.listening and states[-1] == "idle" and listener.last.timings.rule == "device"
    streams.run(0.5)  # nothing more arrives, nothing breaks


def test_microphone_unplugged_while_silent_says_so(vad):
    streams = FakeStreams(np.zeros(16000, np.float32))
    transcripts, errors = [], []
    listener = Listener(recognizer=FakeRecognizer(), vad=vad, streams=streams, inline=True,
                        on_transcript=transcripts.append, on_error=errors.append)
    listener.start()
    streams.run(0.5)
    streams.unplug()
    assert transcripts == [] and len(errors) == 1 and "listening stopped" in errors[0] and not listener.listening


def test_a_microphone_that_stops_delivering_is_treated_as_unplugged(vad, say16):
    speech = say16("Is the blue object on the left or right of the image?")
    streams = FakeStreams(pad(speech, 0.5, 0.0))
    transcripts, errors = [], []
    listener = Listener(recognizer=FakeRecognizer(), vad=vad, streams=streams, stall_s=0.3,
                        on_transcript=transcripts.append, on_error=errors.append)
    listener.start()
    streams.run(1.5)  # then silence from the device: no blocks at all, and no error signal either
    deadline = time.monotonic() + 20
    while not transcripts and time.monotonic() < deadline:
        time.sleep(0.02)
    assert transcripts == ["hello there"] and "no audio" in errors[0] and "kept" in errors[0]
    assert not listener.listening


def test_microphone_transcript_is_decoded_while_speaking(vad, recognizer, say16):
    speech = say16("What is the shape of the red object?", voice="en-us", rate=175)
    streams = FakeStreams(pad(speech, 0.5, 0.0, noise=0.002))
    transcripts = []
    listener = Listener(recognizer=recognizer, vad=vad, streams=streams, inline=True, on_transcript=transcripts.append)
    listener.start()
    streams.feed_all(tail_s=1.0)
    assert len(transcripts) == 1
    assert word_errors("what is the shape of the red object", transcripts[0])[0] <= 1, transcripts
    assert listener._rstream is None
    # The stream was closed: another one can start at once.
    recognizer.stream().cancel()


def test_listener_worker_threads_end_with_their_utterance(vad, say16):
    speech = say16("Tell me a joke.")
    before = set(threading.enumerate())
    for _ in range(3):
        streams = FakeStreams(pad(speech, 0.3, 0.0))
        heard = threading.Event()
        listener = Listener(vad=vad, streams=streams, on_utterance=lambda audio: heard.set())
        listener.start()
        streams.feed_all(tail_s=1.2)
        assert heard.wait(20)
    deadline = time.monotonic() + 5
    for thread in set(threading.enumerate()) - before:  # each utterance's workers end once it is delivered
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert len(set(threading.enumerate()) - before) <= 1
