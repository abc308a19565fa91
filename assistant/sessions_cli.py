"""``assistant sessions ...``: list, show, search, export, rename and delete saved sessions.

Added to the CLI by :func:`add_commands` (listed in ``cli.FEATURE_MODULES``). Every handler
is ``fn(args) -> int``; user errors are raised as :class:`~assistant.errors.InputError`
and printed in one line by the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from assistant.storage import SessionStore


def add_commands(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sessions", help="list, search, export, rename or delete saved sessions")
    p.set_defaults(handler=cmd_list, json=False, limit=None, match="")
    ss = p.add_subparsers(dest="sessions_command", metavar="COMMAND")

    q = ss.add_parser("list", parents=parents, help="saved sessions, most recent first")
    q.add_argument("--limit", type=int, default=None, metavar="N", help="only the N most recent")
    q.add_argument("--match", default="", metavar="WORDS",
                   help="only sessions whose title holds every word (or with this id)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=cmd_list)

    q = ss.add_parser("show", parents=parents, help="print one session's turns")
    q.add_argument("id", help="session id (see `assistant sessions list`)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=cmd_show)

    q = ss.add_parser("search", parents=parents, help="full-text search over every turn")
    q.add_argument("query", nargs="+", help="words to find (prefixes match)")
    q.add_argument("--limit", type=int, default=20)
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=cmd_search)

    q = ss.add_parser("export", parents=parents, help="write a session as Markdown + media + JSON into DIR")
    q.add_argument("id", help="session id")
    q.add_argument("dir", help="destination folder (created if missing)")
    q.set_defaults(handler=cmd_export)

    q = ss.add_parser("rename", parents=parents, help="change a session's title")
    q.add_argument("id", help="session id")
    q.add_argument("title", nargs="+", help="the new title")
    q.set_defaults(handler=cmd_rename)

    q = ss.add_parser("delete", parents=parents, help="delete a session with its files")
    q.add_argument("id", help="session id")
    q.set_defaults(handler=cmd_delete)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def cmd_list(args: argparse.Namespace) -> int:
    with SessionStore.open() as store:
        sessions = store.list_sessions(args.limit, match=args.match)
    if args.json:
        print(json.dumps([asdict(s) for s in sessions], indent=2, ensure_ascii=False))
        return 0
    if not sessions:
        print("No sessions yet.", file=sys.stderr)
        return 0
    width = max(len(str(s.id)) for s in sessions)
    for s in sessions:
        print(f"{s.id:>{width}}  {_when(s.updated)}  {s.turns:>3} turns  {s.title}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with SessionStore.open() as store:
        session = store.get_session(args.id)
        turns = store.turns(session.id)
    if args.json:
        print(json.dumps({"session": asdict(session), "turns": [asdict(t) for t in turns]},
                         indent=2, ensure_ascii=False, default=str))
        return 0
    print(f"# {session.title} (session {session.id})")
    for t in turns:
        names = ", ".join(a.name for a in t.attachments if a.role == "user")
        print(f"\nyou: {t.user_text}" + (f"  [{names}]" if names else ""))
        for line in t.transcript:
            print(f"  (heard: {line})")
        print(f"assistant{' (partial)' if t.partial else ''}: {t.reply_text}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with SessionStore.open() as store:
        hits = store.search(" ".join(args.query), limit=args.limit)
    if args.json:
        print(json.dumps([asdict(h) for h in hits], indent=2, ensure_ascii=False))
        return 0
    if not hits:
        print("No matches.", file=sys.stderr)
        return 1
    for h in hits:
        print(f"{h.session_id}:{h.turn_id}  {h.session_title}: {h.snippet}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    with SessionStore.open() as store:
        md = store.export(args.id, args.dir)
    print(md)
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    with SessionStore.open() as store:
        s = store.rename_session(store.get_session(args.id).id, " ".join(args.title))
    print(f"{s.id}  {s.title}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with SessionStore.open() as store:
        s = store.get_session(args.id)
        store.delete_session(s.id)
    print(f"deleted session {s.id} ({s.title})", file=sys.stderr)
    return 0
