"""Intent routing with the packaged sentence encoder (loaded once per run)."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.plugin_host.routing import Router, packaged_model_dir
from plugins.types import Tool


@pytest.fixture
def routed_host(host, sentence_encoder):
    return host


@pytest.mark.parametrize(
    ("request_text", "tool"),
    [
        ("what's 15 percent of 80?", "calculator"),
        ("whats 45 times 12?", "calculator"),
        ("calculate 1234 / 7", "calculator"),
        ("what time is it?", "clock"),
        ("which day of the week is it", "clock"),
        ("set a timer for 3 minutes", "timer"),
        ("remind me to stretch in half an hour", "timer"),
        ("remember that my bike is on level 3", "note"),
    ],
)
def test_requests_reach_their_tool(routed_host, request_text, tool):
    match = routed_host.route(request_text)
    assert match is not None, routed_host.explain(request_text)
    assert match.tool.name == tool
    assert match.score >= (match.tool.threshold or 0.5)
    assert match.why.startswith(f"{tool}: similarity ")
    assert match.example in match.tool.examples


@pytest.mark.parametrize(
    "request_text",
    [
        "what is the capital of France?",
        "tell me a joke",
        "describe the image",
        "what is the time complexity of quicksort",
        "I'll be there in 10 minutes",
        "remember when we went to Paris?",
        "what is 5",
        "/calc 1+1",
    ],
)
def test_other_requests_reach_no_tool(routed_host, request_text):
    assert routed_host.route(request_text) is None, routed_host.explain(request_text)


def test_why_explains_the_last_decision(routed_host, ctx):
    routed_host.route("whats 45 times 12?")
    text = routed_host.run_command("/why", ctx).text
    lines = text.splitlines()
    assert lines[0] == "Last request: 'whats 45 times 12?'"
    assert lines[1].startswith("Tool: calculator: similarity ")
    assert any(line.strip().startswith("calculator") and line.endswith("<- fired") for line in lines)
    assert any(line.strip().startswith("clock") for line in lines)
    why_other = routed_host.run_command("/why I'll be there in 10 minutes", ctx).text
    assert why_other.startswith("No tool fired")
    assert "(below threshold)" in why_other


def test_route_then_run_tool(routed_host, ctx):
    match = routed_host.route("What is 17% of 230?")
    result = routed_host.run_tool(match, "What is 17% of 230?", ctx)
    assert result.text == "17% of 230 = 39.1"


def test_model_is_found_inside_the_installed_package():
    folder = packaged_model_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def test_encoder_is_normalised(sentence_encoder):
    vectors = sentence_encoder.encode(["what time is it", "what's the time"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) > 0.8


class CountingEncoder:
    """A fake encoder: bag of letters, counting calls (for laziness checks)."""

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _tool(name, examples, guard=None, threshold=None):
    return Tool(name=name, description=name, fn=lambda t, c: name, examples=tuple(examples),
                guard=guard, threshold=threshold)


def test_encoder_is_not_used_when_no_guard_accepts():
    enc = CountingEncoder()
    router = Router([_tool("digits", ["add 1 and 2"], guard=lambda t: any(c.isdigit() for c in t))], encoder=enc)
    match, why = router.match_explained("hello there")
    assert match is None and enc.calls == 0
    assert why == "No tool fired: no tool's check accepted the request."
    assert router.match("add 3 and 4") is not None and enc.calls == 2  # examples + request


def test_threshold_and_closest_tool_win():
    router = Router([_tool("abc", ["abc abc"]), _tool("xyz", ["xyz xyz"], threshold=0.99)],
                    encoder=CountingEncoder(), threshold=0.5)
    assert router.match("cab").tool.name == "abc"
    assert router.match("xyzq") is None  # similar, but under xyz's own high threshold
    assert router.match("mmm") is None


def test_a_broken_guard_means_not_this_tool():
    errors = []
    router = Router([_tool("bad", ["abc"], guard=lambda t: 1 / 0)], encoder=CountingEncoder(),
                    on_guard_error=lambda tool, e: errors.append((tool.name, type(e).__name__)))
    assert router.match("abc") is None
    assert errors == [("bad", "ZeroDivisionError")]


def test_importing_plugins_does_not_load_models():
    import subprocess
    import sys

    code = ("import sys; from assistant.plugin_host import load_plugins; h = load_plugins(); "
            "h.route('hello there'); "
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'textual') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
