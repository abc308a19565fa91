"""Loading and isolation: a broken plugin is reported and skipped; the rest keeps working."""

from __future__ import annotations

import time

import pytest

from assistant.errors import InputError, PluginError
from assistant.plugin_host import load_plugins
from plugins.types import BasicContext

GOOD = """
from plugins import hookimpl

@hookimpl
def register_commands(register):
    register(lambda args, ctx: args.upper(), name="shout", help="Repeat in capitals")
"""


def _status(host, name):
    return host.plugin(name)


def test_folder_plugin_loads_and_works(load, write_plugin, ctx):
    write_plugin("shouter", GOOD)
    host = load()
    status = host.plugin("shouter")
    assert (status.status, status.source, status.hooks, status.provides) == (
        "ok", "folder", ["register_commands"], ["/shout"])
    assert host.run_command("/shout hello", ctx).text == "HELLO"
    assert host.commands["shout"].help == "Repeat in capitals"


def test_import_error_is_reported_and_skipped(load, write_plugin, recorder, ctx):
    write_plugin("broken", "import this_module_does_not_exist\n")
    write_plugin("syntax", "def oops(:\n")
    write_plugin("shouter", GOOD)
    host = load()
    broken, syntax = host.plugin("broken"), host.plugin("syntax")
    assert broken.status == "error"
    assert "ModuleNotFoundError" in broken.error and "this_module_does_not_exist" in broken.error
    assert syntax.status == "error" and "SyntaxError" in syntax.error
    assert "plugin broken: failed to import" in recorder.text()
    # the others still work
    assert host.run_command("/shout ok", ctx).text == "OK"
    assert host.run_command("/calc 1+1", ctx).text == "1+1 = 2"


def test_sys_exit_in_a_plugin_does_not_end_the_app(load, write_plugin):
    write_plugin("quitter", "import sys\nsys.exit(3)\n")
    host = load()
    assert host.plugin("quitter").error == "failed to import: RuntimeError: the plugin called sys.exit(3)"


def test_exception_in_a_hook_drops_the_whole_plugin(load, write_plugin, recorder):
    write_plugin("halfway", """
        from plugins import hookimpl

        @hookimpl
        def register_commands(register):
            register(lambda a, c: "hi", name="hi")

        @hookimpl
        def register_tools(register):
            raise RuntimeError("boom")
    """)
    host = load()
    status = host.plugin("halfway")
    assert status.status == "error"
    assert status.error == "hook register_tools raised RuntimeError: boom"
    assert "hi" not in host.commands  # nothing it registered is kept
    assert ("plugin halfway: hook register_tools raised RuntimeError: boom; skipped", "error") in recorder.notices


def test_bad_registration_is_an_exception_in_the_hook(load, write_plugin):
    write_plugin("noexamples", """
        from plugins import hookimpl

        @hookimpl
        def register_tools(register):
            register(lambda t, c: "x", name="vague", description="no examples")
    """)
    host = load()
    assert "give at least one example" in host.plugin("noexamples").error
    assert "vague" not in host.tools


def test_hanging_hook_times_out(load, write_plugin, recorder, ctx):
    write_plugin("sleepy", """
        import time
        from plugins import hookimpl

        @hookimpl
        def register_commands(register):
            time.sleep(30)
            register(lambda a, c: "late", name="late")
    """)
    write_plugin("shouter", GOOD)
    started = time.monotonic()
    host = load(timeout_s=0.3)
    assert time.monotonic() - started < 5
    status = host.plugin("sleepy")
    assert status.status == "timeout"
    assert status.error == "hook register_commands did not finish within 0.3 s"
    assert "late" not in host.commands
    assert host.run_command("/shout still here", ctx).text == "STILL HERE"
    assert "sleepy" in recorder.text()


def test_hanging_import_times_out(load, write_plugin):
    write_plugin("slowimport", "import time\ntime.sleep(30)\n")
    started = time.monotonic()
    host = load(timeout_s=0.3)
    assert time.monotonic() - started < 5
    assert host.plugin("slowimport").status == "timeout"


def test_unknown_hook_name_is_reported(load, write_plugin):
    write_plugin("typo", """
        from plugins import hookimpl

        @hookimpl
        def register_comands(register):
            pass
    """)
    host = load()
    status = host.plugin("typo")
    assert status.status == "error" and "unknown hooks ['register_comands']" in status.error


