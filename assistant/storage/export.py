"""A session written out as a folder: ``session.md`` (readable), ``session.json`` (everything) and
its files under ``media/``."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.errors import InputError
from assistant.storage.records import Attachment

if TYPE_CHECKING:
    from assistant.storage.store import SessionStore


def export_session(store: SessionStore, session_id: int, dest: str | Path) -> Path:
    """Write ``session.md``, ``session.json`` and the session's files into folder ``dest``.

    Returns the Markdown file. Files are copied under ``media/``; the Markdown links them
    relatively, so the folder can be moved or zipped as a whole.
    """
    session = store.get_session(session_id)
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest}: exists and is not a folder")
    media = dest / "media"
    media.mkdir(parents=True, exist_ok=True)
    turns = store.turns(session.id)

    def copy(a: Attachment) -> str | None:
        if not a.path.is_file():
            return None
        target = media / a.path.name
        shutil.copyfile(a.path, target)
        return f"media/{target.name}"

    md = [f"# {session.title}", "", f"_Session {session.id}, started {_fmt_time(session.created)}_", ""]
    records = []
    for t in turns:
        files = {a.id: copy(a) for a in t.attachments}
        md.append(f"## You · {_fmt_time(t.created)}")
        md.append("")
        if t.user_text:
            md += [t.user_text, ""]
        for a in t.inputs("image"):
            if files[a.id]:
                md += [f"![{a.name}]({files[a.id]})", ""]
        for a in t.inputs("audio"):
            if files[a.id]:
                md += [f"[audio: {a.name}]({files[a.id]})", ""]
        for line in t.transcript:
            md += [f"> transcript: {line}", ""]
        md.append("## Assistant" + (" (partial)" if t.partial else ""))
        md.append("")
        md += [t.reply_text or "_(no reply)_", ""]
        if t.reply_audio is not None and files[t.reply_audio.id]:
            md += [f"[spoken reply]({files[t.reply_audio.id]})", ""]
        record = asdict(t)
        record["attachments"] = [
            {"role": a.role, "kind": a.kind, "name": a.name, "file": files[a.id]} for a in t.attachments
        ]
        records.append(record)
    notes = store.notes(session.id)
    if notes:
        md += ["## Notes", ""] + [f"- {text}" for _, text in notes] + [""]
    (dest / "session.md").write_text("\n".join(md), encoding="utf-8")
    payload = {
        "session": asdict(session),
        "turns": records,
        "notes": [{"created": c, "text": x} for c, x in notes],
    }
    (dest / "session.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return dest / "session.md"


def _fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
