"""The plugin contract through the real entry points: `assistant ask`, `assistant chat` (driven
with stdin) and the Python API, with a plugin written here into the user plugin folder.

Turn transforms run before a turn is encoded; reply transforms run before a reply is shown or
spoken, once; plugin failures are printed once, with the documented exit status and, for
``ask --json``, a JSON object with an ``error`` field.
"""

from __future__ import annotations

import io
import json
import sys
import textwrap

import numpy as np
import pytest

from assistant.cli import main
from assistant.config import Settings
from assistant.pipeline import Assistant, Turn, load_plugin_host
from tests.core.fakes import FakeGenerator, FakeImageEncoder

PLUGIN = '''
import time
import numpy as np
from plugins import hookimpl

seen = []      # (text, encoded?) for each turn the turn transform saw
spoken = []    # what the voice was asked to say


@hookimpl
def register_turn_transforms(register):
    def rewrite(turn):
        seen.append((type(turn).__name__, turn.text, turn.image_tokens is not None or bool(turn.labels)))
        turn.text = turn.text.replace("colour", "color")
        return turn
    register(rewrite)


@hookimpl
def register_reply_transforms(register):
    register(lambda text: "Tag: " + text)


class Voice:
    name = "recorder"
    sample_rate = 16000

    def synthesize(self, text):
        spoken.append(text)
        return np.zeros(160, dtype=np.float32)


@hookimpl
def register_speech_engines(register):
    register("recorder", lambda **options: Voice(), kind="synthesizer")


@hookimpl
def register_commands(register):
    register(lambda args, ctx: 1 / 0, name="crash")
    register(lambda args, ctx: time.sleep(30), name="hang")
    register(lambda args, ctx: "pong", name="ping")
'''


