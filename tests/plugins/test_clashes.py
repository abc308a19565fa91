"""Name clashes follow the documented rule, and a plugin may declare the contract version it
needs; both through `assistant ask`, `assistant plugins` and the plugin host."""

from __future__ import annotations

import json
import textwrap

import pytest

from plugins import PLUGIN_API

SHOUT = '''
from plugins import hookimpl

@hookimpl
def register_commands(register):
    register(lambda args, ctx: "{tag} " + args, name="shout", help="say it ({tag})")
'''


@pytest.fixture
def config(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    path = tmp_path / "config.toml"
    path.write_text(f'[plugins]\nfolder = "{folder}"\ntimeout_s = 0.5\n', encoding="utf-8")

    def write(name: str, source: str):
        (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    return write


def _main(*argv):
    from assistant.cli import main

    return main(list(argv))


def test_first_plugin_keeps_the_name_the_other_is_qualified(config, capsys):
    config("b_quiet", SHOUT.replace("{tag}", "quiet"))
    cfg = config("a_loud", SHOUT.replace("{tag}", "loud"))
    assert _main("--config", str(cfg), "ask", "/shout hi") == 0
    out, err = capsys.readouterr()
    assert out == "loud hi\n"  # folder plugins load in name order: a_loud first
    assert "plugin b_quiet: skipped /shout (already provided by a_loud; use /b_quiet:shout)" in err
    assert _main("--config", str(cfg), "ask", "/b_quiet:shout hi") == 0
    assert capsys.readouterr().out == "quiet hi\n"
    assert _main("--config", str(cfg), "ask", "/help") == 0
    help_text = capsys.readouterr().out
    assert "/b_quiet:shout" in help_text and "say it (quiet) (lost the name /shout to plugin a_loud)" in help_text
    assert _main("--config", str(cfg), "ask", "/nobody:shout") == 2


def test_a_builtin_keeps_its_name(config, capsys):
    cfg = config("mine", '''
        from plugins import hookimpl

        @hookimpl
        def register_commands(register):
            register(lambda args, ctx: "my calc", name="calc")
    ''')
    assert _main("--config", str(cfg), "ask", "/calc 2+2") == 0
    assert capsys.readouterr().out.strip() == "2+2 = 4"
    assert _main("--config", str(cfg), "ask", "/mine:calc 2+2") == 0
    assert capsys.readouterr().out.strip() == "my calc"


def test_a_plugin_needing_a_newer_contract_is_refused_in_one_line(config, capsys):
    cfg = config("future", f'''
        from plugins import hookimpl

        SYNESTHESIA_PLUGIN_API = {PLUGIN_API + 1}

        @hookimpl
        def register_commands(register):
            register(lambda args, ctx: "from the future", name="future")
    ''')
    assert _main("--config", str(cfg), "plugins", "--json", "future") == 0
    out, err = capsys.readouterr()
    status = json.loads(out)[0]
    assert status["status"] == "error"
    assert status["error"].startswith(f"written for plugin API {PLUGIN_API + 1}, but this Synesthesia")
    assert f"provides plugin API {PLUGIN_API}: upgrade Synesthesia" in status["error"]
    assert _main("--config", str(cfg), "ask", "/future") == 2  # nothing it registered is kept
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "plugin API" in line] == [
        f"error: plugin future: {status['error']}; skipped"]


@pytest.mark.parametrize("declared,ok", [(PLUGIN_API, True), (0, False), ("1", False)])
def test_declared_versions(load, write_plugin, ctx, declared, ok):
    write_plugin("declared", f'''
        from plugins import hookimpl

        SYNESTHESIA_PLUGIN_API = {declared!r}

        @hookimpl
        def register_commands(register):
            register(lambda args, ctx: "hi", name="hello")
    ''')
    host = load()
    assert (host.plugin("declared").status == "ok") is ok
    assert ("hello" in host.commands) is ok
    if declared == 0:
        assert "no longer loads" in host.plugin("declared").error