COMMANDS = """
import time
from plugins import hookimpl

def crash(args, ctx):
    return 1 / 0

def hang(args, ctx):
    time.sleep(30)

def wrong(args, ctx):
    return 42

@hookimpl
def register_commands(register):
    register(crash, name="crash")
    register(hang, name="hang")
    register(wrong, name="wrong")
    register(lambda a, c: "mine", name="calc")  # taken by the built-in
    register(lambda a, c: "mine", name="help")  # answered by the host
"""


def test_command_that_raises_is_a_plugin_error(load, write_plugin, recorder, ctx):
    write_plugin("faulty", COMMANDS)
    host = load(timeout_s=0.3)
    assert host.plugin("faulty").error == ("skipped /calc (already provided by calc; use /faulty:calc); "
                                           "/help (reserved by the assistant)")
    with pytest.raises(PluginError, match=r"/crash failed in plugin faulty: ZeroDivisionError"):
        host.run_command("/crash", ctx)
    with pytest.raises(PluginError, match="must return CommandResult, str or None, not int"):
        host.run_command("/wrong", ctx)
    # raised, not also reported: the caller shows the error once
    assert not any("/crash failed" in m for m, _ in recorder.notices)
    with pytest.raises(PluginError, match=r"/hang \(plugin faulty\) did not finish within 0.3 s; "
                                          r"plugin faulty is off for the rest of this session"):
        host.run_command("/hang", ctx)
    with pytest.raises(PluginError, match=r"/crash: plugin faulty is off for the rest of this session"):
        host.run_command("/crash", ctx)
    # the built-in keeps its name; the clash is reported
    assert host.commands["calc"].plugin == "calc"
    assert host.run_command("/calc 2*3", ctx).text == "2*3 = 6"


def test_tool_failures_fall_back_to_no_tool(load, write_plugin, recorder, ctx):
    write_plugin("badtools", """
        import time
        from plugins import hookimpl

        @hookimpl
        def register_tools(register):
            register(lambda t, c: 1 / 0, name="crashy", description="d", examples=["crash please"])
            register(lambda t, c: time.sleep(30), name="slow", description="d", examples=["be slow"])
    """)
    host = load(timeout_s=0.3)
    assert host.run_tool("crashy", "crash please", ctx) is None
    assert host.run_tool("slow", "be slow", ctx) is None
    text = recorder.text()
    assert "tool crashy failed in plugin badtools: ZeroDivisionError" in text
    assert "tool slow (plugin badtools) did not finish within 0.3 s" in text


def test_broken_or_hung_guards_mean_not_this_tool(load, write_plugin, recorder):
    write_plugin("guards", """
        import time
        from plugins import hookimpl

        @hookimpl
        def register_tools(register):
            register(lambda t, c: "x", name="crashy", description="d", examples=["a"], guard=lambda t: 1 / 0)
            register(lambda t, c: "x", name="sleepy", description="d", examples=["b"],
                     guard=lambda t: time.sleep(30))
    """)
    host = load(timeout_s=0.3)
    started = time.monotonic()
    assert host.route("hello there") is None
    assert time.monotonic() - started < 5
    text = recorder.text()
    assert "tool crashy (plugin guards): its guard raised ZeroDivisionError" in text
    assert "tool sleepy (plugin guards): its guard did not finish in time" in text


def test_turn_and_reply_transforms_run_in_order_and_failures_are_skipped(load, write_plugin, recorder):
    write_plugin("a_upper", """
        from plugins import hookimpl

        @hookimpl
        def register_turn_transforms(register):
            register(lambda turn: {**turn, "text": turn["text"].strip()})

        @hookimpl
        def register_reply_transforms(register):
            register(lambda text: text.upper())
    """)
    write_plugin("b_faulty", """
        import time
        from plugins import hookimpl

        seen = []

        @hookimpl
        def register_turn_transforms(register):
            register(lambda turn: 1 / 0)
            register(lambda turn: seen.append(turn))  # an observer: returns None

        @hookimpl
        def register_reply_transforms(register):
            register(lambda text: 42)
            register(lambda text: text + "!")
    """)
    write_plugin("c_slow", """
        import time
        from plugins import hookimpl

        @hookimpl
        def register_reply_transforms(register):
            register(lambda text: time.sleep(30))
            register(lambda text: text + "?")  # never runs: the plugin is off after its time-out
    """)
    host = load(timeout_s=0.3)
    turn = {"text": "  hi  ", "images": []}
    assert host.transform_turn(turn) == {"text": "hi", "images": []}
    assert host.transform_reply("done") == "DONE!"
    text = recorder.text()
    assert "turn transform of plugin b_faulty raised ZeroDivisionError" in text
    assert "reply transform of plugin c_slow did not finish within 0.3 s" in text
    assert host.plugin("c_slow").status == "timeout"
    assert host.transform_reply("again") == "AGAIN!"  # c_slow stays off
    assert "returned int, not str" in text
    import sys

    assert sys.modules["synesthesia_user_plugins.b_faulty"].seen == [{"text": "hi", "images": []}]


