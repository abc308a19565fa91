"""The app's behaviour through Pilot, on the scripted fake assistant."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from textual import events

from assistant.config import Settings
from assistant.errors import ModelError
from assistant.tui.app import SynesthesiaApp
from assistant.tui.screens import HelpScreen, SearchScreen, SettingsScreen
from assistant.tui.sidebar import SessionList
from tests.tui.fake_assistant import FailAfter, FakeAssistant
from assistant.tui.widgets import (
    AssistantMessage,
    AttachmentBar,
    ChatInput,
    HalfBlockImage,
    LevelMeter,
    StatusBar,
    SystemLine,
    UserMessage,
)
from tests.tui.conftest import add_session, until, wait_idle

pytestmark = pytest.mark.asyncio
SIZE = (110, 36)


def replies(app):
    return [m.text for m in app.query(AssistantMessage)]


def notes(app):
    return [(n.message, n.severity) for n in app._notifications]


async def type_and_send(pilot, text):
    app = pilot.app
    app.query_one(ChatInput).value = text
    app.query_one(ChatInput).focus()
    await pilot.press("enter")


async def test_send_streams_reply_and_stores_turn(make_app, store, bot):
    bot.replies.append("Paris is the **capital** of France.")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.press(*"capital of France?", "enter")
        await wait_idle(pilot, app)
        assert app.query_one(ChatInput).value == ""
        assert [m.text for m in app.query(UserMessage)] == ["capital of France?"]
        assert replies(app) == ["Paris is the **capital** of France."]
        assert bot.calls[0][0] == "capital of France?"
        [turn] = store.turns(store.last_session().id)
        assert turn.reply_text == "Paris is the **capital** of France." and not turn.partial
        status = app.query_one(StatusBar)
        assert "generator: fake-echo" in status.models and "total" in status.timings
        assert "Paris trip" not in app.sub_title and app.sub_title == "capital of France?"


async def test_reply_appears_while_it_streams(make_app, store):
    slow = FakeAssistant(["one two three four five six seven eight nine ten " + "more " * 30 + "end"], delay=0.05)
    app = make_app(slow)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, "count")
        await until(pilot, lambda: replies(app) and replies(app)[0].startswith("one two"), what="first chunks")
        assert app.job is not None  # still streaming: the UI shows a prefix
        assert "end" not in replies(app)[0]
        # the reply is in the database before it ends
        turn = store.turns(store.last_session().id)[0]
        assert turn.partial
        await wait_idle(pilot, app)
        assert replies(app)[0].endswith("end")
        assert not store.turns(store.last_session().id)[0].partial


async def test_escape_stops_generation(make_app, store):
    slow = FakeAssistant([" ".join(f"w{i}" for i in range(200))], delay=0.02)
    app = make_app(slow)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, "go on")
        await until(pilot, lambda: replies(app) and "w3" in replies(app)[0], what="a few words")
        await pilot.press("escape")
        await wait_idle(pilot, app)
        text = replies(app)[0]
        assert "w3" in text and "w60" not in text  # stopped within a few words
        [turn] = store.turns(store.last_session().id)
        assert turn.partial and turn.stop_reason == "cancelled" and turn.reply_text.strip() == text.strip()
        footer = app.query_one(".reply-footer").render()
        assert "stopped" in str(footer)
        assert app.voice.stopped >= 1  # speech stops with the same key


async def test_image_command_attaches_and_previews(make_app, store, bot, picture):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, f"/image {picture}")
        assert [p.path for p in app.pending] == [picture]
        assert app.query_one(AttachmentBar).display
        await type_and_send(pilot, "what is this?")
        await wait_idle(pilot, app)
        assert bot.calls[0][1] == [picture]
        assert not app.query_one(AttachmentBar).display and app.pending == []
        assert len(app.query(HalfBlockImage)) == 1
        assert "quadrants.png" in replies(app)[0]
        turn = store.turns(store.last_session().id)[0]
        assert [a.name for a in turn.inputs("image")] == ["quadrants.png"]
        assert turn.evidence == ["label: quadrants.png"]
        assert "label: quadrants.png" in str(app.query_one(".reply-footer").render())


async def test_bad_attachment_is_reported(make_app, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, f"/image {tmp_path / 'missing.png'}")
        await type_and_send(pilot, f"/attach {tmp_path / 'notes.txt'}")
        await pilot.pause()
        assert app.pending == []
        messages = [m for m, sev in notes(app) if sev == "error"]
        assert any("missing.png: no such file" in m for m in messages)
        assert any("not an image or audio file" in m for m in messages)


async def test_pasted_and_typed_paths_attach(make_app, bot, picture, sound):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        prompt = app.query_one(ChatInput)
        prompt.focus()
        prompt.post_message(events.Paste(f"'{picture}'"))  # how terminals paste a dropped file
        await pilot.pause()
        assert [p.path for p in app.pending] == [picture] and prompt.value == ""
        prompt.post_message(events.Paste("plain words"))
        await pilot.pause()
        assert prompt.value == "plain words" and len(app.pending) == 1
        prompt.value = f"listen to {sound}"
        await pilot.press("enter")
        await wait_idle(pilot, app)
        text, images, audio = bot.calls[0]
        assert text == "listen to" and images == [picture] and audio == [sound]
        assert "heard: hello from the microphone" in [str(s.render()) for s in app.query(".transcript")]


async def test_error_restores_input_and_keeps_running(make_app, store, picture):
    bot = FakeAssistant([ModelError("generator failed: out of memory")])
    app = make_app(bot)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, f"/image {picture}")
        await type_and_send(pilot, "describe it")
        await wait_idle(pilot, app)
        assert ("generator failed: out of memory", "error") in notes(app)
        assert app.query_one(ChatInput).value == "describe it"  # the input is given back
        assert [p.path for p in app.pending] == [picture]
        assert list(app.query(UserMessage)) == []
        assert store.turns(store.last_session().id) == []  # nothing half-recorded
        await pilot.press("enter")  # try again: works
        await wait_idle(pilot, app)
        assert replies(app) == ["You said: **describe it**\n\nI see `quadrants.png`."]


async def test_error_mid_reply_keeps_the_partial_reply(make_app, store):
    bot = FakeAssistant([FailAfter("half of it", ModelError("generator failed: boom"))])
    app = make_app(bot)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, "go")
        await wait_idle(pilot, app)
        assert ("generator failed: boom", "error") in notes(app)
        assert replies(app) == ["half of it"]
        [turn] = store.turns(store.last_session().id)
        assert turn.partial and turn.reply_text == "half of it" and turn.stop_reason == "generator failed: boom"


async def test_user_can_type_while_models_load(make_app, store):
    gate = threading.Event()
    bot = FakeAssistant()

    def slow_load():
        gate.wait(10)
        return bot

    app = make_app(load=slow_load)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        status = app.query_one(StatusBar)
        assert status.models_loading and "loading models" in str(status.render())
        await type_and_send(pilot, "early question")
        await pilot.pause()
        assert "waiting for the models" in str(app.query_one(AssistantMessage).query_one(".waiting").render())
        gate.set()
        await wait_idle(pilot, app)
        assert replies(app) == ["You said: **early question**"]
        assert not status.models_loading


async def test_load_failure_is_shown_and_turns_fail_cleanly(make_app):
    def broken():
        raise ModelError("smollm2: weights not found")

    app = make_app(load=broken)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        assert "weights not found" in str(app.query_one(StatusBar).render())
        await type_and_send(pilot, "hello?")
        await wait_idle(pilot, app)
        assert app.query_one(ChatInput).value == "hello?"
        assert any("models failed to load: smollm2: weights not found" in m for m, _ in notes(app))


async def test_resume_last_and_switch_sessions(make_app, store, bot):
    old = add_session(store, "Older", ("old question", "old answer"))
    new = add_session(store, "Newer", ("new question", "new answer"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        assert app.session.id == new.id  # the last session resumes
        assert replies(app) == ["new answer"]
        assert bot.history == [{"role": "user", "content": "new question"},
                               {"role": "assistant", "content": "new answer"}]
        sessions = app.query_one(SessionList)
        sessions.focus()
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.session.id == old.id and replies(app) == ["old answer"]
        assert bot.history[0]["content"] == "old question"
        await type_and_send(pilot, "follow-up")
        await wait_idle(pilot, app)
        assert [t.user_text for t in store.turns(old.id)] == ["old question", "follow-up"]
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.session is None and replies(app) == [] and bot.history == []


async def test_cannot_switch_while_replying(make_app, store):
    other = add_session(store, "Other", ("q", "a"))
    slow = FakeAssistant([" ".join(["word"] * 100)], delay=0.02)
    app = make_app(slow)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+n")
        await type_and_send(pilot, "long one")
        await until(pilot, lambda: app.job is not None and replies(app) and "word" in replies(app)[0])
        assert app.switch_session(other.id) is False
        await pilot.pause()
        assert any("press esc" in m for m, _ in notes(app))
        await pilot.press("escape")
        await wait_idle(pilot, app)
        assert app.switch_session(other.id) is True


async def test_rename_delete_and_export_from_the_app(make_app, store, tmp_path):
    s = add_session(store, "Keep me", ("q", "a"))
    gone = store.create_session("Delete me")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        assert app.session.id == gone.id
        await type_and_send(pilot, "/delete")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert [x.id for x in store.list_sessions()] == [s.id] and app.session is None
        app.switch_session(s.id)
        await type_and_send(pilot, "/rename Better title")
        await pilot.pause()
        assert store.get_session(s.id).title == "Better title" and app.sub_title == "Better title"
        out = tmp_path / "exported"
        await type_and_send(pilot, f"/export {out}")
        await pilot.pause()
        assert (out / "session.md").read_text().startswith("# Better title")
        # the sidebar keys: r renames the highlighted session through a prompt
        app.query_one(SessionList).focus()
        await pilot.press("r")
        await pilot.pause()
        prompt = app.screen.query_one("#prompt-input")
        prompt.value = "From sidebar"
        await pilot.press("enter")
        await pilot.pause()
        assert store.get_session(s.id).title == "From sidebar"


async def test_search_opens_the_matching_session(make_app, store):
    a = add_session(store, "Animals", ("tell me about zebras", "Zebras have stripes."))
    b = add_session(store, "Other", ("hi", "hello"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        assert app.session.id == b.id
        await pilot.press("ctrl+f")
        await pilot.pause()
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"strip")
        await pilot.pause()
        assert len(app.screen.hits) == 1
        await pilot.press("enter")
        await pilot.pause()
        assert app.session.id == a.id and replies(app) == ["Zebras have stripes."]


async def test_help_lists_every_binding(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one("#help-keys")
        keys = {str(table.get_row_at(i)[0]) for i in range(table.row_count)}
        for binding in [*SynesthesiaApp.BINDINGS, *SessionList.BINDINGS]:
            assert binding.key.split(",")[0] in " ".join(keys), binding
        assert "ctrl+p" in keys
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_settings_screen_validates_and_saves(make_app, settings):
    from assistant import paths

    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        screen = app.screen
        assert "Most tokens in one reply." in [str(s.render()) for s in screen.query(".setting-doc")]
        screen.query_one("#set-generator-max_new_tokens").value = "lots"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is screen  # not saved: stays open
        assert any("max_new_tokens" in m and sev == "error" for m, sev in notes(app))
        assert not paths.config_file().exists()
        screen.query_one("#set-generator-max_new_tokens").value = "64"
        screen.query_one("#set-ui-theme").value = "nord"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is not screen
        saved = Settings.load()
        assert saved.generator.max_new_tokens == 64 and saved.ui.theme == "nord"
        assert app.theme == "nord" and app.settings.generator.max_new_tokens == 64


async def test_settings_screen_keeps_the_files_comments(make_app, settings):
    from assistant import paths

    text = "# chosen by hand\n[generator]\nmax_new_tokens = 99  # short on this laptop\n"
    paths.config_file().write_text(text)
    settings.generator.max_new_tokens = 99
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("f2")
        await pilot.pause()
        screen = app.screen
        screen.query_one("#set-generator-max_new_tokens").value = "64"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is not screen
    saved = paths.config_file().read_text()
    assert saved.startswith("# chosen by hand\n[generator]\nmax_new_tokens = 64  # short on this laptop\n")
    assert Settings.load().generator.max_new_tokens == 64


async def test_settings_screen_saves_to_the_file_given_with_config(make_app, settings, tmp_path):
    from assistant import paths

    chosen = tmp_path / "laptop.toml"
    chosen.write_text("[generator]\nmax_new_tokens = 99\n")
    app = make_app(config_file=str(chosen))  # `assistant --config laptop.toml`
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("f2")
        await pilot.pause()
        app.screen.query_one("#set-generator-max_new_tokens").value = "64"
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert Settings.load(chosen).generator.max_new_tokens == 64
    assert not paths.config_file().exists()  # the default file is left alone


async def test_voice_key_without_voice_says_so(make_app):
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert any("voice is not available" in m for m, _ in notes(app))
        assert not app.query_one(LevelMeter).display


async def test_hands_free_key_without_voice_says_so_and_is_in_the_help(make_app):
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("f5")
        await pilot.pause()
        assert any("hands-free talk is not available" in m for m, _ in notes(app))
        assert not app.query_one(LevelMeter).display and app.query_one(StatusBar).talk == ""
        await pilot.press("f1")
        await pilot.pause()
        table = app.screen.query_one("#help-keys")
        rows = [(str(table.get_row_at(i)[0]), str(table.get_row_at(i)[2])) for i in range(table.row_count)]
        assert ("f5", "Talk") in rows and any(key == "/talk" for key, _ in rows)


class ScriptedVoice:
    """A microphone that reports a level, then an utterance when the test says so; a speaker that records."""

    def __init__(self):
        self.listening = False
        self.played = []
        self.stopped = 0
        self.callbacks = None

    def start_listening(self, on_level, on_utterance, on_error, on_idle=None):
        self.listening = True
        self.callbacks = (on_level, on_utterance, on_error)

    def stop_listening(self, *, keep=True):
        self.listening = False

    def begin_reply(self, bot, on_notice):
        return None  # no streaming synthesizer: the app falls back to bot.speak + play

    def close(self):
        pass

    def utter(self, level=0.6):
        on_level, on_utterance, _ = self.callbacks
        on_level(level)
        return lambda: (setattr(self, "listening", False), on_utterance(np.zeros(16000, np.float32)))

    def play(self, samples, rate):
        self.played.append((len(samples), rate))

    def stop_speaking(self):
        self.stopped += 1


async def test_listening_sends_the_transcript_as_a_turn(make_app, bot, store):
    voice = ScriptedVoice()
    app = make_app(voice=voice)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+r")
        await pilot.pause()
        meter = app.query_one(LevelMeter)
        assert meter.display
        finish = voice.utter(0.6)
        await until(pilot, lambda: meter.level == 0.6, what="level")
        assert "listening" in str(meter.render())
        finish()
        await until(pilot, lambda: bot.calls, what="the spoken turn")
        await wait_idle(pilot, app)
        assert bot.calls[0][0] == "hello from the microphone"
        assert not meter.display
        turn = store.turns(store.last_session().id)[0]
        assert turn.user_text == "hello from the microphone"
        assert [a.name for a in turn.inputs("audio")] == ["recording.wav"]  # the recording is kept


async def test_spoken_replies_are_played_and_saved(make_app, bot, store):
    voice = ScriptedVoice()
    app = make_app(voice=voice)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+t")
        assert app.speak_replies
        await type_and_send(pilot, "say something")
        await until(pilot, lambda: voice.played, what="playback")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert bot.spoken == ["You said: **say something**"]
        turn = store.turns(store.last_session().id)[0]
        assert turn.reply_audio is not None and turn.reply_audio.path.is_file()
        assert not app.query_one(StatusBar).speaking
        assert "spoken" in str(app.query_one(".reply-footer").render())


async def test_notes_from_the_app_and_from_plugins(make_app, store):
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, "/note buy milk")
        await pilot.pause()
        assert [t for _, t in store.notes(app.session.id)] == ["buy milk"]
        await type_and_send(pilot, "/remember the eggs")  # a plugin command: bot.on_note, bot.notify
        await until(pilot, lambda: len(store.notes(app.session.id)) == 2, what="the plugin's note")
        assert [t for _, t in store.notes(app.session.id)][-1] == "the eggs"
        await until(pilot, lambda: ("remembered: the eggs", "information") in notes(app), what="the notice")


async def test_command_palette_runs_app_commands(make_app, store):
    s = store.create_session("Existing")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        assert app.session.id == s.id
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"New session")
        await until(pilot, lambda: app.screen.query_one("CommandList").option_count > 0, what="palette results")
        await pilot.press("enter")
        await pilot.pause()
        assert app.session is None


async def test_file_picker_attaches(make_app, picture, monkeypatch):
    monkeypatch.chdir(picture.parent)
    (picture.parent / "notes.txt").write_text("not attachable")
    (picture.parent / ".hidden.png").write_bytes(picture.read_bytes())
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+o")
        await pilot.pause()
        tree = app.screen.query_one("#picker-tree")
        await until(pilot, lambda: tree.root.children, what="the folder listing")
        names = [str(n.label) for n in tree.root.children]
        assert "quadrants.png" in names and "notes.txt" not in names and ".hidden.png" not in names
        app.screen.query_one("#picker-path").value = str(picture)
        app.screen.query_one("#picker-path").focus()
        await pilot.press("enter")
        await pilot.pause()
        assert [p.path for p in app.pending] == [picture]


class BotWithPlugins(FakeAssistant):
    """Like the real Assistant: a plugin host in ``plugins`` runs the commands."""

    def __init__(self):
        super().__init__()
        from assistant.plugin_host import load_plugins

        self.plugins = load_plugins(enabled=False)  # the built-in plugins only

    def command(self, line):
        from plugins.types import BasicContext

        return self.plugins.run_command(line, BasicContext(settings=self.settings))


@pytest.mark.parametrize(
    "make_bot, line, output, typo, complaint",
    [
        (FakeAssistant, "/shout hello there", "HELLO THERE", "/frobnicate", "frobnicate: unknown command"),
        (BotWithPlugins, "/calc 2+3", "2+3 = 5", "/calk 1", "unknown command /calk"),
    ],
    ids=["bot.command", "plugin host"],
)
async def test_unknown_slash_commands_go_to_the_plugins(make_app, make_bot, line, output, typo, complaint):
    app = make_app(make_bot())
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, line)
        await until(pilot, lambda: list(app.query(SystemLine)), what="command output")
        assert str(app.query_one(SystemLine).render()) == output
        await type_and_send(pilot, typo)
        await until(pilot, lambda: any(complaint in m for m, _ in notes(app)), what="the complaint")
        if make_bot is BotWithPlugins:  # F1 lists the plugins' commands too
            await pilot.press("f1")
            await pilot.pause()
            table = app.screen.query_one("#help-keys")
            rows = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
            assert "/calc EXPR" in rows and "/time" in rows


async def test_a_double_slash_line_is_text_for_the_model_not_a_command(make_app, bot):
    bot.replies.append("It is the hosts file.")
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, "//etc/hosts is what?")
        await wait_idle(pilot, app)
        assert bot.calls[0][0] == "//etc/hosts is what?"  # the pipeline gives the model "/etc/hosts is what?"
        assert replies(app) == ["It is the hosts file."] and not list(app.query(SystemLine))
        assert not any("unknown command" in m for m, _ in notes(app))


async def test_a_transcript_too_long_to_answer_is_kept_in_the_session(make_app, store, bot):
    from assistant.pipeline import MessageTooLong, Reply

    said = "word " * 50
    kept = Reply(text="", transcript=[said], partial=True, audio_inputs=["talk.wav"])
    bot.replies.append(MessageTooLong("the message is 3000 tokens; the context budget is 1792", reply=kept,
                                      transcript=[said]))
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, "Summarise the recording.")
        await wait_idle(pilot, app)
        [turn] = store.turns(store.last_session().id)
        assert turn.user_text == "Summarise the recording." and turn.transcript == [said]
        assert turn.partial and "context budget" in turn.stop_reason
        assert any("context budget" in m for m, _ in notes(app))
