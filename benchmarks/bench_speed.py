"""Side-by-side speed benchmark: the assistant's generator against llama.cpp on the same GGUF.

    LLAMA_CPP_PYTHON=/path/to/venv/bin/python python benchmarks/bench_speed.py \\
        [--runtimes torch,onnx] [--rounds 5] [--ask-rounds 3] [--write]

What it measures, alternating the contenders round by round and reporting medians:
  * decode tokens/s and time to first token: greedy, up to 128 new tokens of a story, the same
    prompt tokens (SmolLM2's chat template, rendered by the assistant's tokenizer) fed to both;
    the assistant goes through ``Generator.load("smollm2", device="cpu", runtime=R)`` and
    ``Generator.stream``; llama.cpp through llama-cpp-python's ``Llama.generate``;
  * peak memory (VmHWM) of each decode worker process;
  * one short question as a whole process, warm caches: ``assistant ask "..."`` with
    ``SYNESTHESIA_GENERATOR__RUNTIME=R`` against a six-line llama-cpp-python script: wall time
    and peak RSS (``os.wait4``'s ru_maxrss of that child);
  * greedy output token for token on ten prompts: how many match fully and where the first
    divergence is.

Each contender runs in its own worker process (this file with ``--worker``). llama-cpp-python is
a benchmark-only extra that builds from source, so it lives in a separate virtual environment
named by ``LLAMA_CPP_PYTHON`` (see docs in benchmarks/results_speed.md for the build recipe).
``--write`` replaces this script's section of benchmarks/results_speed.md.

This module imports only the standard library at the top: the llama.cpp worker runs it under a
Python that has llama-cpp-python but not this project.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_core import peak_mb  # this process's VmHWM in MB (bench_core imports only the standard library at the top)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results_speed.md"
THREADS = os.cpu_count() or 1

STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper who finds a talking fish."}]
QUESTION = "What is the capital of France?"
COMPARE_PROMPTS = [
    "What is the capital of France?",
    "Explain in three sentences why the sky is blue.",
    "Write a haiku about autumn leaves.",
    "List three uses of a paperclip.",
    "What is 12 times 7?",
    "Give me a tip for learning a new language.",
    "Describe a cat to someone who has never seen one.",
    "What does a bicycle have that a unicycle does not?",
    "Translate 'good morning' into French and Spanish.",
    "Tell me one fact about the number 12.",
]

# The whole-process llama.cpp contender: what a user of llama-cpp-python would write.
LLAMA_SCRIPT = """\
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=2048, n_threads=int(sys.argv[2]), verbose=False)
messages = [{"role": "system", "content": sys.argv[3]}, {"role": "user", "content": sys.argv[4]}]
out = llm.create_chat_completion(messages=messages, max_tokens=int(sys.argv[5]), temperature=0.0)
print(out["choices"][0]["message"]["content"])
"""


# ---------------------------------------------------------------------------- small helpers


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if a != a or b != b or b == 0 else f"{a / b:.2f}x"


def llama_python() -> str:
    """The Python interpreter that has llama-cpp-python, from LLAMA_CPP_PYTHON; exits if missing."""
    python = os.environ.get("LLAMA_CPP_PYTHON", "")
    if not python:
        sys.exit("bench_speed: set LLAMA_CPP_PYTHON to a Python with llama-cpp-python installed "
                 "(e.g. LLAMA_CPP_PYTHON=/work/llamacpp-venv/bin/python); see benchmarks/results_speed.md")
    probe = subprocess.run([python, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(f"bench_speed: {python} cannot import llama_cpp (LLAMA_CPP_PYTHON); "
                 "install llama-cpp-python there (benchmarks/results_speed.md has the build recipe)")
    return python


def replace_section(path: Path, name: str, body: str) -> None:
    """Write ``body`` between ``<!-- name -->`` markers in ``path``, keeping the other sections."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Speed benchmarks\n\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def publish(section: str, title: str, table: list[str], notes: list[str], write: bool, tail: str = "") -> None:
    """Print a results section (a table and its notes); with ``write``, also put it in RESULTS."""
    body = f"## {title}\n\n" + "\n".join(table) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    body += f"\n{tail}" if tail else ""
    print()
    print(body)
    if write:
        replace_section(RESULTS, section, body)
        print(f"written to {RESULTS}")


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, {platform.machine()}, "
            f"{THREADS} CPU threads, load average before the run {load[0]:.2f}")


# ---------------------------------------------------------------------------- workers


