"""Built-in plugin: ``/read PATH`` puts a local text or Markdown file into the conversation.

Files over :data:`MAX_BYTES` are refused; text beyond :data:`MAX_CHARS` is cut (the small
generator's context holds a few thousand tokens) and the user is told. Binary files get a clear
error that says what they look like (an image to attach with ``--image``, a PDF, an archive).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugins.errors import InputError
from plugins.hookspecs import hookimpl
from plugins.types import READ_FILES, CommandResult, usage_error

MAX_BYTES = 1_000_000
MAX_CHARS = 4_000  # about 1,000 tokens: half of SmolLM2's default 2,048-token budget
_SNIFF = 8192

_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image (attach it with --image or /image instead)"),
    (b"\xff\xd8\xff", "a JPEG image (attach it with --image or /image instead)"),
    (b"GIF8", "a GIF image (attach it with --image or /image instead)"),
    (b"RIFF", "a RIFF file (WAV audio or WebP image; attach audio with --audio)"),
    (b"%PDF", "a PDF document (convert it to text first, e.g. with pdftotext)"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"ID3", "an MP3 file (attach audio with --audio)"),
    (b"fLaC", "a FLAC file (attach audio with --audio)"),
    (b"OggS", "an Ogg file (attach audio with --audio)"),
    (b"SQLite format 3\x00", "an SQLite database"),
]


def read_text_file(path_text: str) -> tuple[Path, str, bool]:
    """(resolved path, text, truncated?) for a text file; InputError naming the file otherwise."""
    raw = path_text.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    if not raw:
        raise usage_error("/read PATH   (a text or Markdown file)")
    path = Path(raw).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: the file is empty")
    if size > MAX_BYTES:
        raise InputError(f"{path}: {size:,} bytes is over the {MAX_BYTES:,}-byte limit for /read")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read it: {e.strerror or e}") from e
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise InputError(f"{path}: not a text file; it looks like {what}")
    if b"\x00" in data[:_SNIFF]:
        raise InputError(f"{path}: not a text file (it holds binary data)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a text file in UTF-8 (bad byte at offset {e.start})") from e
    text = text.replace("\r\n", "\n")
    truncated = len(text) > MAX_CHARS
    return path.resolve(), text[:MAX_CHARS] if truncated else text, truncated


def read_command(args: str, ctx: Any) -> CommandResult:
    """Put a text or Markdown file into the conversation: /read notes.md"""
    path, text, truncated = read_text_file(args)
    note = f" (cut to the first {MAX_CHARS:,} characters)" if truncated else ""
    ctx.add_context(f"[Contents of the file {path.name}{note}]\n{text}")
    lines = text.count("\n") + 1
    return CommandResult(
        text=f"Read {path.name}: {len(text):,} characters, {lines:,} lines{note}. Ask about it.",
        data={"path": str(path), "characters": len(text), "lines": lines, "truncated": truncated},
    )


@hookimpl
def register_commands(register):
    register(read_command, name="read", usage="/read PATH", capabilities=(READ_FILES,))
