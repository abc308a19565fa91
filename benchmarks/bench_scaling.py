"""Scaling benchmark: decode speed and memory as the generator grows, per runtime.

    python benchmarks/bench_scaling.py [--configs 135m,360m,1.7b] [--runtimes torch,onnx] \\
        [--max-new-tokens 64] [--rounds 2] [--dir ~/.cache/synesthesia-bench/scaling] [--write]

SmolLM2's architecture (Llama, tied embeddings, vocab 49152) at the shapes of SmolLM2-135M,
-360M and -1.7B, with random weights: the output is gibberish, the cost is the real one. Each
shape is saved once as a local Hugging Face folder (safetensors, with SmolLM2's tokenizer and
chat template copied from the converted default model) under ``--dir``, outside the repository,
and loaded through the product's path, ``Generator.load(folder, device="cpu", runtime=R)``.
Every shape and runtime runs in its own process (the worker of bench_speed.py; the runtimes of a
shape alternate round by round), so the peak RSS
is that run's own. Greedy decoding of random weights rarely hits end-of-sequence; if it does, the
tokens actually produced are reported and tokens/s stays comparable.
``--write`` replaces this script's section of benchmarks/results_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed import RESULTS, Worker, fmt, machine_line, median, publish  # noqa: E402

SHAPES = {
    # name: hidden, layers, heads, kv heads, ffn, rope theta (as in each SmolLM2 model's config)
    "135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                 intermediate_size=1536, rope_theta=100000.0),
    "360m": dict(hidden_size=960, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                 intermediate_size=2560, rope_theta=100000.0),
    "1.7b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                 intermediate_size=8192, rope_theta=130000.0),
}
VOCAB = 49152
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper who finds a talking fish."}]
SMOLLM2_FOLDER = Path.home() / ".cache" / "synesthesia" / "generator" / "smollm2-135m-instruct-q4_1"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")


def parameters(shape: dict) -> int:
    h, f, n = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    kv = shape["num_key_value_heads"] * (h // shape["num_attention_heads"])
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * f + 2 * h  # q, o; k, v; gate, up, down; two norms
    return VOCAB * h + n * per_layer + h  # tied embeddings count once


def build(name: str, folder: Path) -> None:
    """Save SmolLM2's architecture at ``name``'s shape with random weights (in this process)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(SHAPES[name])
    theta = shape.pop("rope_theta")
    config = LlamaConfig.from_pretrained(SMOLLM2_FOLDER)
    for key, value in shape.items():
        setattr(config, key, value)
    config.head_dim = shape["hidden_size"] // shape["num_attention_heads"]
    config.vocab_size = VOCAB
    config.tie_word_embeddings = True
    if isinstance(getattr(config, "rope_parameters", None), dict):
        config.rope_parameters = {**config.rope_parameters, "rope_theta": theta}
    else:
        config.rope_theta = theta
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).float().eval()
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for file in TOKENIZER_FILES:
        if (SMOLLM2_FOLDER / file).is_file():
            shutil.copy2(SMOLLM2_FOLDER / file, tmp / file)
    (tmp / "scaling.json").write_text(json.dumps({"shape": name, **SHAPES[name], "random_weights": True}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def ensure_folder(name: str, root: Path) -> Path:
    folder = root / f"smollm2-arch-{name}-random"
    stamp = folder / "scaling.json"
    if stamp.is_file() and any(folder.glob("*.safetensors")):
        try:
            if json.loads(stamp.read_text()).get("shape") == name:
                return folder
        except ValueError:
            pass
    if not (SMOLLM2_FOLDER / "tokenizer.json").is_file():
        sys.exit(f"bench_scaling: {SMOLLM2_FOLDER} is missing; run `assistant ask hi` once to convert SmolLM2")
    print(f"building {name} (random weights) in {folder} ...", flush=True)
    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    # A child process, so that this one never holds a model.
    subprocess.run([sys.executable, __file__, "--build", name, str(folder)], check=True)
    print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def measure(folder: Path, runtimes: list[str], rounds: int, max_new: int) -> dict[str, dict | str]:
    """Every runtime on one shape, each in its own process, decode rounds alternating between them
    (so a burst of other work on the machine hits all runtimes alike). runtime -> stats, or the
    error message when it failed."""
    python = str(ROOT / ".venv" / "bin" / "python")
    out: dict[str, dict | str] = {}
    workers: dict[str, Worker] = {}
    first_load: dict[str, float] = {}
    try:
        for runtime in runtimes:
            label = f"{folder.name} ({runtime})"
            try:
                if runtime != "torch":  # one unmeasured load first, so what it converts and caches (the onnx graph) exists
                    prep = Worker(python, "assistant", str(folder), runtime, label=label + " first load")
                    first_load[runtime] = prep.info["load_s"]
                    prep.close()
                workers[runtime] = Worker(python, "assistant", str(folder), runtime, label=label)
                workers[runtime].call(op="decode", messages=PROMPT, max_new_tokens=4)  # warm-up
            except Exception as e:  # one runtime failing on one shape is a result, not a crash
                out[runtime] = str(e).splitlines()[0][:120]
                workers.pop(runtime, None)
        runs: dict[str, list[dict]] = {r: [] for r in workers}
        for i in range(rounds):
            for runtime in (list(workers) if i % 2 == 0 else list(reversed(workers))):
                res = workers[runtime].call(op="decode", messages=PROMPT, max_new_tokens=max_new)
                runs[runtime].append(res)
                print(f"  round {i + 1} {runtime:10s} ttft {res['ttft_s']:.3f} s  {res['n']} tokens  "
                      f"{fmt(res['tps'])} tok/s", flush=True)
    finally:
        for w in workers.values():
            w.close()
    for runtime, w in workers.items():
        rs = runs[runtime]
        out[runtime] = {"first_load_s": first_load.get(runtime, float("nan")), "load_s": w.info["load_s"],
                        "runtime": w.info["runtime"], "ttft_s": median([r["ttft_s"] for r in rs]),
                        "tps": median([r["tps"] for r in rs]), "n": statistics.median([r["n"] for r in rs]),
                        "peak_mb": w.peak_mb}
    return {r: out[r] for r in runtimes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="135m,360m,1.7b", help=f"comma-separated, from {','.join(SHAPES)}")
    ap.add_argument("--runtimes", default="torch,onnx", help="comma-separated generator runtimes (default torch,onnx)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="measured decode rounds per runtime, after a warm-up (default 3)")
    ap.add_argument("--dir", default=str(Path.home() / ".cache" / "synesthesia-bench" / "scaling"),
                    help="where the random-weight folders are saved (outside the repository)")
    ap.add_argument("--write", action="store_true", help=f"replace this script's section of {RESULTS.relative_to(ROOT)}")
    ap.add_argument("--build", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        build(args.build[0], Path(args.build[1]))
        return

    configs = [c.strip().lower() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in SHAPES]
    if unknown:
        sys.exit(f"bench_scaling: unknown config {unknown}; choose from {', '.join(SHAPES)}")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    header = machine_line()
    print(header, flush=True)
    root = Path(args.dir).expanduser()
    rows = []
    for name in configs:
        folder = ensure_folder(name, root)
        print(f"{name}: {', '.join(runtimes)} ...", flush=True)
        base = None
        for runtime, r in measure(folder, runtimes, args.rounds, args.max_new_tokens).items():
            if isinstance(r, str):
                print(f"  {runtime} failed: {r}", flush=True)
                rows.append(f"| {name} | {parameters(SHAPES[name]) / 1e6:.0f}M | {runtime} | failed: {r} | | | | | | |")
                continue
            base = base if base is not None else (r["tps"] if runtime == runtimes[0] else None)
            vs = f"{r['tps'] / base:.2f}x" if base else "n/a"
            print(f"  {runtime}: load {r['load_s']:.1f} s, ttft {r['ttft_s']:.3f} s, {fmt(r['tps'])} tok/s "
                  f"({r['n']:.0f} tokens), peak {r['peak_mb']:.0f} MB", flush=True)
            rows.append(f"| {name} | {parameters(SHAPES[name]) / 1e6:.0f}M | {r['runtime']} | {fmt(r['first_load_s'])} | "
                        f"{r['load_s']:.1f} | "
                        f"{r['ttft_s']:.3f} | {fmt(r['tps'])} | {vs} | {r['n']:.0f} | {r['peak_mb']:.0f} |")
    table = ["| shape | parameters | runtime | first load, s | load, s | time to first token, s | decode, tokens/s | "
             f"decode vs {runtimes[0]} | tokens | peak RSS, MB |", "|---" * 10 + "|", *rows]
    notes = [
        f"Machine: {header}.",
        "SmolLM2's architecture at each model's shape (hidden/layers/heads/kv heads/ffn: 135m 576/30/9/3/1536, "
        "360m 960/32/15/5/2560, 1.7b 2048/24/32/32/8192; vocab 49152, tied embeddings), random weights saved "
        "as float32 safetensors, loaded with `Generator.load(folder, device=\"cpu\", runtime=R)`.",
        f"Load average at the end of the run: {os.getloadavg()[0]:.2f} (2 cores shared with other work).",
        f"Greedy, the story prompt, up to {args.max_new_tokens} new tokens; {args.rounds} measured rounds "
        "after a warm-up, alternating between the runtimes of a shape, median; no KV reuse between rounds; "
        "each shape and runtime in its own fresh process, peak RSS = that process's VmHWM (load included). Runtimes other than torch are loaded once before, "
        "unmeasured, so that what they convert and cache (the onnx graph) exists: 'first load' is that load.",
    ]
    publish("bench_scaling", "Scaling with model size (`benchmarks/bench_scaling.py`)", table, notes, args.write)


if __name__ == "__main__":
    main()
