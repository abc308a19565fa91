"""Growth benchmark: how costs grow with the work (sessions stored, turns in a session, history resumed).

    python benchmarks/bench_growth.py [--sessions 10,1000,10000] [--turns 1,1000,5000]
                                      [--resume 0,100,1000] [--conversation 200] [--tries 3]
                                      [--only tui,save,resume,conversation,prompt] [--out FILE]

One function a family of rows, each returning :class:`Row`s for the same table (add new
families beside them):

  * :func:`tui_ready_rows`: the terminal UI with N sessions stored (a fresh database built
    through :class:`SessionStore`, one turn a session, the latest resumed), started in a child
    process on the scripted stand-in model (median of ``--repeats`` starts); wall time from
    starting the child until the first frame with the input bar focused and the session list
    filled is drawn (Python start and imports included), the CPU time the child used until
    then (less sensitive to a busy machine), and its peak RSS; then the same until the resumed
    session's turns are drawn too (the app shows them right after the first frame).
  * :func:`save_turn_rows`: :meth:`SessionStore.begin_turn` and :meth:`TurnWriter.finish` of the
    N-th turn of a session (median of ``--repeats x 5``).
  * :func:`conversation_rows`: a ``--conversation``-turn conversation with the real offline
    assistant: seconds to each turn's first reply chunk against a new conversation's turn 1,
    both timed ``--tries`` times, alternating, turn by turn (the conversation put back as it
    was before each try of a turn), past the history limit included (the oldest turns are then
    dropped in steps of half of ``generator.history_tokens``); and single timings.
  * :func:`resume_rows`: the real offline assistant (``Assistant.load``, plugins on, as
    ``assistant`` loads it); a stored session of N turns resumed as the terminal UI resumes it
    (:func:`assistant.tui.resume.resume_conversation`), then a question: seconds from the resume
    to the first reply chunk, beside the same question in a fresh conversation (median of
    ``--repeats``, alternating); and the same question asked after ``Assistant.warm_up()``,
    which the terminal UI runs in the background after resuming (clock from the question).
  * :func:`prompt_rows`: a turn's prompt work with the packaged SmolLM2 generator: :meth:`Generator.fit` (to the default budget and history limit) then rendering
    and tokenizing the fitted prompt to run it, as ``Generator.stream`` does, for conversations
    of N exchanges; with the last prompt kept (as shipped) and with it forgotten before the
    second rendering (as before session 14); median of 30 calls a ``--repeats`` round.

Prints a Markdown table (for the README); with ``--out FILE`` it also writes it there.
``benchmarks/results_growth.md`` holds rows of several runs with notes on each, so a run's rows
are pasted into it rather than written over it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTION = "What is the capital of France?"
REPLY = ("The number {i} is a whole number. It comes after {j} and before {k}, and like every whole "
         "number it can be written as a sum of ones. People use it to count, to label and to measure.")


@dataclass
class Row:
    cost: str
    size: str
    time: str
    memory: str = "—"


def cpu_s() -> float:
    """CPU time (user + system) this process has used so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sizes(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def add_turns(store, session_id: int, first: int, last: int) -> None:
    """Store turns ``first``..``last - 1`` of a conversation about numbers."""
    for i in range(first, last):
        store.record_turn(session_id, f"Tell me one fact about the number {i}.",
                          REPLY.format(i=i, j=i - 1, k=i + 1))


# ----------------------------------------------------------------------------- terminal UI start


def build_sessions(db: Path, n: int) -> None:
    """A database of ``n`` sessions with one turn each, through the store's API."""
    from assistant.storage import SessionStore

    with SessionStore.open(db) as store:
        for i in range(n):
            session = store.create_session(f"Session {i + 1}: numbers")
            add_turns(store, session.id, i, i + 1)


def tui_child(db: str) -> None:
    """Run in the child: start the app on ``db`` (headless) and print a line once it is ready:
    the first time the screen has nothing left to draw (Textual runs ``call_after_refresh``
    callbacks then) with the input focused and the session list filled; then another once the
    resumed session's turns are drawn too."""
    from assistant.config import Settings
    from assistant.storage import SessionStore
    from assistant.tui import freeze_imported
    from assistant.tui.app import SynesthesiaApp
    from assistant.tui.sidebar import SessionList
    from assistant.tui.widgets import AssistantMessage, ChatInput

    def load_bot():
        # Imported here, in the app's loading thread, as `assistant` imports the real pipeline
        # (assistant.tui.__main__._load_bot): the stand-in imports assistant.pipeline (numpy, PIL).
        from tests.tui.fake_assistant import FakeAssistant

        return FakeAssistant()

    class TimedApp(SynesthesiaApp):
        CSS_PATH = ROOT / "assistant" / "tui" / "app.tcss"  # (a relative one is read beside this file)

        def on_mount(self) -> None:  # runs before SynesthesiaApp.on_mount (Textual calls both)
            self.call_after_refresh(self.check_ready)

        def check_ready(self) -> None:
            listed = self.query_one(SessionList).option_count
            if not (isinstance(self.focused, ChatInput) and listed):
                self.call_after_refresh(self.check_ready)  # after the next frame
                return
            print(json.dumps({"peak_mb": peak_mb(), "cpu_s": cpu_s(), "listed": listed}), flush=True)
            self.call_after_refresh(self.check_turns)

        def check_turns(self) -> None:
            replies = self.query(AssistantMessage)
            if self.session and self.session.turns and not (replies and all(r.markdown.children for r in replies)):
                self.call_after_refresh(self.check_turns)
                return
            print(json.dumps({"peak_mb": peak_mb(), "cpu_s": cpu_s(), "turns": len(replies)}), flush=True)
            self.exit()

    with SessionStore.open(db) as store:
        app = TimedApp(Settings(), load_bot, store, cursor_blink=False)
        freeze_imported()  # as assistant.tui.run does
        app.run(headless=True, size=(120, 40))


def start_tui(db: Path) -> list[dict]:
    """Start the app on ``db`` in a child; its two reports (ready, turns drawn), each with ``wall_s``."""
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--tui-child", str(db)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    reports = []
    for line in child.stdout:
        reports.append(dict(json.loads(line), wall_s=time.perf_counter() - t0))
    child.wait()
    if len(reports) != 2:
        raise SystemExit(f"bench_growth: the terminal UI did not start ({db})")
    return reports


def tui_ready_rows(counts: list[int], repeats: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {n: Path(tmp) / f"sessions-{n}" / "sessions.db" for n in counts}
        for n, db in dbs.items():
            t0 = time.perf_counter()
            build_sessions(db, n)
            print(f"  built {n:,} sessions in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        starts: dict[int, list[list[dict]]] = {n: [] for n in counts}
        for _ in range(repeats):  # the sizes alternate
            for n, db in dbs.items():
                starts[n].append(start_tui(db))

    def cell(reports: list[dict]) -> tuple[str, str]:
        wall = statistics.median(r["wall_s"] for r in reports)
        cpu = statistics.median(r["cpu_s"] for r in reports)
        return f"{wall:.2f} s (CPU {cpu:.2f} s)", f"{statistics.median(r['peak_mb'] for r in reports):.0f} MB"

    ready_rows, turns_rows = [], []
    for n in counts:
        ready, turns = [s[0] for s in starts[n]], [s[1] for s in starts[n]]
        ready_rows.append(Row("terminal UI ready", f"{n:,} sessions ({ready[0]['listed']} listed)", *cell(ready)))
        turns_rows.append(Row("terminal UI ready, the resumed session's turns drawn too",
                              f"{n:,} sessions ({turns[0]['turns']} turn shown)", *cell(turns)))
    return ready_rows + turns_rows


# ----------------------------------------------------------------------------- saving a turn


def save_turn_rows(lengths: list[int], repeats: int) -> list[Row]:
    from assistant.storage import SessionStore

    begin_rows, finish_rows = [], []
    with tempfile.TemporaryDirectory() as tmp, SessionStore.open(Path(tmp) / "sessions.db") as store:
        session = store.create_session("long")
        stored = 0
        for n in sorted(lengths):
            add_turns(store, session.id, stored, n - 1)  # the measured turn is the n-th
            stored = max(stored, n - 1)
            begin, finish = [], []
            for _ in range(repeats * 5):
                t0 = time.perf_counter()
                writer = store.begin_turn(session.id, "One more question?")
                t1 = time.perf_counter()
                writer.append("One more answer.")
                t2 = time.perf_counter()
                writer.finish("One more answer.")
                t3 = time.perf_counter()
                store.delete_turn(writer.turn_id)
                begin.append(t1 - t0)
                finish.append(t3 - t2)
            begin_rows.append(Row("save a turn: `begin_turn`", f"turn {n:,}", ms(statistics.median(begin))))
            finish_rows.append(Row("save a turn: `TurnWriter.finish`", f"turn {n:,}", ms(statistics.median(finish))))
    return finish_rows + begin_rows


# ----------------------------------------------------------------------------- resuming a session


def first_chunk(bot, store, session_id: int | None, *, warm: bool = False) -> tuple[float, int, int]:
    """(seconds from the resume to the first reply chunk, messages resumed, messages of them in the prompt).

    ``warm``: the question comes after ``bot.warm_up()`` (which the terminal UI runs in the
    background after a resume, while the user types); the clock starts at the question."""
    from assistant.tui.resume import resume_conversation

    t0 = time.perf_counter()
    given = resume_conversation(bot, store, session_id)
    if warm:
        bot.warm_up()
        t0 = time.perf_counter()
    chunks = bot.stream(QUESTION)
    next(chunks)
    elapsed = time.perf_counter() - t0
    chunks.close()  # the pipeline keeps what fitted, plus the question and the partial reply
    return elapsed, given, max(0, len(bot.history) - 2)


def warm_assistant():
    """The real offline assistant (plugins on, as ``assistant`` loads it), after one warm-up
    question (plugins' router, first forward pass) and a reset."""
    from assistant.config import Settings
    from assistant.pipeline import Assistant

    settings = Settings()
    settings.offline = True
    t0 = time.perf_counter()
    bot = Assistant.load(settings)
    print(f"  assistant loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    bot.ask("Hello")
    bot.reset()
    return bot


def resume_rows(lengths: list[int], repeats: int) -> list[Row]:
    from assistant.storage import SessionStore

    bot = warm_assistant()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, SessionStore.open(Path(tmp) / "sessions.db") as store:
        sessions = {}
        for n in lengths:
            sessions[n] = store.create_session(f"{n} turns").id
            add_turns(store, sessions[n], 0, n)
        fresh: list[float] = []
        timed: dict[int, list[tuple[float, int, int]]] = {n: [] for n in lengths}
        warmed: dict[int, list[float]] = {n: [] for n in lengths}
        for _ in range(repeats):
            fresh.append(first_chunk(bot, store, None)[0])
            for n in lengths:
                timed[n].append(first_chunk(bot, store, sessions[n]))
                warmed[n].append(first_chunk(bot, store, sessions[n], warm=True)[0])
        base = statistics.median(fresh)
        rows.append(Row("first reply chunk: fresh conversation", "—", f"{base:.2f} s"))
        for n in lengths:
            t = statistics.median(x[0] for x in timed[n])
            given, kept = timed[n][-1][1], timed[n][-1][2]
            rows.append(Row("first reply chunk: after resuming", f"{n:,} turns ({given} messages read, {kept} in the prompt)",
                            f"{t:.2f} s ({t - base:+.2f} s vs fresh)"))
        for n in lengths:
            t = statistics.median(warmed[n])
            rows.append(Row("first reply chunk: after resuming and `warm_up`", f"{n:,} turns",
                            f"{t:.2f} s ({t - base:+.2f} s vs fresh)"))
    return rows


TRIES = 3
"""Each turn's first chunk is timed this many times (the conversation put back as it was before
each try), alternating with as many new conversations' turn 1s; the turn counts as the median of
its tries against the median of the turn 1s timed beside them. Identical turn-1 work took
42-84 ms within one run here (session 15), so single timings minutes apart compare the machine's
moods as much as the turns."""


@contextmanager
def set_aside(bot):
    """Run a new conversation inside the block, then put the ongoing one back: its history and
    the generator's KV cache, what the next turn's timing depends on (the last turn's
    statistics, such as ``generator.reused_tokens``, are the block's afterwards)."""
    gen = bot.generator
    saved = bot.history, bot.last_reply, gen._cache, gen._cache_ids
    bot.history, bot.last_reply, gen._cache, gen._cache_ids = [], None, None, []
    try:
        bot.warm_up()  # the system prompt cached, as after start-up
        yield
    finally:
        bot.history, bot.last_reply, gen._cache, gen._cache_ids = saved


def snapshot(bot):
    """What a turn changes (the conversation and the generator's cache, contents included), to
    run the same turn again from the same state with :func:`restore`."""
    gen = bot.generator
    cache = gen._cache
    if cache is None or not hasattr(cache, "keys"):  # nothing cached, or transformers' cache
        held = copy.deepcopy(cache)
    else:  # the ONNX runtime's buffers: the turn writes into them (a context shift moves them)
        held = len(cache), [buffer[:, :, :len(cache)].copy() for buffer in cache.keys + cache.values]
    return bot.history, bot.last_reply, cache, list(gen._cache_ids), held


def restore(bot, state) -> None:
    gen = bot.generator
    bot.history, bot.last_reply, cache, ids, held = state
    gen._cache_ids = list(ids)
    if cache is None or not hasattr(cache, "keys"):
        gen._cache = copy.deepcopy(held)
        return
    n, arrays = held
    for buffer, saved in zip(cache.keys + cache.values, arrays):  # grown buffers start with what they held
        buffer[:, :, :n] = saved
    cache.length, gen._cache = n, cache


def conversation_rows(turns: int, tries: int = TRIES) -> list[Row]:
    """A ``turns``-long conversation with the real offline assistant ("Tell me one fact about
    the number N.", whole replies): time to the first reply chunk of every turn against a new
    conversation's turn 1, both timed ``tries`` times, alternating, turn by turn (see
    :data:`TRIES`), including the turns after the conversation outgrew the history limit
    (``generator.history_tokens``) or the budget; and each turn's first try against the turn 1
    timed right after it (single timings, as a user meets them)."""
    bot = warm_assistant()

    def first_chunk(question: str, finish: bool) -> float:
        t0 = time.perf_counter()
        chunks = bot.stream(question)
        next(chunks, None)
        took = time.perf_counter() - t0
        if finish:  # the reply goes into the conversation whole
            for _ in chunks:
                pass
        else:
            chunks.close()
        return took

    def new_turn_1() -> float:
        with set_aside(bot):
            return first_chunk("Tell me one fact about the number 1.", False)

    bot.reset()
    bot.warm_up()
    timed, beside, drops = [], [], []  # per turn: its tries, the turn 1s timed beside them
    for n in range(1, turns + 1):
        state, before = snapshot(bot), len(bot.history)
        mine, theirs = [], []
        for attempt in range(tries):
            if attempt:
                restore(bot, state)
            mine.append(first_chunk(f"Tell me one fact about the number {n}.", finish=attempt == tries - 1))
            theirs.append(new_turn_1())
        timed.append(mine)
        beside.append(theirs)
        if len(bot.history) < before + 2:
            drops.append(n)  # this turn dropped older turns (the history limit or the budget)
    turn_1 = statistics.median(t for ts in beside for t in ts)
    later = [statistics.median(ts) for ts in timed[1:]]
    ratios = sorted(statistics.median(ts) / statistics.median(fs) for ts, fs in zip(timed[1:], beside[1:]))
    singles = sorted(ts[0] / fs[0] for ts, fs in zip(timed[1:], beside[1:]))
    on_drops = sorted(statistics.median(timed[n - 1]) for n in drops)

    def spread(xs: list[float], unit: str) -> str:
        xs = sorted(xs)
        cut = xs[int(0.9 * (len(xs) - 1))]
        return (f"{statistics.median(xs):.3f} / {cut:.3f} / {xs[-1]:.3f} s" if unit == "s" else
                f"{statistics.median(xs):.2f}x / {cut:.2f}x / {xs[-1]:.2f}x")

    size = f"{turns} turns ({len(drops)} of them dropped older turns, the first at turn {drops[0] if drops else '-'})"
    paired = f"{size}; median of {tries} tries against the median of {tries} new conversations' turn 1 timed beside them"
    return [
        Row("first reply chunk: turn 1 of a new conversation", f"{tries * turns} timed during the run "
            f"({min(min(fs) for fs in beside):.3f}-{max(max(fs) for fs in beside):.3f} s), median", f"{turn_1:.3f} s"),
        Row("first reply chunk: turns 2 to the last, median / 90th percentile / worst", f"{size}; median of {tries} tries",
            spread(later, "s")),
        Row("first reply chunk: the turns that dropped older turns, median / worst", size,
            f"{on_drops[len(on_drops) // 2]:.3f} / {on_drops[-1]:.3f} s" if on_drops else "—"),
        Row("first reply chunk against turn 1: median / 90th percentile / worst ratio", paired, spread(ratios, "x")),
        Row("first reply chunk: turns over 1.5x turn 1's", paired, f"{sum(r > 1.5 for r in ratios)} of {turns - 1}"),
        Row("first reply chunk against turn 1, single timings: median / 90th percentile / worst ratio",
            f"{size}; each turn's first try against the turn 1 timed right after it", spread(singles, "x")),
        Row("first reply chunk, single timings: turns over 1.5x turn 1's",
            f"{size}; each turn's first try against the turn 1 timed right after it", f"{sum(r > 1.5 for r in singles)} of {turns - 1}"),
    ]


def prompt_rows(exchanges: list[int], repeats: int) -> list[Row]:
    from assistant.config import Settings
    from models.generator import Generator

    settings = Settings().generator
    budget = settings.context_tokens - settings.max_new_tokens  # as Assistant.budget() for this model
    gen = Generator.load(device="cpu", runtime="onnx")  # the packaged SmolLM2, as the assistant loads it
    rows = []
    for n in exchanges:
        messages = [{"role": "system", "content": settings.system_prompt}]
        for i in range(1, n + 1):
            messages += [{"role": "user", "content": f"Tell me one fact about the number {i}."},
                         {"role": "assistant", "content": f"The number {i} is a fundamental element in mathematics, and "
                          "its properties are rooted in the concept of prime numbers and divisibility."}]
        messages.append({"role": "user", "content": f"Tell me one fact about the number {n + 1}."})

        def turn(kept: bool) -> float:
            gen._rendered, gen._prompt = (None, ""), (None, [])  # a new turn: nothing from the last one
            t0 = time.perf_counter()
            fitted = gen.fit(messages, budget, history=settings.history_tokens)
            if not kept:
                gen._rendered, gen._prompt = (None, ""), (None, [])
            gen._prompt_ids(gen.render(fitted))
            return time.perf_counter() - t0

        timed = {kept: [statistics.median(turn(kept) for _ in range(30)) for _ in range(repeats)] for kept in (False, True)}
        fitted = gen.fit(messages, budget, history=settings.history_tokens)
        size = f"{n} earlier exchange{'s' if n != 1 else ''} ({gen.count_tokens(fitted)} tokens fitted)"
        rows.append(Row("a turn's prompt: fit, render, tokenize", size,
                        f"{ms(statistics.median(timed[True]))} (forgetting the last prompt: {ms(statistics.median(timed[False]))})"))
    return rows


# ----------------------------------------------------------------------------- main


def table(rows: list[Row]) -> str:
    lines = ["| cost | size | time | peak memory |", "|---|---|---|---|"]
    lines += [f"| {r.cost} | {r.size} | {r.time} | {r.memory} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="10,1000,10000", help="session counts for the terminal UI start")
    ap.add_argument("--turns", default="1,1000,5000", help="session lengths for saving a turn")
    ap.add_argument("--resume", default="0,100,1000", help="session lengths for resuming")
    ap.add_argument("--conversation", type=int, default=200, help="turns of the long conversation")
    ap.add_argument("--tries", type=int, default=TRIES, help="timings of each turn of the long conversation (and of turn 1 beside it)")
    ap.add_argument("--exchanges", default="1,10,60", help="conversation lengths for a turn's prompt work")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="tui,save,resume", help="which families of rows to measure")
    ap.add_argument("--out", help="also write the table to this file (results_growth.md gathers several runs: paste rows there)")
    ap.add_argument("--tui-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tui_child:
        tui_child(args.tui_child)
        return

    import torch

    families = {
        "tui": lambda: tui_ready_rows(sizes(args.sessions), args.repeats),
        "save": lambda: save_turn_rows(sizes(args.turns), args.repeats),
        "resume": lambda: resume_rows(sizes(args.resume), args.repeats),
        "conversation": lambda: conversation_rows(args.conversation, args.tries),
        "prompt": lambda: prompt_rows(sizes(args.exchanges), args.repeats),
    }
    rows: list[Row] = []
    for name in args.only.split(","):
        print(f"measuring {name}…", file=sys.stderr)
        rows += families[name.strip()]()
    load = os.getloadavg()[0]  # a busy machine stretches wall times (the UI rows also give CPU time)
    head = (f"Machine: {os.cpu_count()} CPU threads, torch {torch.__version__}, load average {load:.1f} at the end, "
            f"medians of {args.repeats} (saving a turn: {args.repeats * 5}).\n\n")
    print(head + table(rows))
    if args.out:
        Path(args.out).write_text(head + table(rows), encoding="utf-8")


if __name__ == "__main__":
    main()
