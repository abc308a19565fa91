"""The generator's tokenizer without transformers: a ``tokenizers`` tokenizer plus the model's
chat template rendered with jinja2.

Importing transformers costs about 2 s and 80 MB on our CPUs, more than answering a short
question; the ONNX runtime needs only this much of it. The folder is the one
``save_pretrained`` writes (``tokenizer.json``, ``tokenizer_config.json`` and the template,
inside the config or as ``chat_template.jinja``). tests/core/test_llm_onnx.py checks that
rendering and encoding agree with transformers on real conversations.
"""

from __future__ import annotations

import json
from pathlib import Path


class ChatTokenizer:
    """The part of a transformers tokenizer the generator uses (same names, same results)."""

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        self.folder = folder = Path(folder)
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = json.loads((folder / "tokenizer_config.json").read_text())
        template_file = folder / "chat_template.jinja"
        self.chat_template = template_file.read_text() if template_file.is_file() else config.get("chat_template")
        self._special = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        self._template = None

    def save_pretrained(self, folder: str | Path) -> None:
        """Copy the tokenizer's files into ``folder`` (as transformers' method of that name does)."""
        import shutil

        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
            if (self.folder / name).is_file():
                shutil.copy(self.folder / name, Path(folder) / name)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    @property
    def eos_token(self) -> str | None:
        return self._special["eos_token"]

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self._special["eos_token"])

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self._special["unk_token"])

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self._special["pad_token"])

    @property
    def pad_token(self) -> str | None:
        return self._special["pad_token"]

    @pad_token.setter
    def pad_token(self, token: str) -> None:
        self._special["pad_token"] = token

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __call__(self, text, add_special_tokens: bool = False, truncation: bool = False, max_length: int | None = None):
        """Text or list of texts -> {"input_ids": ids or list of ids} (no padding)."""
        texts = [text] if isinstance(text, str) else list(text)
        ids = [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)]
        if truncation and max_length:
            ids = [i[:max_length] for i in ids]
        return {"input_ids": ids[0] if isinstance(text, str) else ids}

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = False):
        """The conversation as the model's chat template writes it (text, or ids with tokenize=True)."""
        if self._template is None:
            if not self.chat_template:
                raise ValueError("this tokenizer has no chat template")
            from jinja2.ext import loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def refuse(message):
                raise ValueError(message)

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
            env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
            env.globals["raise_exception"] = refuse
            self._template = env.from_string(self.chat_template)
        text = self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     **{k: v for k, v in self._special.items() if v is not None})
        return self(text)["input_ids"] if tokenize else text


def _token_text(value) -> str | None:
    """tokenizer_config.json writes a special token as text or as {"content": text, ...}."""
    return value.get("content") if isinstance(value, dict) else value


def write_gguf_tokenizer(gguf: str | Path, folder: str | Path) -> None:
    """Write the tokenizer stored in a GGUF file (a GPT-2 style byte-level BPE, as SmolLM2's)
    as ``tokenizer.json``, ``tokenizer_config.json`` and ``chat_template.jinja`` in ``folder``.

    The same files transformers' GGUF conversion writes (tests/core/test_llm_onnx.py checks
    the two tokenize alike), built straight from the vocabulary, merges and token types with
    the ``tokenizers`` library: about 0.5 s, where transformers takes 10-20 s on two cores
    (it parses every metadata string through numpy memory maps, and imports itself)."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    from models.llm_onnx import scan_gguf

    gguf, folder = Path(gguf), Path(folder)
    meta, _ = scan_gguf(gguf, {"tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"})
    if meta.get("tokenizer.ggml.model") != "gpt2" or not meta.get("tokenizer.ggml.tokens"):
        raise ValueError(f"{gguf.name}: tokenizer {meta.get('tokenizer.ggml.model')!r}; only byte-level BPE (gpt2) is read")
    tokens = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
    tok = Tokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False, byte_fallback=False,
                        continuing_subword_prefix="", end_of_word_suffix=""))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1", special_tokens=[])
    control = [tokens[i] for i, kind in enumerate(meta.get("tokenizer.ggml.token_type") or []) if kind == 3]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    names = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
             "pad_token": "padding_token_id"}
    config = {k: tokens[meta[f"tokenizer.ggml.{v}"]] for k, v in names.items() if f"tokenizer.ggml.{v}" in meta}
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # so transformers reads the folder as well
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    if meta.get("tokenizer.chat_template"):
        (folder / "chat_template.jinja").write_text(meta["tokenizer.chat_template"])
