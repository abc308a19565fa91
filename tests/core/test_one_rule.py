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


def test_the_tokens_route_is_trained_on_the_prompt_the_assistant_sends():
    """configs/fusion_cpu_tokens.json trains the soft tokens after the assistant's system
    message, in the user message the pipeline writes on the tokens route: both must stay equal."""
    import json
    from pathlib import Path

    from assistant.config import Settings
    from assistant.pipeline import Assistant
    from assistant.turns import Turn
    from models.train_losses import tokens_prompt

    config = json.loads((Path(__file__).parents[2] / "configs" / "fusion_cpu_tokens.json").read_text())
    assert config["generator_system"] == Settings().generator.system_prompt

    class Render:  # the chat template's job is not under test here: show the messages as given
        def render(self, messages):
            return json.dumps(messages)

    question = "Is the red object on the left?"
    turn = Turn(text=question, fusion_tokens=[object()])  # one picture, on the tokens route: no scene note
    sent = Assistant.user_message(None, turn, with_fusion=True)
    trained = json.loads(tokens_prompt(Render(), config["generator_system"], question))
    assert trained == [{"role": "system", "content": Settings().generator.system_prompt},
                       {"role": "user", "content": sent}]
