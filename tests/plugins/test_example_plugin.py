"""The example plugin package: pip-installed into a temporary folder, found by its entry point."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.plugin_host import load_plugins

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "synesthesia-plugin-example"


@pytest.fixture(scope="session")
def example_site(tmp_path_factory):
    """pip install --no-deps --target <tmp> (a copy, so the source tree gets no build files)."""
    tmp = tmp_path_factory.mktemp("example-plugin")
    source = tmp / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp / "site"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    for name in [m for m in sys.modules if m.startswith("synesthesia_plugin_example")]:
        del sys.modules[name]


@pytest.fixture
def example_host(example_site, folder, recorder):
    from assistant.config import PluginSettings

    host = load_plugins(PluginSettings(folder=folder), entry_points=True, notify=recorder.notify)
    yield host
    host.close()


def test_found_through_its_entry_point(example_host, example_site):
    status = example_host.plugin("units")
    assert status.status == "ok", status.error
    assert (status.source, status.version) == ("entry point", "0.1.0")
    assert status.hooks == ["register_commands", "register_tools"]
    assert status.provides == ["/convert", "tool:unit_converter"]
    module = sys.modules["synesthesia_plugin_example"]
    assert Path(module.__file__).is_relative_to(example_site)  # the installed copy, not the source


def test_its_command(example_host, ctx):
    assert example_host.run_command("/convert 5 km to mi", ctx).text == "5 km = 3.107 mi"
    result = example_host.run_command("/convert 212 F to C", ctx)
    assert result.text == "212 F = 100 C" and result.data["result"] == pytest.approx(100)
    with pytest.raises(Exception, match=r"cannot convert mass \(kg\) to length \(km\)"):
        example_host.run_command("/convert 3 kg to km", ctx)


def test_its_tool_through_the_router(example_host, sentence_encoder, ctx):
    request = "how many miles is 42 kilometres?"
    match = example_host.route(request)
    assert match is not None, example_host.explain(request)
    assert match.tool.name == "unit_converter" and match.tool.plugin == "units"
    result = example_host.run_tool(match, request, ctx)
    assert result.ok and result.text == "42 kilometres = 26.1 miles"
    assert result.data["result"] == pytest.approx(26.0975, rel=1e-4)
    # the built-in tools still win their own requests
    assert example_host.route("what is 17% of 230").tool.name == "calculator"


def test_off_with_no_plugins(example_site, folder):
    from assistant.config import PluginSettings

    host = load_plugins(PluginSettings(folder=folder), enabled=False, entry_points=True)
    assert host.plugin("units").status == "off"
    assert "convert" not in host.commands
