"""Rules written once and asked everywhere: the cache directory, an error's one line, the
slash-command rule."""

from __future__ import annotations

import pytest

from assistant import paths
from assistant.errors import InputError, first_line


def test_one_cache_directory_for_the_app_and_the_models(tmp_path, monkeypatch):
    from models.features import default_cache_dir

    monkeypatch.setenv("SYNESTHESIA_CACHE_DIR", str(tmp_path / "moved"))
    assert paths.cache_dir() == tmp_path / "moved"
    assert default_cache_dir() == tmp_path / "moved" / "clevr"
    monkeypatch.delenv("SYNESTHESIA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # platformdirs follows it on Linux
    assert paths.cache_dir() == tmp_path / "xdg" / "synesthesia"
    assert default_cache_dir() == tmp_path / "xdg" / "synesthesia" / "clevr"


@pytest.mark.parametrize("error, line", [
    (InputError("photo.png: no such file\nmore detail"), "photo.png: no such file"),
    (RuntimeError("  \n"), "RuntimeError"),
    (ValueError("\n  bad value\nsecond"), "bad value"),
])
def test_first_line_of_an_error(error, line):
    assert first_line(error) == line


def test_the_server_and_the_pipeline_share_the_slash_command_rule():
    from assistant.plugin_host import load_plugins, unescape
    from assistant.serve.conversation import check_command

    host = load_plugins(enabled=False)
    check_command("//etc/hosts is a file", host, allow=False)  # text for the model: allowed
    check_command("/", host, allow=False)
    with pytest.raises(InputError, match="slash commands are off"):
        check_command("  /calc 2+2", host, allow=False)
    assert unescape("//x") == "/x" and unescape("x") == "x"