@pytest.fixture
def config(tmp_path):
    """A settings file whose user plugin folder holds the plugin ``tagger`` (PLUGIN)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "tagger.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    path = tmp_path / "config.toml"
    path.write_text(f'[plugins]\nfolder = "{folder}"\ntimeout_s = 0.5\n\n[speech]\ntts = "recorder"\n',
                    encoding="utf-8")
    return path


@pytest.fixture
def plugin():
    """The loaded plugin module (after the host imported it)."""
    return lambda: sys.modules["synesthesia_user_plugins.tagger"]


@pytest.fixture
def fake_models(monkeypatch):
    """`Assistant.load` builds the real assistant with the real plugin host, on fake models."""
    made: list[FakeGenerator] = []

    def load(cls, config=None, *, offline=None, plugins=True, progress=None):
        settings = config if isinstance(config, Settings) else Settings.load(config)
        generator = FakeGenerator("Hello there.", "Hello again.")
        made.append(generator)
        return cls(settings, generator=generator, image_encoder=FakeImageEncoder(),
                   plugins=load_plugin_host(settings) if plugins else None)

    monkeypatch.setattr(Assistant, "load", classmethod(load))
    return made


def _chat(monkeypatch, config, lines: list[str]) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(line + "\n" for line in lines)))
    return main(["--config", str(config), "chat"])


# ------------------------------------------------------------------ transforms


def test_ask_turn_transform_runs_before_encoding(config, fake_models, plugin, capsys):
    assert main(["--config", str(config), "ask", "what colour is it", "--image", "tests/data/cat.jpg"]) == 0
    assert plugin().seen == [("Turn", "what colour is it", False)]  # the pipeline's Turn, not yet encoded
    prompt = fake_models[0].prompts[0][-1]["content"]
    assert "what color is it" in prompt and "colour" not in prompt
    assert "shows, by an ImageNet classifier" in prompt  # the changed turn was then encoded as usual


def test_ask_reply_is_transformed_before_it_is_shown_and_spoken(config, fake_models, plugin, capsys, tmp_path):
    out_wav = tmp_path / "reply.wav"
    assert main(["--config", str(config), "ask", "hi", "--speak", str(out_wav)]) == 0
    assert capsys.readouterr().out == "Tag: Hello there.\n"  # never the raw reply first
    assert " ".join(plugin().spoken) == "Tag: Hello there."
    assert out_wav.stat().st_size > 0


def test_ask_json_reply_is_transformed(config, fake_models, capsys):
    assert main(["--config", str(config), "ask", "hi", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "Tag: Hello there."


def test_ask_slash_command_reply_is_transformed(config, capsys):
    assert main(["--config", str(config), "ask", "/ping"]) == 0
    assert capsys.readouterr().out == "Tag: pong\n"


def test_chat_shows_and_stores_the_transformed_reply_once(monkeypatch, config, fake_models, capsys):
    from assistant.storage import SessionStore

    assert _chat(monkeypatch, config, ["hi", "and again", "/ping"]) == 0
    out = capsys.readouterr().out
    assert out.count("Tag: Hello there.") == 1 and out.count("Tag: Hello again.") == 1
    assert "Tag: Tag:" not in out and "Tag: pong" in out
    with SessionStore.open() as store:
        turns = store.turns(store.last_session().id)
    assert [t.reply_text.strip() for t in turns] == ["Tag: Hello there.", "Tag: Hello again."]
    # the model's own history holds what it wrote, so the tag cannot compound over turns
    history = fake_models[0].prompts[1]
    assert {"role": "assistant", "content": "Hello there."} in history


def test_python_api_stream_yields_the_transformed_reply_once(config):
    settings = Settings.load(config)
    bot = Assistant(settings, generator=FakeGenerator("one two three."), image_encoder=FakeImageEncoder(),
                    plugins=load_plugin_host(settings))
    chunks = list(bot.stream("hi"))
    assert chunks == ["Tag: one two three."]
    assert bot.last_reply.text == "Tag: one two three."
    assert bot.ask("/ping").text == "Tag: pong"


def test_without_reply_transforms_the_reply_streams(tmp_path):
    settings = Settings()
    settings.plugins.folder = tmp_path  # empty: built-ins only, none transforms replies
    bot = Assistant(settings, generator=FakeGenerator("one two three."), image_encoder=FakeImageEncoder(),
                    plugins=load_plugin_host(settings))
    assert list(bot.stream("hi")) == ["one ", "two ", "three. "]


def test_a_turn_transform_returning_another_type_is_skipped(tmp_path, capsys):
    (tmp_path / "bad.py").write_text(textwrap.dedent('''
        from plugins import hookimpl

        @hookimpl
        def register_turn_transforms(register):
            register(lambda turn: {"text": "dict"})
    '''), encoding="utf-8")
    settings = Settings()
    settings.plugins.folder = tmp_path
    gen = FakeGenerator("fine")
    bot = Assistant(settings, generator=gen, image_encoder=FakeImageEncoder(), plugins=load_plugin_host(settings))
    assert bot.ask("hello").text == "fine"
    assert gen.prompts[0][-1]["content"] == "hello"
    assert "turn transform of plugin bad raised TypeError: returned dict, not Turn" in capsys.readouterr().err
    assert isinstance(Turn(text=""), Turn)


# ------------------------------------------------------------------ failures


def test_ask_plugin_failure_is_one_line_exit_1(config, capsys):
    assert main(["--config", str(config), "ask", "/crash"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["assistant: error: /crash failed in plugin tagger: ZeroDivisionError: "
                                        "division by zero"]


def test_ask_json_prints_an_error_object(config, capsys):
    assert main(["--config", str(config), "ask", "/crash", "--json"]) == 1
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["error"].startswith("/crash failed in plugin tagger") and data["exit_code"] == 1
    assert len(err.strip().splitlines()) == 1


def test_ask_json_user_mistake_is_json_and_exit_2(config, capsys):
    assert main(["--config", str(config), "ask", "/nope", "--json"]) == 2
    assert "unknown command /nope" in json.loads(capsys.readouterr().out)["error"]
    assert main(["ask", "hi", "--image", "/no/such.png", "--json"]) == 2
    assert "no such file" in json.loads(capsys.readouterr().out)["error"]


def test_chat_plugin_failure_is_printed_once(monkeypatch, config, fake_models, capsys):
    assert _chat(monkeypatch, config, ["/crash", "/ping"]) == 0
    err = capsys.readouterr().err
    assert err.count("ZeroDivisionError") == 1


def test_a_command_that_times_out_turns_its_plugin_off(monkeypatch, config, fake_models, capsys):
    import time

    started = time.monotonic()
    assert _chat(monkeypatch, config, ["/hang", "/hang", "/ping"]) == 0
    assert time.monotonic() - started < 5  # the second /hang does not wait again
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if "hang" in line or "ping" in line]
    assert lines == [
        "error: /hang (plugin tagger) did not finish within 0.5 s; plugin tagger is off for the rest of this session",
        "error: /hang: plugin tagger is off for the rest of this session (/hang did not finish within 0.5 s)",
        "error: /ping: plugin tagger is off for the rest of this session (/hang did not finish within 0.5 s)",
    ]
    assert "pong" not in out


def test_plugin_host_reports_a_timed_out_plugin(load, write_plugin, ctx):
    from assistant.errors import PluginError

    write_plugin("sleepy", '''
        import time
        from plugins import hookimpl

        @hookimpl
        def register_commands(register):
            register(lambda a, c: time.sleep(30), name="nap")
    ''')
    host = load(timeout_s=0.3)
    with pytest.raises(PluginError):
        host.run_command("/nap", ctx)
    status = host.plugin("sleepy")
    assert status.status == "timeout" and "off for the rest of this session" in status.error
    assert "nap" not in host.commands


def test_spoken_reply_array(config):
    """The plugin's voice is selectable by name and gives audio for the transformed text."""
    settings = Settings.load(config)
    bot = Assistant(settings, generator=FakeGenerator("Hi."), image_encoder=FakeImageEncoder(),
                    plugins=load_plugin_host(settings))
    reply = bot.ask("hello", speak=True)
    assert reply.text == "Tag: Hi." and isinstance(reply.audio, np.ndarray)


