"""Too much input is refused before the work when that can be known, and finished work is
never thrown away: through `assistant ask` / `assistant chat` on fakes, with a small context
budget (the fake generator counts a token a word)."""

from __future__ import annotations

import json

import pytest

from assistant.cli import build_parser, main
from tests.conftest import DATA


@pytest.fixture(autouse=True)
def small_budget(monkeypatch):
    """context 512 - reply 64: a message may take 448 (fake) tokens."""
    monkeypatch.setenv("SYNESTHESIA_GENERATOR__CONTEXT_TOKENS", "512")
    monkeypatch.setenv("SYNESTHESIA_GENERATOR__MAX_NEW_TOKENS", "64")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_too_many_images_are_refused_before_any_is_encoded(lazy_stack, capsys):
    images = [arg for _ in range(64) for arg in ("--image", f"{DATA}/cat.jpg")]
    assert main(["ask", "Describe these photos.", *images]) == 2
    err = one_line_error(capsys)
    assert "64 images" in err and "context budget is 448 tokens" in err
    most = int(err.split("send at most ")[1].split()[0])
    assert 10 < most < 64
    assert lazy_stack.image_encoder.calls == 0 and lazy_stack.loaded == []  # not even loaded
    assert lazy_stack.generator.prompts == []


def test_as_many_images_as_the_limit_names_are_answered(lazy_stack, capsys):
    images = [arg for _ in range(64) for arg in ("--image", f"{DATA}/cat.jpg")]
    main(["ask", "Describe these photos.", *images])
    most = int(capsys.readouterr().err.split("send at most ")[1].split()[0])
    assert main(["ask", "Describe these photos.", *images[:2 * most]]) == 0
    assert lazy_stack.image_encoder.images_seen == most and len(lazy_stack.generator.prompts) == 1


def test_text_too_long_beside_a_recording_is_refused_before_recognition(lazy_stack, question_wav, capsys):
    assert main(["ask", "word " * 500, "--audio", str(question_wav)]) == 2
    assert "before the recording is even transcribed" in one_line_error(capsys)
    assert lazy_stack.recognizer.calls == 0 and lazy_stack.loaded == []


def test_a_transcript_too_long_to_answer_is_kept(lazy_stack, question_wav, capsys):
    said = " ".join(f"word{i}" for i in range(600))
    lazy_stack.recognizer.text = said
    assert main(["ask", "--audio", str(question_wav), "--json"]) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err and len(out.err.strip().splitlines()) == 1
    data = json.loads(out.out)
    assert data["transcript"] == [said] and data["budget"] == 448
    saved = data["transcript_file"]
    assert saved in out.err and "/read" in out.err
    with open(saved, encoding="utf-8") as f:
        assert f.read().strip() == said
    assert lazy_stack.generator.prompts == []


def test_chat_keeps_a_too_long_transcript_in_the_session(lazy_stack, question_wav, monkeypatch, capsys):
    from assistant.storage import SessionStore

    said = " ".join(f"word{i}" for i in range(600))
    lazy_stack.recognizer.text = said
    lines = iter([f"/audio {question_wav}", "Summarise the recording.", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    import assistant.cli as cli

    args = build_parser().parse_args(["chat"])
    args.load_bot = cli._loader(args)
    assert cli.cmd_chat(args) == 0
    assert "was kept in" in capsys.readouterr().err
    with SessionStore.open() as store:
        turn, = store.turns(store.last_session().id)
        assert turn.user_text == "Summarise the recording." and turn.transcript == [said]
        assert turn.partial and "context budget" in turn.stop_reason
