"""/draw and the draw tool through the plugin host, `assistant draw` through the real entry point,
/draw in the chat REPL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assistant.errors import InputError
from models import blobs

ROOT = Path(__file__).resolve().parents[2]


def _objects(path: str):
    img = Image.open(path).convert("RGB").resize((75, 75), Image.Resampling.NEAREST)
    return {b.colour: (b.shape, b.quadrant) for b in blobs.detect(np.asarray(img))}


def test_draw_command_saves_and_reports(ctx):
    from assistant.plugin_host import load_plugins

    host = load_plugins(enabled=False)
    result = host.run_command("/draw a yellow circle in the bottom right corner", ctx)
    assert result.command == "draw"
    path = result.data["image"]
    assert Path(path).is_file() and Path(path).parent.name == "drawings"
    assert Path(path).is_relative_to(os.environ["SYNESTHESIA_DATA_DIR"])
    assert "a yellow circle at the bottom right" in result.text and path in result.text
    assert Image.open(path).size == (300, 300)


@pytest.mark.parametrize("line, needle", [
    ("/draw", "usage: /draw DESCRIPTION"),
    ("/draw a purple hexagon", "I cannot draw purple"),
])
def test_draw_command_refuses_in_one_line(ctx, line, needle):
    from assistant.plugin_host import load_plugins

    with pytest.raises(InputError, match=needle) as e:
        load_plugins(enabled=False).run_command(line, ctx)
    assert "\n" not in str(e.value)


def test_router_picks_draw(host, sentence_encoder, ctx):
    text = "draw me a yellow circle in the bottom right corner"
    match = host.route(text)
    assert match is not None and match.tool.name == "draw", host.explain(text)
    result = host.run_tool(match, text, ctx)
    assert result.ok and Path(result.data["image"]).is_file()
    assert _objects(result.data["image"]).get("yellow") == ("circle", "bottom right")
    for other in ("describe the image", "what shape is the red object?", "draw the curtains please"):
        m = host.route(other)
        assert m is None or m.tool.name != "draw", other


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_assistant_draw_cli(tmp_path):
    out = tmp_path / "out.png"
    p = run_cli("draw", "a red circle at the top left and a blue square at the bottom right", "-o", str(out),
                "--seed", "3", "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["drawn"] == "a red circle at the top left and a blue square at the bottom right" and info["seed"] == 3
    assert _objects(str(out)) == {"red": ("circle", "top left"), "blue": ("square", "bottom right")}
    bad = run_cli("draw", "a purple triangle", "-o", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and "I cannot draw purple" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_cli_refuses_other_formats(tmp_path, capsys):
    from assistant.cli import main

    assert main(["draw", "a red circle", "-o", str(tmp_path / "x.jpg")]) == 2
    assert "give a path ending in .png" in capsys.readouterr().err
    assert main(["draw", "a red circle", "-o", str(tmp_path / "no" / "x.png")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_draw_in_the_chat_repl(monkeypatch, capsys):
    from assistant.cli import build_parser, cmd_chat
    from assistant.config import Settings
    from assistant.pipeline import Assistant
    from assistant.plugin_host import load_plugins
    from tests.core.fakes import FakeGenerator

    settings = Settings()
    bot = Assistant(settings, generator=FakeGenerator("Hello."), image_encoder=None,
                    plugins=load_plugins(settings.plugins))
    lines = iter(["/draw a green square left of a gray circle", "/draw a pink square", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    args = build_parser().parse_args(["chat"])
    args.load_bot = lambda progress=None: bot
    assert cmd_chat(args) == 0
    out = capsys.readouterr()
    assert "Drew a green square at the " in out.out and "Saved to " in out.out
    assert "I cannot draw pink" in out.err and "Traceback" not in out.err
