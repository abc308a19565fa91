"""The hands-free loop (assistant.voice.talk) on fake devices, a fake recognizer and a fake bot.

The devices run on a clock thread four times faster than real time; speech is loud noise and
the VAD calls loud frames speech, so no model is loaded. Nothing here asserts how fast
anything was: only what happened, in which order.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from assistant.voice import TalkLoop

from .fakes import EnergyVAD, FakeBot, FakeRecognizer, LiveStreams, ToneSynth

RATE = 16_000


def speech(seconds: float = 0.8, level: float = 0.3, seed: int = 0) -> np.ndarray:
    """``seconds`` of "speech" (loud noise) followed by 1.2 s of silence."""
    noise = level * np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    return np.concatenate([noise.astype(np.float32), np.zeros(int(1.2 * RATE), np.float32)])


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Talk:
    """A loop on live fake devices, recording every callback."""

    def __init__(self, bot: FakeBot, *, echo: float = 0.0, **kw):
        self.streams = LiveStreams(echo=echo, echo_delay=400)
        self.states, self.heard, self.chunks, self.errors, self.turns = [], [], [], [], []
        self.loop = TalkLoop(bot, streams=self.streams, vad=EnergyVAD(), on_state=self.states.append,
                             on_heard=self.heard.append, on_chunk=self.chunks.append,
                             on_error=self.errors.append, on_turn=self.turns.append, **kw)

    def __enter__(self) -> "Talk":
        self.streams.start()
        self.loop.start()
        return self

    def __exit__(self, *exc) -> None:
        self.loop.stop()
        self.streams.stop()


def test_a_spoken_question_is_answered_aloud_then_it_listens_again():
    rec = FakeRecognizer("What is the capital of France?", "Thanks!")
    bot = FakeBot("The capital of France is Paris. It is big.", "You are welcome.", recognizer=rec)
    with Talk(bot) as talk:
        talk.streams.say(speech())
        wait_for(lambda: talk.turns, what="the first answer")
        assert bot.calls == ["What is the capital of France?"] and talk.heard == bot.calls
        assert "".join(talk.chunks).split() == "The capital of France is Paris. It is big.".split()
        assert bot.synthesizer.said == ["The capital of France is Paris.", "It is big."]
        assert np.count_nonzero(talk.streams.speaker_audio()) > 0
        turn = talk.turns[0]
        assert turn.reply == "The capital of France is Paris. It is big." and not turn.interrupted
        timings = turn.breakdown()
        assert all(v is not None for v in timings.values()), timings  # every stage was reached and timed
        wait_for(lambda: talk.loop.state == "listening", what="listening again")
        talk.streams.say(speech(seed=1))  # the loop listens again: a second request
        wait_for(lambda: len(talk.turns) == 2, what="the second answer")
        assert bot.calls[1] == "Thanks!"
    assert talk.states[:4] == ["listening", "thinking", "speaking", "listening"]
    assert talk.states[-1] == "stopped" and talk.streams.input.closed and talk.errors == []


def test_noise_that_transcribes_to_nothing_is_ignored():
    bot = FakeBot(recognizer=FakeRecognizer("", "Hello?"))
    with Talk(bot) as talk:
        talk.streams.say(speech())
        wait_for(lambda: len(bot.recognizer.heard) == 1, what="the first utterance")
        talk.streams.say(speech(seed=2))
        wait_for(lambda: talk.turns, what="an answer")
        assert bot.calls == ["Hello?"]


@pytest.mark.parametrize("echo", [0.5, 1.5])
def test_its_own_voice_does_not_interrupt_it(echo):
    bot = FakeBot("One. Two. Three.", recognizer=FakeRecognizer("Count to three."),
                  synthesizer=ToneSynth(seconds=0.6, level=0.3))
    with Talk(bot, echo=echo) as talk:
        talk.streams.say(speech())
        wait_for(lambda: talk.turns, what="the answer")
        assert not talk.turns[0].interrupted and bot.synthesizer.said == ["One.", "Two.", "Three."]
        assert talk.loop.listener.barge_ins == 0 and bot.calls == ["Count to three."]


def test_talking_over_the_reply_stops_it_and_becomes_the_next_question():
    rec = FakeRecognizer("Tell me a long story.", "Stop, what time is it?")
    bot = FakeBot("Once upon a time there was a fox. It ran. It ran more. It slept.", "It is noon.",
                  recognizer=rec, synthesizer=ToneSynth(seconds=1.5, level=0.2))
    with Talk(bot, echo=0.5) as talk:
        talk.streams.say(speech())
        wait_for(lambda: talk.loop.state == "speaking", what="the reply to be spoken")
        time.sleep(0.3)  # let the echo level be learned (320 ms of playback at 4x speed is enough)
        talk.streams.say(speech(seconds=1.0, level=0.9, seed=3))  # much louder than the echo
        wait_for(lambda: len(talk.turns) == 2, what="the interruption to be answered")
        first, second = talk.turns
        assert first.interrupted and first.said_anything
        assert talk.loop.listener.barge_ins == 1 and bot.cancels >= 1
        assert bot.calls == ["Tell me a long story.", "Stop, what time is it?"]
        assert second.reply == "It is noon." and not second.interrupted
        wait_for(lambda: talk.loop.state == "listening", what="the second answer to be spoken")
    # Five sentences of 1.5 s were synthesized; the first reply's last ones never reached the speaker.
    assert np.count_nonzero(talk.streams.speaker_audio()) < 4 * 1.5 * RATE


def test_with_barge_in_off_talking_over_the_reply_is_not_heard():
    rec = FakeRecognizer("Tell me a story.", "Interrupting!")
    bot = FakeBot("Once upon a time. The end.", recognizer=rec, synthesizer=ToneSynth(seconds=1.0, level=0.2))
    with Talk(bot, echo=0.5, barge_in=False) as talk:
        talk.streams.say(speech())
        wait_for(lambda: talk.loop.state == "speaking", what="the reply to be spoken")
        talk.streams.say(speech(seconds=0.5, level=0.9, seed=3)[: int(0.5 * RATE)])
        wait_for(lambda: talk.turns, what="the reply to end")
        assert not talk.turns[0].interrupted and bot.synthesizer.said == ["Once upon a time.", "The end."]
        assert talk.loop.listener.barge_ins == 0 and bot.calls == ["Tell me a story."]


def test_a_request_that_arrives_while_thinking_is_asked_together_with_the_first():
    rec = FakeRecognizer("What is the capital", "of France?")
    bot = FakeBot(FakeBot.HOLD, "Paris.", recognizer=rec)  # the first reply is slow to start
    with Talk(bot) as talk:
        talk.streams.say(speech())
        wait_for(lambda: bot.calls, what="the first request")
        talk.streams.say(speech(seed=4))
        wait_for(lambda: len(talk.turns) == 2, what="the combined request")
        assert bot.calls == ["What is the capital", "What is the capital of France?"]
        assert talk.turns[0].interrupted and talk.turns[1].reply == "Paris."


def test_microphone_unplugged_mid_question_answers_what_was_heard_then_ends():
    bot = FakeBot("Paris.", recognizer=FakeRecognizer("What is the capital of"))
    talk = Talk(bot)
    with talk:
        talk.streams.say(np.concatenate([speech(seconds=2.0)[: int(2.0 * RATE)]]))
        wait_for(lambda: talk.loop.listener.state == "speech", what="speech")
        time.sleep(0.2)
        talk.streams.unplug()
        wait_for(lambda: talk.turns, what="the kept question to be answered")
        wait_for(lambda: talk.loop.state == "stopped", what="the loop to end")
    assert bot.calls == ["What is the capital of"] and talk.turns[0].reply == "Paris."
    assert any("kept what was said so far" in e for e in talk.errors)
    assert talk.loop.error and "fake unplug" in talk.loop.error


def test_stop_mid_reply_ends_everything():
    bot = FakeBot("One. Two. Three. Four. Five.", recognizer=FakeRecognizer("Count."),
                  synthesizer=ToneSynth(seconds=2.0))
    talk = Talk(bot)
    with talk:
        talk.streams.say(speech())
        wait_for(lambda: talk.loop.state == "speaking", what="speech")
    assert talk.loop.state == "stopped" and not talk.loop.listener.listening and bot.cancels >= 1
    assert talk.turns and talk.turns[0].interrupted


def test_without_a_synthesizer_it_says_why():
    bot = FakeBot()
    bot.synthesizer = None
    with pytest.raises(ValueError, match="synthesizer"):
        TalkLoop(bot, streams=LiveStreams(), vad=EnergyVAD())


def pause_then_more(first: float = 0.8, gap: float = 0.15, second: float = 0.6) -> np.ndarray:
    """Speech, a pause of ``gap`` seconds (long enough to answer early, too short to be sure),
    more speech, then 1.2 s of silence."""
    rng = np.random.default_rng(7)
    return np.concatenate([0.3 * rng.standard_normal(int(first * RATE)), np.zeros(int(gap * RATE)),
                           0.3 * rng.standard_normal(int(second * RATE)), np.zeros(int(1.2 * RATE))]).astype(np.float32)


def test_an_early_answer_is_prepared_at_once_but_heard_only_after_the_pause_is_long_enough():
    rec = FakeRecognizer("What is the capital of France?", partial_after_s=0.03)
    bot = FakeBot("Paris.", recognizer=rec)
    with Talk(bot) as talk:
        talk.streams.say(speech())
        wait_for(lambda: talk.turns, what="the answer")
        turn = talk.turns[0]
        u = turn.utterance
        assert u.rule == "early" and turn.said_anything and not turn.interrupted
        # The reply's audio was ready before the pause was confirmed, and was not heard before it.
        t = turn.spoken.timeline
        assert u.turn_end < u.quiet <= t.first_sound
        assert t.first_text < u.quiet
        b = turn.breakdown()
        assert b["pause_check"] >= 0 and abs(sum(v for k, v in b.items() if k != "total") - b["total"]) < 1e-6


def test_an_early_answer_gives_way_when_the_user_speaks_on():
    rec = FakeRecognizer("What is the capital of France?", "And of Germany?", partial_after_s=0.03)
    bot = FakeBot("The capital of France is Paris.", "Paris and Berlin.", recognizer=rec)
    with Talk(bot) as talk:
        talk.streams.say(pause_then_more())
        wait_for(lambda: len(talk.turns) == 2, what="the combined request")
        first, second = talk.turns
        assert first.utterance.rule == "early" and first.interrupted and not first.said_anything
        assert bot.calls == ["What is the capital of France?", "What is the capital of France? And of Germany?"]
        assert second.reply == "Paris and Berlin." and second.said_anything
        # Only the second reply reached the speaker.
        assert bot.synthesizer.said[-1] == "Paris and Berlin." and first.spoken.timeline.first_sound is None


def test_early_answers_off_wait_for_the_quick_end():
    from assistant.config import Settings

    settings = Settings()
    settings.voice.early_answer_ms = 0
    rec = FakeRecognizer("What is the capital of France?", partial_after_s=0.03)
    bot = FakeBot("Paris.", recognizer=rec, settings=settings)
    with Talk(bot) as talk:
        assert talk.loop.listener.early_answer_ms == 0
        talk.streams.say(speech())
        wait_for(lambda: talk.turns, what="the answer")
        u = talk.turns[0].utterance
        assert u.rule == "quick" and u.quiet == u.turn_end and talk.turns[0].breakdown()["pause_check"] == 0


class SlowSynth(ToneSynth):
    """A synthesizer that takes ``delay`` seconds (wall time) per sentence."""

    def __init__(self, delay: float, **kw):
        super().__init__(**kw)
        self.delay = delay

    def synthesize(self, text: str) -> np.ndarray:
        time.sleep(self.delay)
        return super().synthesize(text)


def test_a_reply_not_yet_heard_waits_while_the_user_speaks_again_and_gives_way():
    """The quick rule ended the turn, but the user goes on before the reply is heard: the reply
    is held while they speak, then gives way to both parts asked together."""
    from assistant.config import Settings

    settings = Settings()
    settings.voice.early_answer_ms = 0
    rec = FakeRecognizer("What is the capital of France?", "And of Germany?", partial_after_s=0.03)
    bot = FakeBot("The capital of France is Paris.", "Paris and Berlin.", recognizer=rec, settings=settings,
                  synthesizer=SlowSynth(0.1))  # ready while the user still speaks (2 s at 4x speed: 0.5 s)
    with Talk(bot) as talk:
        talk.streams.say(pause_then_more(gap=0.35, second=2.0))  # 350 ms: past quick_end_ms (250), the first part ends
        wait_for(lambda: len(talk.turns) == 2, what="the combined request")
        first, second = talk.turns
        assert first.utterance.rule == "quick" and first.interrupted and not first.said_anything
        assert bot.calls == ["What is the capital of France?", "What is the capital of France? And of Germany?"]
        assert second.said_anything and second.reply == "Paris and Berlin."