def test_encoders_and_speech_engines_are_registered(load, write_plugin):
    write_plugin("engines", """
        from plugins import hookimpl

        class Loud:
            name = "loud"
            sample_rate = 16000
            def synthesize(self, text):
                return [0.0] * len(text)

        @hookimpl
        def register_speech_engines(register):
            register("loud", Loud, kind="synthesizer", description="test voice")

        @hookimpl
        def register_encoders(register):
            register("thermal", lambda **o: "encoder", modality="thermal")
    """)
    host = load()
    engine = host.speech_engines["loud"]
    assert (engine.kind, engine.plugin, engine.description) == ("synthesizer", "engines", "test voice")
    assert engine.factory().synthesize("abc") == [0.0, 0.0, 0.0]
    assert host.encoders["thermal"].modality == "thermal"
    assert host.plugin("engines").provides == ["encoder:thermal", "synthesizer:loud"]


def test_a_second_plugin_with_a_taken_name_is_skipped(load, write_plugin, ctx):
    write_plugin("calc", GOOD)
    host = load()
    assert host.plugin("calc").source == "builtin"
    clash = host.plugin("calc (folder)")
    assert clash.status == "error" and "already used by the builtin plugin" in clash.error
    assert "shout" not in host.commands


def test_tool_schemas_for_native_tool_calling(host):
    schemas = {s["name"]: s for s in host.tool_schemas()}
    assert set(schemas) == {"calculator", "clock", "timer", "note", "draw"}
    assert schemas["calculator"]["parameters"]["required"] == ["request"]


def test_example_phrases_for_speech_hints(host):
    phrases = host.example_phrases()
    assert "calc" in phrases and "timer" in phrases
    assert "what is 17% of 230" in phrases and "set a timer for 5 minutes" in phrases
    assert len(phrases) == len(set(phrases))


def test_missing_plugin_name_lists_installed(host):
    with pytest.raises(PluginError) as err:
        host.plugin("calx")
    assert str(err.value) == ("no plugin named 'calx' (did you mean 'calc'?); "
                              "installed: calc, clock, draw, files, images, notes")


def test_unknown_command_lists_commands(host, ctx):
    with pytest.raises(InputError) as err:
        host.run_command("/calx 1", ctx)
    message = str(err.value)
    assert message.startswith("unknown command /calx. Did you mean /calc? Commands: /calc, ")
    for name in ("/help", "/labels", "/read", "/save", "/time", "/timer", "/why"):
        assert name in message


def test_command_arguments_after_any_whitespace(host, ctx):
    assert host.run_command("/calc\t 6 * 7 ", ctx).text == "6 * 7 = 42"
    assert host.run_command("/CALC 1+1", ctx).command == "calc"


def test_lines_that_are_not_commands(host, ctx):
    assert host.run_command("hello there", ctx) is None
    assert host.run_command("//not a command", ctx) is None
    assert host.run_command("/", ctx) is None


def test_help_lists_commands(host, ctx):
    text = host.run_command("/help", ctx).text
    assert "/calc EXPR" in text and "/read PATH" in text and "/why [TEXT]" in text
    assert host.run_command("/help remind", ctx).text.startswith("/timer [DURATION [MESSAGE]] (also /remind, /timers)")


# ---------------------------------------------------------------- turning plugins off


@pytest.mark.parametrize(
    ("how", "reason"),
    [("flag", "--no-plugins"), ("env", "SYNESTHESIA_NO_PLUGINS=1"), ("settings", "plugins.enabled = false")],
)
def test_third_party_plugins_off(load, write_plugin, monkeypatch, how, reason, ctx):
    write_plugin("shouter", GOOD)
    write_plugin("broken", "raise SystemExit('must not even be imported')\n")
    if how == "flag":
        host = load(no_plugins=True)
    elif how == "env":
        monkeypatch.setenv("SYNESTHESIA_NO_PLUGINS", "1")
        host = load()
    else:
        host = load(enabled=False)
    status = host.plugin("shouter")
    assert (status.status, status.error) == ("off", f"third-party plugins are off ({reason})")
    assert host.plugin("broken").status == "off"
    assert "shout" not in host.commands
    assert host.run_command("/calc 2+2", ctx).text == "2+2 = 4"  # built-ins stay


