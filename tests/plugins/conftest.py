"""Fixtures for the plugin tests: a fresh plugin host per test, one sentence encoder per run."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from assistant.config import PluginSettings
from assistant.plugin_host import PluginHost, load_plugins
from plugins.types import BasicContext


class Recorder:
    """Collects notify(message, severity) calls and confirm(plugin, message) questions."""

    def __init__(self, answer: bool = True):
        self.notices: list[tuple[str, str]] = []
        self.questions: list[tuple[str, str]] = []
        self.answer = answer

    def notify(self, message: str, severity: str) -> None:
        self.notices.append((message, severity))

    def confirm(self, plugin: str, message: str) -> bool:
        self.questions.append((plugin, message))
        return self.answer

    def text(self) -> str:
        return "\n".join(m for m, _ in self.notices)


@pytest.fixture(scope="session")
def sentence_encoder():
    """The packaged all-MiniLM-L6-v2, loaded once for the whole run (a few seconds)."""
    from assistant.plugin_host.routing import shared_encoder

    return shared_encoder()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def folder(tmp_path) -> Path:
    """An empty user plugin folder."""
    path = tmp_path / "user-plugins"
    path.mkdir()
    return path


@pytest.fixture
def write_plugin(folder):
    """write_plugin("name", "source") puts a plugin file in the user folder."""

    def write(name: str, source: str) -> Path:
        path = folder / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    return write


@pytest.fixture
def load(folder, recorder):
    """load(**plugin_settings) -> PluginHost with the test folder, a short timeout, the recorder.

    ``no_plugins=True`` is the CLI's ``--no-plugins``.
    """
    hosts: list[PluginHost] = []

    def make(*, no_plugins: bool = False, confirm=None, entry_points=None, **fields) -> PluginHost:
        fields.setdefault("folder", folder)
        fields.setdefault("timeout_s", 0.5)
        host = load_plugins(PluginSettings(**fields), enabled=not no_plugins,
                            confirm=confirm or recorder.confirm, notify=recorder.notify,
                            entry_points=entry_points)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()


@pytest.fixture
def host(load) -> PluginHost:
    """Built-in plugins only (the user folder is empty)."""
    return load()


@pytest.fixture
def ctx() -> BasicContext:
    """The context the application hands plugins: its data folder is SYNESTHESIA_DATA_DIR's."""
    from assistant import paths

    return BasicContext(folder=paths.data_dir)
