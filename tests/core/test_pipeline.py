"""The pipeline's stages with a fake generator and the real (fast) image encoder."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from assistant.config import Settings
from assistant.errors import InputError
from assistant.pipeline import Assistant, prepare_turn
from tests.conftest import DATA
from tests.core.fakes import FakeGenerator, FakeRecognizer


@pytest.fixture
def make_bot(image_encoder):
    def make(*replies, **settings):
        bot = Assistant(Settings(**settings), generator=FakeGenerator(*replies), image_encoder=image_encoder)
        bot._recognizer = FakeRecognizer()
        return bot

    return make


def test_text_turn_and_history(make_bot):
    bot = make_bot("Paris is the capital.", "Berlin.")
    r = bot.ask("Capital of France?")
    assert r.text == "Paris is the capital." and not r.partial
    prompt = bot.generator.prompts[0]
    assert prompt[0]["role"] == "system" and prompt[-1] == {"role": "user", "content": "Capital of France?"}
    bot.ask("And Germany?")
    second = bot.generator.prompts[1]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == "Paris is the capital."
    assert set(r.timings) >= {"inputs", "first_token", "generate", "total"}


def test_earlier_turns_are_kept_to_the_history_setting(make_bot):
    bot = make_bot(*[f"answer {i} is here" for i in range(12)], generator={"history_tokens": 40})
    for i in range(12):
        bot.ask(f"question {i} please")
    sent = bot.generator.prompts[-1]
    assert sent[-1]["content"] == "question 11 please" and sent[-2]["content"] == "answer 10 is here"
    assert 0 < bot.generator.count_tokens(sent[1:-3]) <= 40 and len(sent) < 2 + 2 * 11
    bot.settings.generator.history_tokens = 5  # would leave only the latest exchange here
    bot.generator.runtime = "remote"  # but a remote generator's server pays for its own context: no limit
    kept = list(bot.history)
    bot.generator.replies.append("last answer")
    bot.ask("question 12 please")
    assert bot.generator.prompts[-1][1:-1] == kept and len(kept) > 2


def test_image_labels_become_evidence(make_bot):
    bot = make_bot("A cat.")
    r = bot.ask("What is this?", images=[f"{DATA}/cat.jpg"])
    assert len(r.evidence) == 1 and "cat" in r.evidence[0] and "cat.jpg" in r.evidence[0]
    sent = bot.generator.prompts[0][-1]["content"]
    assert sent.startswith("[Image 1 (cat.jpg) shows") and sent.endswith("What is this?")
    assert r.image_names == ["cat.jpg"] and "image" in r.timings


def test_image_without_text_asks_what_it_is(make_bot):
    bot = make_bot()
    bot.ask(images=[Image.open(f"{DATA}/coffee.jpg")])
    assert bot.generator.prompts[0][-1]["content"].endswith("What is in this image?")


def test_audio_only_turn_uses_transcript_as_question(make_bot):
    bot = make_bot("It is noon.")
    tone = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    r = bot.ask(audio=[(tone, 16000)])
    assert r.transcript == ["what is this"] and r.evidence == []
    assert bot.generator.prompts[0][-1]["content"] == "what is this"


def test_audio_beside_text_is_evidence(make_bot):
    bot = make_bot()
    tone = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    r = bot.ask("Summarise the recording.", audio=[(tone, 16000)])
    assert r.evidence == ["Audio 1 (audio 1) says: what is this"]


def test_a_silent_recording_alone_is_refused_and_beside_text_or_a_picture_it_is_not(make_bot):
    silence = (np.zeros(16000, dtype=np.float32), 16000)
    bot = make_bot("A reply.")
    with pytest.raises(InputError, match="audio 1: no speech heard"):
        bot.ask(audio=[silence])
    assert bot.generator.prompts == [] and bot.history == []
    r = bot.ask("Summarise the recording.", audio=[silence])
    assert r.evidence == ["Audio 1 (audio 1) says: (no speech)"] and r.text == "A reply."
    bot.reset()
    r = bot.ask(images=[f"{DATA}/cat.jpg"], audio=[silence])
    assert bot.generator.prompts[-1][-1]["content"].endswith("What is in this image?")


def test_a_plugin_that_adds_context_to_a_silent_recording_gets_it_answered(make_bot):
    bot = make_bot("A reply.")

    class Labeller:  # e.g. a plugin that names the sounds it hears
        def transform_turn(self, turn):
            turn.context.append("Sounds heard: rain.")
            return turn

        def __getattr__(self, name):
            return None

    bot.plugins = Labeller()
    r = bot.ask(audio=[(np.zeros(16000, dtype=np.float32), 16000)])
    assert r.text == "A reply."


def test_empty_turn_is_refused(make_bot):
    with pytest.raises(InputError, match="empty"):
        make_bot().ask("   ")


def test_bad_file_fails_before_the_generator(make_bot, tmp_path):
    bot = make_bot()
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(InputError, match="x.png: not an image"):
        bot.ask("hi", images=[tmp_path / "x.png"])
    assert bot.generator.prompts == []  # nothing was generated
    assert bot.history == []  # and nothing was lost from the conversation


def test_message_too_long_for_context(make_bot):
    bot = make_bot()
    bot.settings.generator.context_tokens = 256
    bot.settings.generator.max_new_tokens = 64
    with pytest.raises(InputError, match="context budget"):
        bot.ask("word " * 400)


def test_cancel_marks_reply_partial(make_bot):
    bot = make_bot("one two three four five six")
    cancel = threading.Event()
    chunks = []
    for chunk in bot.stream("count", cancel=cancel):
        chunks.append(chunk)
        cancel.set()
    assert bot.last_reply.partial and bot.last_reply.text == "one"
    assert bot.history[-1] == {"role": "assistant", "content": "one"}


def test_reset_forgets(make_bot):
    bot = make_bot()
    bot.ask("hello")
    bot.reset()
    assert bot.history == [] and bot.generator.forgotten == 1


def test_prepare_turn_needs_no_models(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        prepare_turn(Settings(), "hi", images=[tmp_path / "gone.jpg"])
    turn = prepare_turn(Settings(), "hi", images=[f"{DATA}/cat.jpg"])
    assert turn.image_names == ["cat.jpg"] and turn.images[0].mode == "RGB"


def test_models_lists_every_slot(make_bot):
    infos = {i.slot: i for i in make_bot().models()}
    assert {"generator", "image", "fusion", "speech-in", "speech-out"} <= set(infos)
    assert infos["image"].name == "efficientnet-lite0"


@pytest.fixture(scope="module")
def plugin_host():
    from assistant.plugin_host import load_plugins

    host = load_plugins(Settings().plugins)
    yield host
    host.close()


@pytest.fixture
def plugged_bot(image_encoder, plugin_host):
    def make(*replies):
        return Assistant(Settings(), generator=FakeGenerator(*replies), image_encoder=image_encoder, plugins=plugin_host)

    return make


def test_slash_command_answers_without_the_generator(plugged_bot):
    bot = plugged_bot()
    r = bot.ask("/calc 2 + 3 * 4")
    assert "14" in r.text and r.command == "calc"
    assert bot.generator.prompts == []


def test_unknown_command_lists_the_commands(plugged_bot):
    with pytest.raises(InputError, match="calc"):
        plugged_bot().ask("/frobnicate now")


def test_labels_command_sees_the_attached_image(plugged_bot):
    r = plugged_bot().ask("/labels", images=[f"{DATA}/cat.jpg"])
    assert "cat" in r.text


def test_tool_result_is_phrased_by_the_generator(plugged_bot):
    bot = plugged_bot("Seventeen percent of 230 is 39.1.")
    r = bot.ask("what is 17% of 230")
    assert r.tool == "calculator"
    sent = bot.generator.prompts[0][-1]["content"]
    assert "39.1" in sent and sent.endswith("what is 17% of 230")
    assert r.text.startswith("Seventeen percent")


def test_read_puts_a_file_into_the_next_turn(image_encoder, tmp_path):
    from assistant.plugin_host import load_plugins

    settings = Settings()
    settings.plugins.trusted = ["files"]  # /read reads files: trusted, so no confirmation prompt
    bot = Assistant(settings, generator=FakeGenerator("It says hello."), image_encoder=image_encoder,
                    plugins=load_plugins(settings.plugins))
    f = tmp_path / "note.md"
    f.write_text("# Note\nThe launch code is BLUE-42.\n")
    bot.ask(f"/read {f}")
    bot.ask("What does the note say?")
    assert "BLUE-42" in bot.generator.prompts[-1][-1]["content"]


def test_save_note(plugged_bot):
    bot = plugged_bot()
    seen = []
    bot.on_note = seen.append
    bot.ask("/save buy oat milk")
    assert bot.notes == ["buy oat milk"] == seen


def test_tool_note_appears_once(plugged_bot):
    bot = plugged_bot()
    bot.ask("what is 17% of 230")
    assert bot.generator.prompts[0][-1]["content"].count("39.1") == 1