def test_a_plugin_that_fails_to_load_is_reported_once(monkeypatch, config, fake_models, capsys):
    (config.parent / "plugins" / "broken.py").write_text("import no_such_module_here\n", encoding="utf-8")
    assert main(["--config", str(config), "ask", "hi"]) == 0
    assert capsys.readouterr().err.count("plugin broken: failed to import") == 1
    assert main(["--config", str(config), "ask", "/ping"]) == 0
    assert capsys.readouterr().err.count("plugin broken: failed to import") == 1
    assert _chat(monkeypatch, config, ["hi"]) == 0
    assert capsys.readouterr().err.count("plugin broken: failed to import") == 1


def test_every_json_command_prints_an_error_object(config, capsys):
    from assistant.errors import PluginError

    assert main(["--config", str(config), "plugins", "--json", "nobody"]) == PluginError.exit_code
    out, err = capsys.readouterr()
    assert "no plugin named 'nobody'" in json.loads(out)["error"] and len(err.strip().splitlines()) == 1


def test_double_slash_is_text_for_the_model(monkeypatch, config, fake_models, capsys):
    assert main(["--config", str(config), "ask", "//etc/hosts is a file?"]) == 0
    assert fake_models[0].prompts[0][-1]["content"] == "/etc/hosts is a file?"
    assert capsys.readouterr().out == "Tag: Hello there.\n"  # a reply, not an empty line
    assert _chat(monkeypatch, config, ["//ping"]) == 0
    assert fake_models[1].prompts[0][-1]["content"] == "/ping"
    assert "pong" not in capsys.readouterr().out
