"""``plugins/`` is the contract a third party codes against: it runs without the application.
The host lives in ``assistant.plugin_host``; the layers contract in pyproject.toml keeps it so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from plugins.types import BasicContext

ROOT = Path(__file__).resolve().parents[2]


def test_the_contract_and_the_builtins_import_nothing_from_the_application():
    code = ("import sys; import plugins, plugins.errors, plugins.hookspecs, plugins.types\n"
            "from plugins.builtin import builtin_plugins; builtin_plugins()\n"
            "from plugins.builtin import calc; print(calc.evaluate('2+3'))\n"
            "print(sorted(m for m in sys.modules if m == 'assistant' or m.startswith('assistant.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"


def test_the_application_raises_the_contracts_errors():
    import assistant.errors as app
    import plugins.errors as contract

    assert app.InputError is contract.InputError and app.ModelError is contract.ModelError
    assert issubclass(app.PluginError, contract.AssistantError)


def test_a_context_without_a_folder_gives_a_private_temporary_one():
    folder = BasicContext().data_dir()
    assert folder.is_dir() and folder.stat().st_mode & 0o077 == 0


def test_drawings_go_to_the_folder_the_context_gives(tmp_path):
    from assistant.plugin_host import load_plugins

    result = load_plugins(enabled=False).run_command("/draw a red circle at the top left",
                                                       BasicContext(folder=lambda: tmp_path))
    assert Path(result.data["image"]).parent == tmp_path / "drawings"