def test_disabled_by_name_is_never_imported(load, write_plugin, recorder, ctx):
    write_plugin("broken", "raise SystemExit('must not even be imported')\n")
    host = load(disabled=["broken", "calc", "nosuch"])
    assert host.plugin("broken").status == "disabled"
    assert host.plugin("calc").status == "disabled"
    assert "calc" not in host.commands and "calculator" not in host.tools
    assert "plugins.disabled names 'nosuch', which is not installed" in recorder.text()


def test_entry_points_are_off_under_tests_by_default(monkeypatch):
    import assistant.plugin_host.discovery as discovery

    asked = []
    monkeypatch.setattr(discovery, "_entry_points", lambda: asked.append(1) or [])
    load_plugins(None)
    assert asked == []  # SYNESTHESIA_TESTING=1 (tests/conftest.py): not even listed
    load_plugins(None, entry_points=True)
    assert asked == [1]


# ---------------------------------------------------------------- confirmation


CAREFUL = """
from plugins import hookimpl

@hookimpl
def register_commands(register):
    register(lambda a, c: "ran " + a, name="shell", capabilities=["run_commands"])
    register(lambda a, c: "read " + a, name="peek", capabilities=["read_files"])
"""


def test_capabilities_ask_once_per_session(load, write_plugin, recorder, ctx):
    write_plugin("careful", CAREFUL)
    host = load()
    assert host.run_command("/shell ls", ctx).text == "ran ls"
    assert host.run_command("/peek x", ctx).text == "read x"
    assert host.run_command("/shell ls", ctx).text == "ran ls"
    assert len(recorder.questions) == 1
    plugin, message = recorder.questions[0]
    assert plugin == "careful"
    assert message == "Plugin 'careful' wants to run programs on this computer (for /shell). Allow it for this session?"
    assert host.plugin("careful").capabilities == ["read_files", "run_commands"]
    # a new session asks again
    load().run_command("/peek y", ctx)
    assert len(recorder.questions) == 2


def test_declined_capability_is_remembered_for_the_session(load, write_plugin, ctx):
    write_plugin("careful", CAREFUL)
    questions = []
    host = load(confirm=lambda plugin, message: questions.append(plugin) or False)
    for _ in range(2):
        with pytest.raises(PluginError, match=r'not allowed to run /shell .* trusted = \["careful"\]'):
            host.run_command("/shell ls", ctx)
    assert questions == ["careful"]


def test_trusted_plugins_are_not_asked(load, write_plugin, recorder, ctx):
    write_plugin("careful", CAREFUL)
    host = load(trusted=["careful"])
    assert host.run_command("/shell ls", ctx).text == "ran ls"
    assert recorder.questions == []
    assert host.plugin("careful").trusted


def test_builtin_read_is_trusted(host, recorder, tmp_path, ctx):
    (tmp_path / "a.txt").write_text("hi", encoding="utf-8")
    host.run_command(f"/read {tmp_path / 'a.txt'}", ctx)
    assert recorder.questions == []


def test_default_confirm_says_no_without_a_terminal(write_plugin, folder, ctx):
    from assistant.config import PluginSettings

    write_plugin("careful", CAREFUL)
    host = load_plugins(PluginSettings(folder=folder), notify=lambda m, s: None)
    with pytest.raises(PluginError, match="not allowed"):
        host.run_command("/shell ls", ctx)


def test_call_with_timeout_tells_a_hung_call_from_one_that_raises_timeouterror():
    import threading

    from assistant.plugin_host import PluginTimeout, call_with_timeout

    release = threading.Event()
    with pytest.raises(PluginTimeout, match="/stuck did not finish within 0.05 s"):
        call_with_timeout(release.wait, (), 0.05, "/stuck")
    release.set()

    def slow_server(args, ctx):
        raise TimeoutError("the weather service did not answer")

    with pytest.raises(TimeoutError, match="weather service"):  # the plugin's own error, not a time-out
        call_with_timeout(slow_server, ("", None), 5.0, "/weather")
    assert call_with_timeout(lambda a, b: a + b, (2, 3), 5.0, "add") == 5
    with pytest.raises(RuntimeError, match=r"sys.exit\(4\)"):
        call_with_timeout(lambda: __import__("sys").exit(4), (), None, "quit")
