"""The session store's work does not grow with what it holds: pages of sessions, the latest
turns, bounded history, saving a turn. Work is counted in SQLite virtual-machine steps (a
count, not a timing), so these tests are deterministic on any machine."""

from __future__ import annotations

import sqlite3

from assistant import storage
from assistant.storage import SessionStore


def sqlite_steps(store: SessionStore, action) -> int:
    """How many SQLite virtual-machine instructions ``action()`` runs on the store's connection."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    store._db.set_progress_handler(count, 1)
    try:
        action()
    finally:
        store._db.set_progress_handler(None, 1)
    return steps


def long_session(store: SessionStore, turns: int, title: str = "long") -> int:
    session = store.create_session(title)
    for i in range(turns):
        store.record_turn(session.id, f"question {i}", f"answer {i}")
    return session.id


def test_saving_a_turn_costs_the_same_at_turn_400_as_at_turn_5(store):
    short, long = long_session(store, 5, "short"), long_session(store, 400)
    work: dict[int, list[int]] = {short: [], long: []}
    for _ in range(5):  # alternating, so both see the same full-text index
        for sid in (short, long):
            work[sid].append(sqlite_steps(store, lambda: store.record_turn(sid, "one more", "reply")))
    # the least of five: now and then the full-text index merges its segments, in either session;
    # reading the long session back would take about 10,000 steps (500 for the whole save)
    assert min(work[long]) <= min(work[short]) * 1.2


def test_history_reads_only_the_latest_turns_up_to_its_bounds(store):
    sid = long_session(store, 50)
    assert store.history(sid, max_turns=2) == [
        {"role": "user", "content": "question 48"}, {"role": "assistant", "content": "answer 48"},
        {"role": "user", "content": "question 49"}, {"role": "assistant", "content": "answer 49"},
    ]
    # one turn is 20 characters ("question 4x" + "answer 4x"): 50 characters hold two, not three
    assert [m["content"] for m in store.history(sid, max_chars=50)][0] == "question 48"
    assert store.history(sid, max_chars=10) == []  # the latest turn alone does not fit
    assert len(store.history(sid)) == 100
    long = long_session(store, 400)
    short_steps = sqlite_steps(store, lambda: store.history(sid, max_chars=200))
    assert sqlite_steps(store, lambda: store.history(long, max_chars=200)) <= short_steps * 1.2


def test_latest_turns_and_one_turn_with_their_attachments(store, picture):
    sid = long_session(store, 30)
    with_image = store.begin_turn(sid, "look", images=[picture]).finish("a picture")
    store.record_turn(sid, "last", "done")
    latest = store.turns(sid, last=2)
    assert [t.user_text for t in latest] == ["look", "last"]
    assert [a.name for a in latest[0].attachments] == ["quadrants.png"]
    assert store.get_turn(with_image.id).attachments[0].path.is_file()
    assert len(store.turns(sid)) == 32
    long = long_session(store, 300)
    short_steps = sqlite_steps(store, lambda: store.turns(sid, last=5))
    assert sqlite_steps(store, lambda: store.turns(long, last=5)) <= short_steps * 1.2


def test_sessions_come_a_page_at_a_time_most_recent_first(store):
    made = [store.create_session(f"Trip {i}" if i % 2 else f"Work {i}") for i in range(7)]
    newest_first = [s.id for s in reversed(made)]
    first = store.list_sessions(3)
    assert [s.id for s in first] == newest_first[:3]
    second = store.list_sessions(3, after=first[-1])
    assert [s.id for s in second] == newest_first[3:6]
    assert [s.id for s in store.list_sessions(3, after=second[-1])] == newest_first[6:]
    store.record_turn(made[0].id, "back to the first", "ok")  # using a session brings it to the top
    assert store.list_sessions(1)[0].id == made[0].id and store.list_sessions(1)[0].turns == 1
    assert store.count_sessions() == 7


def test_sessions_filter_by_title_words_or_id(store):
    a = store.create_session("Trip to Paris")
    b = store.create_session("Paris budget 100%")
    store.create_session("Work notes")
    assert {s.id for s in store.list_sessions(match="paris")} == {a.id, b.id}
    assert [s.id for s in store.list_sessions(match="trip PARIS")] == [a.id]  # every word, any case
    assert [s.id for s in store.list_sessions(match="100%")] == [b.id]  # % is a character, not a wildcard
    assert store.list_sessions(match="1%") == []
    assert [s.id for s in store.list_sessions(match=f"#{a.id}")] == [a.id]
    assert store.count_sessions("paris") == 2 and store.count_sessions("nothing") == 0


def test_turn_counts_survive_the_migration_and_follow_deletes(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    with monkeypatch.context() as m:  # a database from before the session-list migration
        m.setattr(storage.migrations, "MIGRATIONS", [x for x in storage.migrations.MIGRATIONS if x[0] < "m004"])
        SessionStore.open(path).close()
    with sqlite3.connect(path) as old:
        sid = old.execute("INSERT INTO sessions(title, created, updated) VALUES ('long', 1, 1)").lastrowid
        old.executemany("INSERT INTO turns(session_id, created, user_text) VALUES (?, 1, ?)",
                        [(sid, f"question {i}") for i in range(3)])
        old.execute("INSERT INTO sessions(title, created, updated) VALUES ('empty', 2, 2)")
    with SessionStore.open(path) as store:
        assert "m004_session_list" in store.applied_migrations()
        assert [s.turns for s in store.list_sessions()] == [0, 3]
        store.delete_turn(store.turns(sid)[0].id)
        store.record_turn(sid, "new", "turn")
        store.record_turn(sid, "and", "another")
        assert store.get_session(sid).turns == 4