class Worker:
    """A contender in its own process, spoken to with one JSON object a line."""

    def __init__(self, python: str, kind: str, *args: str, label: str):
        self.label = label
        cmd = [python, str(Path(__file__).resolve()), "--worker", kind, *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        self.peak_mb = 0.0
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label} worker died (exit {self.proc.wait()}); see its stderr above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.label} worker: {reply['error']}")
        self.peak_mb = max(self.peak_mb, reply.get("rss_mb", 0.0))
        return reply

    def call(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def _serve(handle) -> None:
    """Worker main loop: requests on stdin, replies on the real stdout; anything else the libraries
    print to stdout goes to stderr so it cannot break the protocol."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        out.write(json.dumps(handle({"op": "hello"})) + "\n")
    except Exception as e:  # report load failures to the parent in one line
        out.write(json.dumps({"error": f"{e.__class__.__name__}: {e}"}) + "\n")
        return
    for line in sys.stdin:
        try:
            reply = handle(json.loads(line))
        except Exception as e:
            reply = {"error": f"{e.__class__.__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")


def assistant_worker(model: str, runtime: str) -> None:
    """The assistant's generator through the product's own path."""
    sys.path.insert(0, str(ROOT))
    state: dict = {}

    def handle(req: dict) -> dict:
        if req["op"] == "hello":
            from models.generator import Generator

            name, _, activations = runtime.partition(":")  # e.g. "onnx:int8"
            extra = {"activations": activations} if activations else {}
            t0 = time.perf_counter()
            try:
                gen = Generator.load(model, device="cpu", runtime=name, **extra)
                used = runtime
            except TypeError as e:  # Generator.load without the runtime keyword (before it landed)
                if runtime != "torch" or "runtime" not in str(e):
                    raise
                gen = Generator.load(model, device="cpu")
                used = "torch (no runtime keyword)"
            state["gen"] = gen
            torch = sys.modules.get("torch")  # not imported here: the onnx runtime may not need it
            return {"load_s": time.perf_counter() - t0, "runtime": used, "rss_mb": peak_mb(),
                    "eos": sorted(int(i) for i in getattr(gen, "eos_ids", []) or []),
                    "torch_threads": torch.get_num_threads() if torch else None,
                    "class": f"{type(gen).__name__}, runtime {getattr(gen, 'runtime', '?')}",
                    "source": str(getattr(gen, "source", ""))}
        gen = state["gen"]
        if req["op"] == "tokenize":
            text = gen.render(req["messages"])
            return {"ids": gen.encode(text), "text": text}
        if req["op"] == "detokenize":
            return {"text": gen.tokenizer.decode(req["ids"], skip_special_tokens=True)}
        if req["op"] == "decode":
            from models.sampling import Sampling

            messages, max_new = req["messages"], req["max_new_tokens"]
            prompt_ids = gen.encode(gen.render(messages))
            if hasattr(gen, "forget"):
                gen.forget()  # no KV reuse from the previous round: both sides prefill the whole prompt
            t0 = time.perf_counter()
            first = last = None
            chunks = []
            for chunk in gen.stream(messages, sampling=Sampling(max_new_tokens=max_new, temperature=0)):
                last = time.perf_counter()
                if first is None:
                    first = last
                chunks.append(chunk)
            end = last or time.perf_counter()  # the last chunk: not the next turn's opening fed after it
            n = int(gen.generated_tokens)
            text = "".join(chunks)
            tokens, exact = _assistant_tokens(gen, prompt_ids, n, text)
            return {"ttft_s": (first or end) - t0, "n": n, "decode_s": end - (first or end),
                    "tps": (n - 1) / (end - first) if first and n > 1 and end > first else float("nan"),
                    "tokens": tokens, "tokens_exact": exact, "text": text, "prompt_tokens": len(prompt_ids),
                    "stop": getattr(gen, "stop_reason", ""), "rss_mb": peak_mb()}
        raise ValueError(f"unknown op {req['op']!r}")

    _serve(handle)


def _assistant_tokens(gen, prompt_ids: list[int], n: int, text: str) -> tuple[list[int], bool]:
    """The token ids of the last reply: from the generator when it says, else re-encoded from the
    text (marked not exact: re-encoding can merge tokens differently)."""
    for name in ("last_tokens", "generated_ids", "last_token_ids"):
        ids = getattr(gen, name, None)
        if isinstance(ids, (list, tuple)) and len(ids) == n:
            return [int(i) for i in ids], True
    fed = getattr(gen, "_cache_ids", None)
    if isinstance(fed, list) and fed[:len(prompt_ids)] == prompt_ids and len(fed) == len(prompt_ids) + n:
        return [int(i) for i in fed[len(prompt_ids):]], True
    return gen.encode(text), False


def llama_worker(gguf: str) -> None:
    """llama.cpp through llama-cpp-python, fed the same prompt token ids."""
    state: dict = {}

    def handle(req: dict) -> dict:
        if req["op"] == "hello":
            import llama_cpp
            from llama_cpp import Llama

            t0 = time.perf_counter()
            state["llm"] = Llama(model_path=gguf, n_ctx=2048, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
            return {"load_s": time.perf_counter() - t0, "version": llama_cpp.__version__, "rss_mb": peak_mb(),
                    "eos": [int(state["llm"].token_eos())]}
        llm = state["llm"]
        if req["op"] == "tokenize":
            return {"ids": llm.tokenize(req["text"].encode(), add_bos=False, special=True)}
        if req["op"] == "decode":
            ids, max_new, stops = req["ids"], req["max_new_tokens"], set(req["eos"])
            llm.reset()  # no KV reuse from the previous round (generate() would keep the shared prefix)
            tokens: list[int] = []
            t0 = time.perf_counter()
            first = None
            for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
                if token in stops:
                    break
                if first is None:
                    first = time.perf_counter()
                tokens.append(int(token))
                if len(tokens) >= max_new:
                    break
            end = time.perf_counter()
            n = len(tokens)
            text = llm.detokenize(tokens).decode("utf-8", errors="replace")
            return {"ttft_s": (first or end) - t0, "n": n, "decode_s": end - (first or end),
                    "tps": (n - 1) / (end - first) if first and n > 1 and end > first else float("nan"),
                    "tokens": tokens, "text": text, "rss_mb": peak_mb()}
        raise ValueError(f"unknown op {req['op']!r}")

    _serve(handle)


# ---------------------------------------------------------------------------- whole processes


def timed_process(cmd: list[str], env: dict | None = None) -> tuple[float, float, int, str, str]:
    """Run ``cmd`` to the end: (wall s, peak RSS MB of that process, exit code, stdout, stderr)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        return wall, usage.ru_maxrss / 1024, proc.returncode, out.read(), err.read()


def product_settings() -> dict:
    """What `assistant ask` will use: its system prompt and reply length, and whether the
    settings know ``generator.runtime`` yet (they forbid unknown keys)."""
    code = ("import json; from assistant.config import Settings, GeneratorSettings as G; g = Settings().generator; "
            "print(json.dumps({'runtime': 'runtime' in G.model_fields, 'system_prompt': g.system_prompt, "
            "'max_new_tokens': g.max_new_tokens}))")
    probe = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=ROOT)
    if probe.returncode != 0:
        raise RuntimeError(f"cannot read the assistant's settings: {probe.stderr.strip()[-500:]}")
    return json.loads(probe.stdout)


