"""Serving benchmark: `assistant serve` on loopback against the same Assistant called in-process.

    python benchmarks/bench_serve.py [--rounds 5] [--clients 4] [--seconds 30] [--max-tokens 32]

One process loads the real offline stack once, then:
  * latency: the same question ``--rounds`` times through ``Assistant.ask`` and through the
    server (a whole completion, and the first streamed token), alternating;
  * load: ``--clients`` concurrent openai clients for ``--seconds`` (each stops after its
    current request; a request over 120 s counts as an error): requests served, p50/p95
    latency, errors by status, memory (RSS) before and after, peak;
  * memory over a run: RSS after the warm-up and after every request of the load phase.
Loopback only (127.0.0.1, a free port); it stops by itself. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTION = "What is the capital of France?"


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else (values or [float("nan")])[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()

    import openai
    from openai import OpenAI

    from assistant.config import Settings
    from assistant.serve.cli import load_for_serving
    from assistant.serve.background import serving

    settings = Settings()
    settings.generator.max_new_tokens = args.max_tokens
    t0 = time.perf_counter()
    bot = load_for_serving(settings)
    print(f"loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    messages = [{"role": "user", "content": QUESTION}]
    rows: list[tuple[str, str]] = []
    with serving(lambda: bot) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120)
        client.chat.completions.create(model="m", messages=messages)  # warm-up
        direct, served, first, overhead = [], [], [], []
        for _ in range(args.rounds):
            bot.reset()
            t = time.perf_counter()
            bot.ask(QUESTION)
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = client.chat.completions.create(model="m", messages=messages)
            served.append(time.perf_counter() - t)
            overhead.append(served[-1] - r.model_extra["synesthesia"]["timings"]["total"])
            t = time.perf_counter()
            with client.chat.completions.create(model="m", messages=messages, stream=True) as stream:
                for chunk in stream:  # leaving the block closes the stream: the server stops generating
                    if chunk.choices and chunk.choices[0].delta.content:
                        first.append(time.perf_counter() - t)
                        break
        rows += [("`Assistant.ask`, in-process (median)", f"{statistics.median(direct):.2f} s"),
                 ("chat completion through the server (median)", f"{statistics.median(served):.2f} s"),
                 ("server overhead: request wall time minus the pipeline's own total (median)",
                  f"{statistics.median(overhead) * 1000:.0f} ms"),
                 ("first streamed token through the server (median)", f"{statistics.median(first):.2f} s")]

        rss_before = rss_mb()
        latencies: list[float] = []
        statuses: Counter = Counter()
        rss_trace: list[float] = []
        stop_at = time.monotonic() + args.seconds
        lock = threading.Lock()

        def client_loop(i: int) -> None:
            c = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120)
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                try:
                    c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"{QUESTION} ({i})"}])
                    status = 200
                except openai.APIStatusError as e:
                    status = e.status_code
                except openai.APIError as e:
                    status = type(e).__name__
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(time.perf_counter() - t)
                    rss_trace.append(rss_mb())

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        served_n = statuses.get(200, 0)
        rows += [(f"{args.clients} clients for {args.seconds:.0f} s: served", f"{served_n} ({served_n / wall:.2f}/s)"),
                 ("latency p50 / p95 under that load", f"{pct(latencies, 50):.2f} s / {pct(latencies, 95):.2f} s"),
                 ("errors by status", ", ".join(f"{k}: {v}" for k, v in statuses.items() if k != 200) or "none"),
                 ("RSS before / after the load / peak", f"{rss_before:.0f} / {rss_mb():.0f} / {rss_mb('VmHWM'):.0f} MB"),
                 ("RSS over the load: first request / last request",
                  f"{rss_trace[0]:.0f} / {rss_trace[-1]:.0f} MB" if rss_trace else "-")]
    print(f"\n{QUESTION!r}, max_tokens {args.max_tokens}, {os.cpu_count()} CPUs\n")
    print("| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
