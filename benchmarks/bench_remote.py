"""What the remote generator route costs: the same question answered by the local generator in
this process and by `assistant serve` in another process on loopback (``generator.backend =
"openai"``), round by round, alternating which goes first.

    python benchmarks/bench_remote.py [--rounds 7] [--max-tokens 32]

The server is the real `assistant serve` command (`--no-plugins`, a free 127.0.0.1 port), with
the same default generator (SmolLM2-135M, greedy), so the difference is the route: HTTP,
JSON, server-sent events, the server's queue and its pipeline. Each turn starts a fresh
conversation the way the server starts each request (keys and values of an equal prefix stay
cached, on both sides). It stops by itself
(the server is stopped at the end) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

COUNTRIES = ["France", "Germany", "Italy", "Spain", "Japan", "Canada", "Egypt", "Peru", "Kenya", "Norway"]
"""A new question every round: a repeated one would be read from the server's cache whole."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_turn(bot, question: str) -> tuple[float, float, str]:
    """(seconds to the first streamed chunk, seconds to the end, the reply) of one fresh turn,
    started as the server starts each request (the generator's cache kept, see fresh_conversation),
    so that both generators read the same prompt tokens anew."""
    from assistant.serve.turns import fresh_conversation

    fresh_conversation(bot, [])
    t0 = time.perf_counter()
    first = None
    for _ in bot.stream(question):
        if first is None:
            first = time.perf_counter() - t0
    return first or float("nan"), time.perf_counter() - t0, bot.last_reply.text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()

    import tempfile

    import httpx

    from assistant.config import Settings
    from assistant.pipeline import Assistant
    from assistant.serve.background import wait_ready

    port = free_port()
    env = {**os.environ, "SYNESTHESIA_GENERATOR__MAX_NEW_TOKENS": str(args.max_tokens), "PYTHONPATH": str(ROOT),
           "SYNESTHESIA_CONFIG_DIR": tempfile.mkdtemp()}  # the defaults, whatever the user's config says
    server = subprocess.Popen([sys.executable, "-m", "assistant.cli", "--no-plugins", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        deadline = time.monotonic() + 60
        while True:  # the port opens before the models load
            try:
                wait_ready(url, timeout=600)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        print(f"server ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        settings = Settings()
        settings.plugins.enabled = False
        settings.generator.max_new_tokens = args.max_tokens
        local = Assistant.load(settings, plugins=False)
        remote_settings = settings.model_copy(deep=True)
        remote_settings.generator.backend, remote_settings.generator.base_url = "openai", f"{url}/v1"
        remote = Assistant.load(remote_settings, plugins=False)

        timed_turn(local, "Hello."), timed_turn(remote, "Hello.")  # warm-up, unmeasured
        rows = {"local": [], "remote": []}
        same = 0
        for i in range(args.rounds):
            question = f"What is the capital of {COUNTRIES[i % len(COUNTRIES)]}?"
            replies = {}
            for name, bot in ((("local", local), ("remote", remote)) if i % 2 == 0 else (("remote", remote), ("local", local))):
                first, total, replies[name] = timed_turn(bot, question)
                rows[name].append((first, total))
            same += replies["local"] == replies["remote"]
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()

    def median(name: str, i: int) -> float:
        return statistics.median(r[i] for r in rows[name])

    extra_first = statistics.median(r[0] - l[0] for l, r in zip(rows["local"], rows["remote"]))
    extra_total = statistics.median(r[1] - l[1] for l, r in zip(rows["local"], rows["remote"]))
    load = os.getloadavg()[0]
    print(f"\n'What is the capital of X?', greedy, max_tokens {args.max_tokens}, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}; the same reply both ways in {same} of {args.rounds} rounds\n")
    print("| route | first token (median) | whole reply (median) |\n| --- | --- | --- |")
    print(f"| local generator, in-process | {median('local', 0):.3f} s | {median('local', 1):.3f} s |")
    print(f"| remote: `assistant serve` on loopback, another process | {median('remote', 0):.3f} s | "
          f"{median('remote', 1):.3f} s |")
    print(f"| extra for the remote route (median of the round-by-round differences) | {extra_first * 1000:+.0f} ms | "
          f"{extra_total * 1000:+.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
