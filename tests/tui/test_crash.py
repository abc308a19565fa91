"""kill -9 in the middle of a streamed reply: what was committed stays, marked partial; the DB is sound."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from assistant.storage import SessionStore

WRITER = textwrap.dedent(
    """
    import sys, time
    from assistant.storage import SessionStore

    store = SessionStore.open(sys.argv[1])
    session = store.create_session("crash")
    writer = store.begin_turn(session.id, "tell me a long story", commit_every=0)
    for i in range(100000):
        writer.append(f"word{i} ")          # commit_every=0: every chunk is committed
        print(i, flush=True)                # only after the commit
        time.sleep(0.005)
    """
)


def test_kill_minus_9_mid_reply_keeps_committed_text(tmp_path):
    db = tmp_path / "sessions.db"
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        last = -1
        deadline = time.monotonic() + 30
        while last < 20 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the writer died early"
            last = int(line)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert last >= 20

    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with SessionStore.open(db) as store:
        session = store.last_session()
        [turn] = store.turns(session.id)
        assert turn.partial and turn.finished is None
        words = turn.reply_text.split()
        assert len(words) >= last + 1  # everything reported as committed is there
        assert words == [f"word{i}" for i in range(len(words))]  # and nothing torn
        assert store.search(f"word{last}")  # the index is consistent with the table
        # the database keeps working after the crash
        store.record_turn(session.id, "again", "fine")
        assert [t.reply_text for t in store.turns(session.id)][-1] == "fine"
