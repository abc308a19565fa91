"""The built-in /read, /labels and /save commands (and the note tool)."""

from __future__ import annotations

import pytest

from assistant.errors import InputError
from plugins.builtin import files
from plugins.types import BasicContext

# ------------------------------------------------------------------ /read


def test_read_puts_text_into_the_conversation(host, tmp_path):
    doc = tmp_path / "notes.md"
    doc.write_text("# Shopping\n\n- milk\n- eggs\n", encoding="utf-8")
    added: list[str] = []
    ctx = BasicContext(on_context=added.append)
    result = host.run_command(f"/read {doc}", ctx)
    assert result.text.startswith("Read notes.md: 26 characters, 5 lines")
    assert added == ["[Contents of the file notes.md]\n# Shopping\n\n- milk\n- eggs\n"]
    assert result.data["truncated"] is False


def test_read_accepts_quoted_paths_with_spaces(host, tmp_path, ctx):
    doc = tmp_path / "my notes.txt"
    doc.write_text("hello", encoding="utf-8")
    host.run_command(f'/read "{doc}"', ctx)
    assert ctx.added == ["[Contents of the file my notes.txt]\nhello"]


def test_read_cuts_long_files_and_says_so(host, tmp_path, ctx):
    doc = tmp_path / "long.txt"
    doc.write_text("x" * (files.MAX_CHARS + 500), encoding="utf-8")
    result = host.run_command(f"/read {doc}", ctx)
    assert f"cut to the first {files.MAX_CHARS:,} characters" in result.text
    assert len(ctx.added[0].split("\n", 1)[1]) == files.MAX_CHARS


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p / "missing.txt", "no such file"),
        (lambda p: p, "is a directory"),
        (lambda p: _write(p / "empty.txt", b""), "the file is empty"),
        (lambda p: _write(p / "cat.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20), "looks like a PNG image"),
        (lambda p: _write(p / "doc.txt", b"%PDF-1.7\n..."), "looks like a PDF"),
        (lambda p: _write(p / "blob.bin", b"abc\x00\x01\x02def"), "binary data"),
        (lambda p: _write(p / "latin1.txt", "café".encode("latin-1")), "not a text file in UTF-8"),
        (lambda p: _write(p / "big.txt", b"a" * (files.MAX_BYTES + 1)), "over the 1,000,000-byte limit"),
    ],
)
def test_read_errors_name_the_file_and_problem(host, ctx, tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(InputError, match=problem) as err:
        host.run_command(f"/read {path}", ctx)
    assert str(path) in str(err.value)
    assert ctx.added == []


def test_read_without_path_is_a_usage_error(host, ctx):
    with pytest.raises(InputError, match="usage: /read PATH"):
        host.run_command("/read", ctx)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ /labels


def test_labels_shows_the_encoders_labels(host):
    ctx = BasicContext(labels=lambda: [("tabby cat", 0.62), ("tiger cat", 0.2031)])
    result = host.run_command("/labels", ctx)
    assert result.text.splitlines() == ["tabby cat   62.0%", "tiger cat   20.3%"]
    assert result.data == [{"label": "tabby cat", "probability": 0.62},
                           {"label": "tiger cat", "probability": 0.2031}]


def test_labels_without_image(host, ctx):
    with pytest.raises(InputError, match="no image is attached"):
        host.run_command("/labels", ctx)


# ------------------------------------------------------------------ /save and the note tool


def test_save_stores_a_note_in_the_session(host):
    saved: list[str] = []
    ctx = BasicContext(on_note=saved.append)
    result = host.run_command("/save the locker code is 4521", ctx)
    assert saved == ["the locker code is 4521"]
    assert result.text == "Saved a note: the locker code is 4521"


def test_save_without_text_saves_the_last_reply(host):
    class Ctx(BasicContext):
        def last_reply(self):
            return "Paris is the capital of France."

    ctx = Ctx()
    host.run_command("/save", ctx)
    assert ctx.notes == ["Paris is the capital of France."]
    with pytest.raises(InputError, match="usage: /save"):
        host.run_command("/save", BasicContext())


def test_note_tool_saves_what_to_remember(host, ctx):
    result = host.run_tool("note", "Remember that my bike is on level 3.", ctx)
    assert ctx.notes == ["my bike is on level 3"]
    assert result.ok and "my bike is on level 3" in result.text