def ask_command(runtime: str, has_setting: bool) -> tuple[list[str], dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    name, _, activations = runtime.partition(":")
    if has_setting:
        env["SYNESTHESIA_GENERATOR__RUNTIME"] = name
        if activations:
            env["SYNESTHESIA_GENERATOR__ACTIVATIONS"] = activations
    elif runtime != "torch":
        raise RuntimeError(f"the settings have no generator.runtime yet: cannot run `assistant ask` with {runtime}")
    return [str(ROOT / ".venv" / "bin" / "assistant"), "ask", QUESTION], env


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtimes", default="torch,onnx",
                    help="comma-separated generator runtimes, RUNTIME or RUNTIME:ACTIVATIONS like onnx:int8 (default torch,onnx)")
    ap.add_argument("--rounds", type=int, default=5, help="decode rounds per contender (default 5)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--ask-rounds", type=int, default=3, help="whole-process rounds per contender (default 3; 0 skips)")
    ap.add_argument("--compare-tokens", type=int, default=64, help="new tokens per prompt in the greedy comparison (0 skips)")
    ap.add_argument("--write", action="store_true", help=f"replace this script's section of {RESULTS.relative_to(ROOT)}")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind == "llama":
            llama_worker(*rest)
        else:
            assistant_worker(*rest)
        return

    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    lpython = llama_python()
    sys.path.insert(0, str(ROOT))
    from models.generator import smollm2_gguf_path

    gguf = str(smollm2_gguf_path())
    main_python = str(ROOT / ".venv" / "bin" / "python")
    header = machine_line()
    print(header, flush=True)

    # ---- decode, alternating
    for r in runtimes:  # one unmeasured load first, so what a runtime converts and caches (the onnx graph) exists
        if r != "torch":
            Worker(main_python, "assistant", "smollm2", r, label=f"assistant ({r}, first load)").close()
    llama = Worker(lpython, "llama", gguf, label="llama.cpp")
    workers = {r: Worker(main_python, "assistant", "smollm2", r, label=f"assistant ({r})") for r in runtimes}
    first = workers[runtimes[0]]
    print(f"llama.cpp {llama.info['version']} loaded in {llama.info['load_s']:.2f} s; "
          + "; ".join(f"assistant {r}: {w.info['runtime']} ({w.info['class']}) loaded in {w.info['load_s']:.2f} s"
                      for r, w in workers.items()), flush=True)
    eos = sorted(set(first.info["eos"]) | set(llama.info["eos"]))
    story_ids = first.call(op="tokenize", messages=STORY)["ids"]

    def run_llama(ids, max_new):
        return llama.call(op="decode", ids=ids, max_new_tokens=max_new, eos=eos)

    def run_assistant(r, messages, max_new):
        return workers[r].call(op="decode", messages=messages, max_new_tokens=max_new)

    run_llama(story_ids, 8)  # warm-up
    for r in runtimes:
        run_assistant(r, STORY, 8)
    results: dict[str, list[dict]] = {"llama.cpp": [], **{r: [] for r in runtimes}}
    for i in range(args.rounds):
        order = ["llama.cpp", *runtimes] if i % 2 == 0 else [*runtimes, "llama.cpp"]
        for name in order:
            res = run_llama(story_ids, args.max_new_tokens) if name == "llama.cpp" else run_assistant(name, STORY, args.max_new_tokens)
            results[name].append(res)
            print(f"  round {i + 1} {name:10s} ttft {res['ttft_s']:.3f} s  {res['n']:3d} tokens  {fmt(res['tps'])} tok/s", flush=True)

    # ---- greedy outputs, token for token
    compare: dict[str, list[tuple[int, int, int, bool]]] = {r: [] for r in runtimes}
    examples: dict[str, list[str]] = {r: [] for r in runtimes}
    reencoded = {r: 0 for r in runtimes}
    tokenization_mismatch = 0
    if args.compare_tokens > 0:
        for prompt in COMPARE_PROMPTS:
            messages = [{"role": "user", "content": prompt}]
            rendered = first.call(op="tokenize", messages=messages)
            ids = rendered["ids"]
            if llama.call(op="tokenize", text=rendered["text"])["ids"] != ids:
                tokenization_mismatch += 1
            ref = run_llama(ids, args.compare_tokens)["tokens"]
            for r in runtimes:
                res = run_assistant(r, messages, args.compare_tokens)
                got = res["tokens"]
                k = next((j for j, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
                full = got == ref
                compare[r].append((k, len(got), len(ref), full and res["tokens_exact"]))
                reencoded[r] += not res["tokens_exact"]
                if not full:
                    a = first.call(op="detokenize", ids=got[:k + 8])["text"]
                    b = first.call(op="detokenize", ids=ref[:k + 8])["text"]
                    examples[r].append(f"{prompt!r}: first divergence at token {k}: assistant {a!r} vs llama.cpp {b!r}")

    peaks = {"llama.cpp": llama.peak_mb, **{r: w.peak_mb for r, w in workers.items()}}
    llama.close()
    for w in workers.values():
        w.close()

    # ---- whole process, one short question
    ask: dict[str, list[tuple[float, float]]] = {"llama.cpp": [], **{r: [] for r in runtimes}}
    answers: dict[str, str] = {}
    if args.ask_rounds > 0:
        product = product_settings()
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "llama_ask.py"
            script.write_text(LLAMA_SCRIPT)
            commands = {"llama.cpp": ([lpython, str(script), gguf, str(THREADS), product["system_prompt"], QUESTION,
                                       str(product["max_new_tokens"])], None)}
            for r in runtimes:
                commands[r] = ask_command(r, product["runtime"])
            for i in range(args.ask_rounds + 1):  # round 0 warms the caches and is not counted
                names = list(commands) if i % 2 == 0 else list(reversed(commands))
                for name in names:
                    cmd, env = commands[name]
                    wall, rss, rc, out, err = timed_process(cmd, env)
                    if rc != 0:
                        raise RuntimeError(f"{shlex.join(cmd)} exited {rc}: {err.strip()[-2000:]}")
                    answers[name] = out.strip()
                    if i > 0:
                        ask[name].append((wall, rss))
                    print(f"  ask round {i}{' (warm-up)' if i == 0 else ''} {name:10s} {wall:.2f} s  {rss:.0f} MB", flush=True)

    # ---- the table
    def med(name, key):
        return median([x[key] for x in results[name]])

    lc = {k: med("llama.cpp", k) for k in ("tps", "ttft_s", "n")}
    cols = ["llama.cpp"] + [c for r in runtimes for c in (f"assistant {r}", f"{r} / llama.cpp")]
    lines = ["| measure | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]

    def row(label, lc_value, values, digits=1, unit=""):
        cells = [fmt(lc_value, digits) + unit]
        for v in values:
            cells += [fmt(v, digits) + unit, ratio(v, lc_value)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row(f"decode, tokens/s (greedy, story, up to {args.max_new_tokens} tokens; higher is better)",
        lc["tps"], [med(r, "tps") for r in runtimes])
    row("time to first token, s (prompt of "
        f"{len(story_ids)} tokens, no cache)", lc["ttft_s"], [med(r, "ttft_s") for r in runtimes], 3)
    row("tokens generated (median)", lc["n"], [med(r, "n") for r in runtimes], 0)
    row("peak RSS of the decode worker, MB", peaks["llama.cpp"], [peaks[r] for r in runtimes], 0)
    if args.ask_rounds > 0:
        row(f"`ask` one question, whole process wall time, s (warm caches)",
            median([w for w, _ in ask["llama.cpp"]]), [median([w for w, _ in ask[r]]) for r in runtimes], 2)
        row("`ask` one question, whole process peak RSS, MB",
            median([m for _, m in ask["llama.cpp"]]), [median([m for _, m in ask[r]]) for r in runtimes], 0)
    if args.compare_tokens > 0:
        cells = ["(reference)"]
        for r in runtimes:
            full = sum(1 for c in compare[r] if c[3])
            cells += [f"{full}/{len(compare[r])} identical", ""]
        lines.append(f"| greedy output = llama.cpp's, token for token ({args.compare_tokens} tokens max) | "
                     + " | ".join(cells) + " |")

    notes = [
        f"Machine: {header}.",
        f"llama.cpp: llama-cpp-python {llama.info['version']}, `n_threads={THREADS}`; "
        + "; ".join(f"assistant {r}: {workers[r].info['class']}, torch threads {workers[r].info['torch_threads']}, "
                    f"weights {workers[r].info['source']}" for r in runtimes) + ".",
        f"Load average at the end of the run: {os.getloadavg()[0]:.2f} (2 cores shared with other work: "
        "rounds differ; medians).",
        f"Decode: {args.rounds} rounds, alternating order, median; decode tokens/s = (tokens - 1) / "
        "(time from first to last token); both sides prefill the whole prompt each round (no KV reuse).",
    ]
    if args.ask_rounds > 0:
        notes.append(f"`ask`: `assistant ask \"{QUESTION}\"` vs a 6-line llama-cpp-python script (below) sent the "
                     "same conversation (the assistant's system prompt and the question, the same reply limit), "
                     f"{args.ask_rounds} rounds after one warm-up round each, alternating, median; "
                     "peak RSS is `os.wait4`'s ru_maxrss of that process.")
        for name, answer in answers.items():
            notes.append(f"answer ({name}): {answer[:200]!r}")
    if args.compare_tokens > 0:
        if tokenization_mismatch:
            notes.append(f"llama.cpp's own tokenizer differs from the assistant's on {tokenization_mismatch} "
                         f"of {len(COMPARE_PROMPTS)} rendered prompts; both sides were fed the assistant's ids.")
        for r in runtimes:
            if reencoded[r]:
                notes.append(f"{r}: reply ids re-encoded from the text on {reencoded[r]} prompts (the generator "
                             "did not expose them); those are not counted as identical.")
            for ex in examples[r]:
                notes.append(f"{r}: {ex}")
            firsts = [c[0] for c in compare[r] if not c[3]]
            if firsts:
                notes.append(f"{r}: first divergences at tokens {sorted(firsts)}")
    publish("bench_speed", "Side by side with llama.cpp (`benchmarks/bench_speed.py`)", lines, notes, args.write,
            "The llama.cpp script of the `ask` row:\n\n```python\n" + LLAMA_SCRIPT + "```\n")


if __name__ == "__main__":
    main()
