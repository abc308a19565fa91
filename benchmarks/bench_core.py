"""Core benchmark: load times, time to first token, decode speed and peak memory.

    python benchmarks/bench_core.py [--turns 3] [--max-new-tokens 64] [--out benchmarks/results_core.md]

Measures, on whatever machine runs it (threads = all cores):
  * cold load: the generator (its 4-bit graph built from the GGUF into an empty cache) plus the image encoder
  * warm load: the same from the cache
  * a text turn and an image turn: time to first token, decode tokens/s, peak RSS
  * the same GGUF through llama.cpp (llama-cpp-python, optional `bench` extra) and the ratio
Prints a Markdown table (pasted into the README) and writes it to --out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTION = "Explain in three sentences why the sky is blue."
IMAGE_QUESTION = "What is in this photo? Describe it in two sentences."
CAT = ROOT / "tests" / "data" / "cat.jpg"


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak-RSS counter
    except OSError:
        pass


def peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def turn_stats(bot, question, images, turns):
    ttft, tps, peak = [], [], []
    for _ in range(turns):
        bot.reset()
        reset_peak()
        r = bot.ask(question, images=images)
        n = bot.generator.generated_tokens
        decode_s = r.timings["generate"] - r.timings["first_token"]
        ttft.append(r.timings["first_token"] + r.timings.get("image", 0.0) + r.timings.get("fuse", 0.0))
        tps.append((n - 1) / decode_s if decode_s > 0 and n > 1 else float("nan"))
        peak.append(peak_mb())
    return statistics.median(ttft), statistics.median(tps), max(peak), n


def llama_cpp_stats(gguf: Path, system: str, question: str, max_new: int, turns: int):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    t0 = time.perf_counter()
    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=os.cpu_count(), verbose=False)
    load = time.perf_counter() - t0
    ttft, tps = [], []
    for _ in range(turns):
        llm.reset()  # no prompt reuse between turns, as on the transformers side
        t0 = time.perf_counter()
        first, n = None, 0
        stream = llm.create_chat_completion(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            max_tokens=max_new, temperature=0.0, stream=True)
        for part in stream:
            if part["choices"][0]["delta"].get("content"):
                n += 1
                if first is None:
                    first = time.perf_counter() - t0
        total = time.perf_counter() - t0
        ttft.append(first)
        tps.append((n - 1) / (total - first) if n > 1 else float("nan"))
    return load, statistics.median(ttft), statistics.median(tps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results_core.md"))
    args = ap.parse_args()

    import torch

    from assistant.config import Settings
    from assistant.pipeline import Assistant
    from models.generator import Generator, smollm2_gguf_path
    from models.image import ImageEncoder

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        Generator.load(cache_dir=cache)
        ImageEncoder.load()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        gen = Generator.load(cache_dir=cache)
        enc = ImageEncoder.load()
        warm = time.perf_counter() - t0
    settings = Settings()
    settings.generator.max_new_tokens = args.max_new_tokens
    bot = Assistant(settings, generator=gen, image_encoder=enc)
    bot.ask("Hello")  # warm-up
    text = turn_stats(bot, QUESTION, [], args.turns)
    image = turn_stats(bot, IMAGE_QUESTION, [CAT], args.turns)
    rows.append(("cold load (generator graph built from the GGUF + image encoder)", f"{cold:.1f} s"))
    rows.append(("warm load (cached graph + image encoder)", f"{warm:.2f} s"))
    rows.append(("text turn: time to first token", f"{text[0]:.2f} s"))
    rows.append(("text turn: decode", f"{text[1]:.1f} tokens/s"))
    rows.append(("text turn: peak RSS (image encoder loaded too)", f"{text[2]:.0f} MB"))
    rows.append(("image turn: time to first token (incl. image encoder)", f"{image[0]:.2f} s"))
    rows.append(("image turn: decode", f"{image[1]:.1f} tokens/s"))
    rows.append(("image turn: peak RSS", f"{image[2]:.0f} MB"))
    lc = llama_cpp_stats(smollm2_gguf_path(), settings.generator.system_prompt, QUESTION, args.max_new_tokens, args.turns)
    if lc:
        rows.append(("llama.cpp (same GGUF): load", f"{lc[0]:.2f} s"))
        rows.append(("llama.cpp: time to first token", f"{lc[1]:.2f} s"))
        rows.append(("llama.cpp: decode", f"{lc[2]:.1f} tokens/s"))
        rows.append(("decode speed, generator / llama.cpp", f"{text[1] / lc[2]:.2f}x"))
        rows.append(("time to first token, generator / llama.cpp", f"{text[0] / lc[1]:.2f}x"))
    else:
        rows.append(("llama.cpp", "not installed (pip install 'synesthesia[bench]')"))
    head = (f"Machine: {os.cpu_count()} CPU threads, torch {torch.__version__}, "
            f"{args.turns} turns each (median), up to {args.max_new_tokens} new tokens, greedy.\n\n")
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    print(head + table)
    Path(args.out).write_text(head + table, encoding="utf-8")


if __name__ == "__main__":
    main()
