"""Settings: defaults, TOML file, environment overrides, validation, round trip."""

from __future__ import annotations

import tomllib

import pytest

from assistant import paths
from assistant.config import Settings
from assistant.errors import ConfigError


def test_defaults():
    s = Settings.load()
    assert s.offline is True and s.generator.model == "smollm2" and s.fusion.strategy == "attention"


def test_file_and_env_merge(tmp_path, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text('[generator]\nmax_new_tokens = 99\ntemperature = 0.3\n[image]\ntop_k = 5\n')
    monkeypatch.setenv("SYNESTHESIA_GENERATOR__TEMPERATURE", "0.9")
    s = Settings.load(f)
    assert s.generator.max_new_tokens == 99  # from the file
    assert s.generator.temperature == 0.9  # the environment wins
    assert s.image.top_k == 5


def test_default_file_location(monkeypatch):
    paths.config_file().write_text("offline = false\n")
    assert Settings.load().offline is False


@pytest.mark.parametrize("text,needle", [
    ("[generator]\ntemperature = -1\n", "generator.temperature"),
    ("[fusion]\nstrategy = 'magic'\n", "fusion.strategy"),
    ("[generator]\nnot_a_field = 1\n", "generator.not_a_field"),
    ("this is = = not toml", "not valid TOML"),
])
def test_invalid_file_names_the_field(tmp_path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle) as e:
        Settings.load(f)
    assert str(f) in str(e.value)


def test_a_bad_value_from_the_environment_names_the_variable_not_the_file(tmp_path, monkeypatch):
    f = tmp_path / "config.toml"
    f.write_text("[generator]\ntop_p = 2.0\n")
    monkeypatch.setenv("SYNESTHESIA_GENERATOR__ACTIVATIONS", "fp16")
    with pytest.raises(ConfigError) as e:
        Settings.load(f)
    message = str(e.value)
    assert "SYNESTHESIA_GENERATOR__ACTIVATIONS: generator.activations: Input should be 'fp32', 'int8' or 'mixed'" in message
    assert f"{f}: generator.top_p" in message and "\n" not in message
    assert f"{f}: generator.activations" not in message
    monkeypatch.delenv("SYNESTHESIA_GENERATOR__ACTIVATIONS")
    monkeypatch.setenv("SYNESTHESIA_GENERATOR", '{"top_k": -1}')  # a whole section, as JSON
    with pytest.raises(ConfigError, match="^SYNESTHESIA_GENERATOR: generator.top_k"):
        Settings.load()


def test_save_round_trip(tmp_path):
    s = Settings()
    s.generator.max_new_tokens = 77
    s.plugins.trusted = ["calc"]
    s.speech.whisper_dir = tmp_path
    f = s.save(tmp_path / "out.toml")
    tomllib.loads(f.read_text())
    again = Settings.load(f)
    assert again == s


COMMENTED = """\
# My settings: keep downloads off.
offline = true  # the default, but I like to see it

[generator]
# Short replies on this laptop.
max_new_tokens = 99   # tokens
temperature = 0.3

[speech]
whisper_dir = "/srv/whisper"  # shared with the other box
"""


def test_save_keeps_a_files_comments_and_layout(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text(COMMENTED)
    s = Settings.load(f)
    s.generator.max_new_tokens = 64
    s.save(f)
    assert f.read_text() == COMMENTED.replace("max_new_tokens = 99", "max_new_tokens = 64")
    assert Settings.load(f).generator.max_new_tokens == 64


def test_save_removes_unset_values_and_adds_only_changed_ones(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text(COMMENTED)
    s = Settings.load(f)
    s.speech.whisper_dir = None
    s.ui.theme = "nord"
    s.save(f)
    text = f.read_text()
    assert "whisper_dir" not in text and "[speech]" in text  # the section stays, empty
    assert text.startswith(COMMENTED.split("[speech]")[0])  # the rest untouched
    assert text.rstrip().endswith('[ui]\ntheme = "nord"')  # a default setting is not written out
    again = Settings.load(f)
    assert again == s


def test_save_refuses_to_overwrite_a_broken_file(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text("[generator\nmax_new_tokens = 5\n")
    with pytest.raises(ConfigError, match="not valid TOML, not overwritten"):
        Settings().save(f)
    assert f.read_text() == "[generator\nmax_new_tokens = 5\n"


def test_assignment_is_validated():
    s = Settings()
    with pytest.raises(ValueError):
        s.generator.top_p = 2.0


def test_every_setting_is_documented_by_its_docstring():
    from assistant.config import GeneratorSettings, Section

    assert GeneratorSettings.model_fields["max_new_tokens"].description == "Most tokens in one reply."
    sections = [f.annotation for f in Settings.model_fields.values() if isinstance(f.annotation, type)
                and issubclass(f.annotation, Section)]
    assert len(sections) == 7
    for model in [Settings, *sections]:
        for name, field in model.model_fields.items():
            if field.annotation not in sections:  # a section itself needs none
                assert field.description, f"{model.__name__}.{name} has no docstring"
