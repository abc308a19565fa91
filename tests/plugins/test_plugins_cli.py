"""``assistant plugins [NAME] [--json]``."""

from __future__ import annotations

import argparse
import json

import pytest

from assistant import plugins_cli
from assistant.errors import PluginError


def _run(argv, folder, capsys):
    parser = argparse.ArgumentParser(prog="assistant")
    parser.add_argument("--no-plugins", action="store_true")
    parser.add_argument("--config")
    sub = parser.add_subparsers()
    plugins_cli.add_commands(sub, [])
    args = parser.parse_args(argv)

    from assistant.config import Settings

    args.load_settings = lambda: Settings.load(plugins={"folder": str(folder), "timeout_s": 0.5})
    code = args.handler(args)
    return code, capsys.readouterr().out


def test_table_lists_each_plugin(folder, write_plugin, capsys):
    write_plugin("broken", "import nope_not_here\n")
    code, out = _run(["plugins"], folder, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "SOURCE", "STATUS", "HOOKS", "PROVIDES"]
    calc = next(line for line in lines if line.startswith("calc "))
    assert calc.split()[2:5] == ["builtin", "ok", "commands,"]
    assert "/calc, tool:calculator" in calc
    broken = lines.index(next(line for line in lines if line.startswith("broken ")))
    assert lines[broken].split()[1:4] == ["-", "folder", "error"]
    assert "failed to import: ModuleNotFoundError" in lines[broken + 1]


def test_json(folder, capsys):
    code, out = _run(["plugins", "--json"], folder, capsys)
    data = json.loads(out)
    assert [p["name"] for p in data] == ["calc", "clock", "draw", "files", "images", "notes"]
    files = data[3]
    assert files["hooks"] == ["register_commands"] and files["capabilities"] == ["read_files"]
    assert set(files) == {"name", "version", "source", "hooks", "status", "error", "provides",
                          "capabilities", "trusted"}


def test_one_plugin_and_a_missing_one(folder, capsys):
    code, out = _run(["plugins", "--json", "clock"], folder, capsys)
    assert [p["name"] for p in json.loads(out)] == ["clock"]
    with pytest.raises(PluginError, match="no plugin named 'clocks'.*installed: calc, clock"):
        _run(["plugins", "clocks"], folder, capsys)


def test_no_plugins_flag(folder, write_plugin, capsys):
    write_plugin("extra", "from plugins import hookimpl\n")
    code, out = _run(["--no-plugins", "plugins", "--json"], folder, capsys)
    status = {p["name"]: p["status"] for p in json.loads(out)}
    assert status["extra"] == "off" and status["calc"] == "ok"
