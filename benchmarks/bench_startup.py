"""Start-up benchmark: what one `assistant ask` process costs, per kind of turn.

    python benchmarks/bench_startup.py [--runs 5] [--kinds text,image,audio] [--baseline DIR] [--out FILE]

Runs the real command as a child process (`python -m assistant.cli ask ...`, plugins as
configured, warm caches) several times per kind, alternating kinds, and reports the median
wall time, CPU time and peak resident memory of the child (``ru_maxrss`` from ``wait4``):

  * text:  ``ask "What is the capital of France?"``
  * image: ``ask "What is in this photo?" --image tests/data/cat.jpg``
  * audio: ``ask --audio question.wav`` (the question spoken by the default voice once, at start)

``--baseline DIR`` also runs another source tree of the project (e.g. an earlier commit
unpacked with ``git archive REV | tar -x -C DIR``) with the same Python, alternating with this
one run by run, so that both see the same machine load; the table then has a row per tree.
Prints a Markdown table; ``--out`` also writes it to a file. A run that fails is reported
with its stderr and stops the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What is the capital of France?"
IMAGE_QUESTION = "What is in this photo?"
CAT = ROOT / "tests" / "data" / "cat.jpg"


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "assistant.cli", *args]


def run_measured(argv: list[str], cwd: Path = ROOT) -> tuple[float, float, float, str]:
    """(wall s, peak RSS MB, CPU s, stdout) of one child, run under a tiny wrapper that reports
    the child's own peak RSS and CPU time (wait4), so they do not mix with earlier children's."""
    wrapper = (
        "import os, sys, time, json\n"
        "t = time.perf_counter()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n"
        "_, status, usage = os.wait4(pid, 0)\n"
        "sys.stderr.write('\\nBENCH ' + json.dumps([time.perf_counter() - t, usage.ru_maxrss, "
        "os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime]) + '\\n')\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", wrapper, *argv[1:]], cwd=cwd, env=env, capture_output=True)
    err = proc.stderr.decode()
    line = [l for l in err.splitlines() if l.startswith("BENCH ")]
    if not line:
        raise SystemExit(f"bench_startup: wrapper failed:\n{err[-2000:]}")
    wall, maxrss_kb, code, cpu = json.loads(line[-1][6:])
    if code != 0:
        raise SystemExit(f"bench_startup: {' '.join(argv[1:])} failed ({code}):\n{err[-2000:]}")
    return wall, maxrss_kb / 1024, cpu, proc.stdout.decode()


def spoken_question(folder: Path) -> Path:
    path = folder / "question.wav"
    p = subprocess.run(command("say", QUESTION, "-o", str(path)), cwd=ROOT, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"bench_startup: could not synthesize the spoken question:\n{p.stderr.decode()}")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per kind (median reported)")
    ap.add_argument("--kinds", default="text,image,audio")
    ap.add_argument("--label", default="", help="a name for this tree's rows (default: this tree)")
    ap.add_argument("--baseline", metavar="DIR", help="another source tree to run alternately (rows 'baseline')")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args(argv)

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    trees = {args.label or "this tree": ROOT}
    if args.baseline:
        trees = {"baseline": Path(args.baseline).resolve(), **trees}
    walls, peaks, cpus = ({(t, k): [] for t in trees for k in kinds} for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        argvs = {
            "text": command("ask", QUESTION),
            "image": command("ask", IMAGE_QUESTION, "--image", str(CAT)),
        }
        if "audio" in kinds:
            argvs["audio"] = command("ask", "--audio", str(spoken_question(Path(tmp))))
        for tree in trees.values():
            run_measured(argvs[kinds[0]], tree)  # warm the page cache and the converted-model cache
        for i in range(args.runs):
            for kind in kinds:
                for name, tree in trees.items():
                    wall, peak, cpu, out = run_measured(argvs[kind], tree)
                    walls[name, kind].append(wall)
                    peaks[name, kind].append(peak)
                    cpus[name, kind].append(cpu)
                    print(f"run {i + 1} {name:>10s} {kind:5s} {wall:6.2f} s {cpu:6.2f} cpu-s {peak:7.0f} MB  "
                          f"{out.strip()[:50]!r}", file=sys.stderr, flush=True)

    load = os.getloadavg()[0]
    lines = [f"### `assistant ask` start-up (medians of {args.runs} runs{', trees alternating' if args.baseline else ''})\n",
             "| turn | tree | wall s | CPU s (user+sys) | peak RSS MB | all wall s |", "|---|---|---:|---:|---:|---|"]
    for kind in kinds:
        for name in trees:
            lines.append(f"| {kind} | {name} | {statistics.median(walls[name, kind]):.2f} | "
                         f"{statistics.median(cpus[name, kind]):.2f} | {statistics.median(peaks[name, kind]):.0f} | "
                         f"{', '.join(f'{w:.2f}' for w in walls[name, kind])} |")
    lines.append(f"\n{os.cpu_count()} CPUs, load average at the end {load:.1f} (wall time grows with other work; CPU time less so)")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
