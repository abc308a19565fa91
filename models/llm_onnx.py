"""The generator's CPU runtime: a Llama-family decoder with 4-bit weights on ONNX Runtime.

Decoding a small model on a CPU is bound by memory bandwidth: fp32 weights make every token
read about 540 MB for SmolLM2-135M. Here the weights stay 4-bit (8-bit for the embedding
table and the output layer) and run through ONNX Runtime's ``MatMulNBits`` kernels, which
quantize the activations to int8 per block of 32, as llama.cpp does.

Where the weights come from:

* **GGUF** (the shipped SmolLM2 Q4_1 file): the blocks are used as they are, nothing is
  re-quantized. A Q4_1 block holds 32 weights ``w = q * d + m`` (q in 0..15). ONNX Runtime's
  fast kernels take an integer zero point, not the float offset ``m``, so each linear layer
  is split in two exact parts::

      x @ W.T  =  MatMulNBits(x; q, d, zero point 8)  +  blocksum(x) @ (m + 8 d).T

  where ``blocksum(x)`` adds each block of 32 inputs, a (T, K/32) matrix: a small fp32 matmul.
* **Hugging Face safetensors** (any Llama-architecture checkpoint, e.g. a larger SmolLM2):
  each block of 32 is quantized the same way on load (round to nearest, min/max), so one
  graph serves both.

The graph (built with the ``onnx`` helpers, cached as ``model.onnx`` + external data) takes
input embeddings, not token ids: the fusion core's soft tokens go in the same way as text,
and the embedding lookup is a numpy gather from the int8 table. Attention is ONNX Runtime's
``GroupQueryAttention`` with rotary embeddings; the KV cache lives outside the graph as
numpy arrays, so reusing a conversation's prefix is slicing.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

BLOCK = 32
"""Weights per quantization block (GGUF's Q4_1/Q8_0 and MatMulNBits alike)."""
GRAPH_VERSION = 3
"""Bumped whenever the graph layout changes, so cached graphs are rebuilt."""
ACTIVATIONS = ("fp32", "int8")
"""How a graph's 4-bit layers multiply (MatMulNBits ``accuracy_level`` 0 or 4). "fp32" computes
with float activations and reproduces the dequantized model (the same replies as
transformers on the GGUF). "int8" rounds activations to int8 per block of 32, as llama.cpp
does: faster, but a 135M model's greedy reply flips where two tokens are nearly tied
("What is the capital of France?" -> "L'Alcazabal, ..."); benchmarks/bench_speed.py measures both.
The generator's ``"mixed"`` setting loads both graphs, see :class:`OnnxDecoder`."""
RESCORE = 64
"""The output layer always runs on int8 activations (its fp32 path is very slow); the likely
tokens (at most RESCORE) are then scored again exactly (fp32 dot products with their rows), so
greedy choices and top-k/top-p sampling see exact logits."""
RESCORE_MARGIN = 2.0
"""Which tokens are likely: those whose int8 logit is within this of the best one. Measured
(240 SmolLM2 steps): the int8 logits are off by at most 0.55, so a token whose exact logit is
the best always lies within 1.1 of the best int8 logit. Finding them this way takes about 12
microseconds; ``np.argpartition`` over the vocabulary took 600, 5% of a token."""


@dataclass
class LlamaShape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    context: int
    rope_theta: float
    eps: float
    interleaved_rope: bool
    """GGUF stores q/k rows permuted for pairwise (interleaved) rotary; HF for half-split."""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def rope_frequencies(shape: LlamaShape) -> np.ndarray:
    """(head_dim / 2,) float64: the rotary angle per position of each pair of a head's dimensions."""
    return 1.0 / (shape.rope_theta ** (np.arange(0, shape.head_dim, 2, dtype=np.float64) / shape.head_dim))


@dataclass
class QLinear:
    """A linear layer y = x @ W.T with W (N, K) in blocks of 32 along K:
    W[n, b*32 + j] = q[n, b, j] * d[n, b] + m[n, b]  (4-bit q in 0..15; m is 0 for 8-bit)."""

    q: np.ndarray  # (N, K/32, 32) uint8: 0..15 for 4 bits, 0..255 (int8 + 128) for 8 bits
    d: np.ndarray  # (N, K/32) float32 scales
    m: np.ndarray | None  # (N, K/32) float32 offsets (4-bit only)
    bits: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape[0], self.q.shape[1] * BLOCK

    def dequantize(self) -> np.ndarray:
        """(N, K) float32, for tests and the embedding lookup."""
        if self.bits == 8:
            w = (self.q.astype(np.float32) - 128.0) * self.d[..., None]
        else:
            w = self.q.astype(np.float32) * self.d[..., None] + self.m[..., None]
        return w.reshape(self.shape)

    @staticmethod
    def stack(parts: list["QLinear"]) -> "QLinear":
        """Concatenate layers with the same input along N (q, k, v -> one qkv matmul)."""
        m = None if parts[0].m is None else np.concatenate([p.m for p in parts])
        return QLinear(np.concatenate([p.q for p in parts]), np.concatenate([p.d for p in parts]), m, parts[0].bits)


# ---------------------------------------------------------------------- quantization


def quantize4(w: np.ndarray) -> QLinear:
    """(N, K) float -> 4-bit blocks, min/max round to nearest (the same form as GGUF Q4_1)."""
    n, k = w.shape
    blocks = w.astype(np.float32).reshape(n, k // BLOCK, BLOCK)
    lo, hi = blocks.min(-1), blocks.max(-1)
    d = (hi - lo) / 15.0
    safe = np.where(d > 0, d, 1.0)
    q = np.clip(np.rint((blocks - lo[..., None]) / safe[..., None]), 0, 15).astype(np.uint8)
    return QLinear(q, d.astype(np.float32), lo.astype(np.float32), 4)


def quantize8(w: np.ndarray) -> QLinear:
    """(N, K) float -> symmetric 8-bit blocks (the same form as GGUF Q8_0)."""
    n, k = w.shape
    blocks = w.astype(np.float32).reshape(n, k // BLOCK, BLOCK)
    d = np.abs(blocks).max(-1) / 127.0
    safe = np.where(d > 0, d, 1.0)
    q = np.clip(np.rint(blocks / safe[..., None]), -127, 127).astype(np.int16) + 128
    return QLinear(q.astype(np.uint8), d.astype(np.float32), None, 8)


def _from_gguf_blocks(raw: np.ndarray, kind: str, k: int) -> QLinear:
    """A GGUF tensor's raw rows (N, bytes) -> QLinear, bit-exact.
    Q4_1 block: f16 d, f16 m, 16 bytes (low nibble: weight j, high nibble: weight j + 16).
    Q8_0 block: f16 d, 32 int8."""
    n, kb = raw.shape[0], k // BLOCK
    if kind == "Q4_1":
        b = raw.reshape(n, kb, 20)
        d = b[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        m = b[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        qs = b[..., 4:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # (N, kb, 32) in weight order
        return QLinear(q.astype(np.uint8), d, m, 4)
    if kind == "Q8_0":
        b = raw.reshape(n, kb, 34)
        d = b[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        q = b[..., 2:].copy().view(np.int8).astype(np.int16) + 128
        return QLinear(q.astype(np.uint8), d, None, 8)
    if kind in ("F32", "F16"):
        return quantize4(np.asarray(raw, dtype=np.float32).reshape(n, k))
    raise ValueError(f"GGUF tensor type {kind} is not supported by the ONNX runtime (Q4_1, Q8_0, F32 and F16 are)")


# ---------------------------------------------------------------------- weight sources


@dataclass
class Weights:
    shape: LlamaShape
    embed: QLinear  # (vocab, hidden) 8-bit: the input embedding table
    head: QLinear  # (vocab, hidden) 8-bit: the output layer (the same table when tied)
    final_norm: np.ndarray  # (hidden,)
    layers: list[dict]  # per layer: attn_norm, ffn_norm (hidden,), qkv, o, gate_up, down (QLinear)


def read_gguf(path: str | Path) -> Weights:
    """Weights of a llama-architecture GGUF, blocks kept as stored."""
    meta, tensors = scan_gguf(path)
    if meta.get("general.architecture") != "llama":
        raise ValueError(f"{path}: architecture {meta.get('general.architecture')!r}; "
                         "the ONNX runtime runs llama-family GGUF files")

    def linear(name: str) -> QLinear:
        kind, dims, raw = tensors[name]
        return _from_gguf_blocks(raw, kind, dims[0])  # GGUF lists (K, N)

    def vector(name: str) -> np.ndarray:
        kind, dims, raw = tensors[name]
        return np.asarray(raw, dtype=np.float32).reshape(-1).copy()

    embed = linear("token_embd.weight")
    if embed.bits != 8:
        embed = quantize8(embed.dequantize())
    head = linear("output.weight") if "output.weight" in tensors else embed
    if head.bits != 8:
        head = quantize8(head.dequantize())
    shape = LlamaShape(
        vocab=embed.shape[0], hidden=int(meta["llama.embedding_length"]), layers=int(meta["llama.block_count"]),
        heads=int(meta["llama.attention.head_count"]), kv_heads=int(meta["llama.attention.head_count_kv"]),
        ffn=int(meta["llama.feed_forward_length"]), context=int(meta.get("llama.context_length", 2048)),
        rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)),
        eps=float(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)), interleaved_rope=True,
    )
    layers = []
    for i in range(shape.layers):
        p = f"blk.{i}."
        layers.append({
            "attn_norm": vector(p + "attn_norm.weight"), "ffn_norm": vector(p + "ffn_norm.weight"),
            "qkv": QLinear.stack([linear(p + "attn_q.weight"), linear(p + "attn_k.weight"), linear(p + "attn_v.weight")]),
            "o": linear(p + "attn_output.weight"),
            "gate_up": QLinear.stack([linear(p + "ffn_gate.weight"), linear(p + "ffn_up.weight")]),
            "down": linear(p + "ffn_down.weight"),
        })
    return Weights(shape, embed, head, vector("output_norm.weight"), layers)


def scan_gguf(path: str | Path, arrays: frozenset[str] | set[str] = frozenset()) -> tuple[dict, dict]:
    """A GGUF file's scalar metadata and its tensors, read without parsing the metadata arrays.

    ``gguf.GGUFReader`` builds a Python object for each of the ~100,000 strings of the
    tokenizer's vocabulary and merges (5-20 s for the 98 MB SmolLM2 file on two cores); the
    weights need none of them, so they are skipped here (about 0.1 s); the metadata arrays named
    in ``arrays`` are read as lists (the whole vocabulary and merges: about 0.2 s). Returns
    ``({key: int | float | str | bool}, {name: (type name, dims (K, N, ...), raw rows)})``
    where raw rows are a read-only memory map of shape (N, bytes per row)."""
    import struct

    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    data = np.memmap(str(path), dtype=np.uint8, mode="r")
    buf = memoryview(data)
    if bytes(buf[:4]) != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    if version < 2:
        raise ValueError(f"{path}: GGUF version {version} is too old")
    pos = 24
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def string() -> str:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8 + n
        return bytes(buf[pos - n:pos]).decode("utf-8", errors="replace")

    def value(kind: int, keep: bool = False):
        nonlocal pos
        if kind == 8:
            return string()
        if kind == 9:  # array: skipped unless kept
            item, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if item in scalar:
                fmt = "<" + scalar[item]
                size = struct.calcsize(fmt)
                items = [v for (v,) in struct.iter_unpack(fmt, buf[pos:pos + size * count])] if keep else None
                pos += size * count
                return items
            items = [value(item) for _ in range(count)]
            return items if keep else None
        fmt = "<" + scalar[kind]
        (v,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    meta = {}
    for _ in range(n_kv):
        key = string()
        (kind,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        meta[key] = value(kind, key in arrays)
    infos = []
    for _ in range(n_tensors):
        name = string()
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
        kind, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        infos.append((name, dims, GGMLQuantizationType(kind), offset))
    align = int(meta.get("general.alignment", 32))
    start = (pos + align - 1) // align * align
    tensors = {}
    for name, dims, kind, offset in infos:
        block, nbytes = GGML_QUANT_SIZES[kind]
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        row_bytes = dims[0] // block * nbytes
        raw = data[start + offset:start + offset + rows * row_bytes].reshape(rows, row_bytes)
        if kind.name in ("F32", "F16"):
            raw = raw.view(np.float32 if kind.name == "F32" else np.float16)
        tensors[name] = (kind.name, tuple(int(d) for d in dims), raw)
    return meta, tensors


def read_hf(folder: str | Path) -> Weights:
    """Weights of a Hugging Face Llama-architecture folder (config.json + safetensors),
    quantized on load: 4-bit linear layers, 8-bit embedding table and output layer."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") not in ("llama", "smollm", "smollm2"):
        raise ValueError(f"{folder}: model type {config.get('model_type')!r}; the ONNX runtime runs Llama-architecture models")
    tensors: dict[str, np.ndarray] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(_load_safetensors_float(file, load_file))
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    shape = LlamaShape(
        vocab=int(config["vocab_size"]), hidden=hidden, layers=int(config["num_hidden_layers"]), heads=heads,
        kv_heads=int(config.get("num_key_value_heads", heads)), ffn=int(config["intermediate_size"]),
        context=int(config.get("max_position_embeddings", 2048)), rope_theta=float(config.get("rope_theta", 10000.0)),
        eps=float(config.get("rms_norm_eps", 1e-5)), interleaved_rope=False,
    )
    pre = "model." if "model.embed_tokens.weight" in tensors else ""
    embed = quantize8(tensors[pre + "embed_tokens.weight"])
    head = quantize8(tensors["lm_head.weight"]) if "lm_head.weight" in tensors else embed
    layers = []
    for i in range(shape.layers):
        p = f"{pre}layers.{i}."
        w = lambda name: tensors[p + name]  # noqa: E731
        layers.append({
            "attn_norm": w("input_layernorm.weight"), "ffn_norm": w("post_attention_layernorm.weight"),
            "qkv": quantize4(np.concatenate([w("self_attn.q_proj.weight"), w("self_attn.k_proj.weight"), w("self_attn.v_proj.weight")])),
            "o": quantize4(w("self_attn.o_proj.weight")),
            "gate_up": quantize4(np.concatenate([w("mlp.gate_proj.weight"), w("mlp.up_proj.weight")])),
            "down": quantize4(w("mlp.down_proj.weight")),
        })
    return Weights(shape, embed, head, tensors[pre + "norm.weight"], layers)


def _load_safetensors_float(file: Path, load_file) -> dict[str, np.ndarray]:
    """float32 arrays from a safetensors file; bf16 (which numpy lacks) goes through torch."""
    try:
        return {k: v.astype(np.float32) for k, v in load_file(str(file)).items()}
    except (TypeError, ValueError):
        from safetensors.torch import load_file as load_torch

        return {k: v.float().numpy() for k, v in load_torch(str(file)).items()}


# ---------------------------------------------------------------------- the graph


def build_graph(weights: Weights, path: Path, activations: str = "fp32") -> None:
    """Write the decoder as an ONNX graph (``path`` + ``path.data``).

    Inputs: embeds (1, T, hidden) float32; past_key_i / past_value_i (1, kv_heads, C, head_dim),
    the cache's buffers (C >= P + T, see :class:`KVCache`); seqlens_k (1,) int32 = P + T - 1;
    total_len () int32 = P + T, where P is the number of positions already cached.
    Outputs: logits (1, vocab) and the final normed hidden state (1, hidden) of the last
    position; present_key_i / present_value_i, the same buffers with positions P..P+T-1 written.

    Node count matters as much as arithmetic here: decoding one token runs every node once,
    and ONNX Runtime spends a few microseconds on each. So the hidden state is kept 2-D
    (T, hidden), which lets each Q4_1 offset correction be one ``Gemm`` (block sums @ offsets
    + the 4-bit product), and each residual addition rides in the next
    ``SkipSimplifiedLayerNormalization``: about 20 nodes a layer instead of 28 (decode
    102 -> 120 tokens/s for SmolLM2-135M on two cores, benchmarks/results_speed.md).
    """
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations {activations!r}: choose one of {', '.join(ACTIVATIONS)}")
    level = 0 if activations == "fp32" else 4
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    s = weights.shape
    nodes, inits = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], output: str | list[str], domain: str = "", **attrs):
        outputs = [output] if isinstance(output, str) else output
        nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], domain=domain, **attrs))
        return output

    for k in sorted({s.hidden, s.ffn}):  # (K, K/32): 1 where input k belongs to block k // 32
        const(f"blocks_{k}", (np.arange(k)[:, None] // BLOCK == np.arange(k // BLOCK)[None]).astype(np.float32))

    def linear(name: str, x: str, w: QLinear) -> str:
        """(T, K) -> (T, N) with the weights of ``w``."""
        n, k = w.shape
        packed = w.q if w.bits == 8 else (w.q[..., 0::2] | (w.q[..., 1::2] << 4))  # two 4-bit weights a byte
        y = node("MatMulNBits", [x, const(name + ".q", packed.astype(np.uint8)), const(name + ".d", w.d.reshape(-1))],
                 name, domain="com.microsoft", K=k, N=n, bits=w.bits, block_size=BLOCK,
                 accuracy_level=4 if w.bits == 8 else level)
        if w.m is None:
            return y
        # The kernel subtracts the default zero point 8; add back m + 8 d per block: blocksum(x) @ offsets.
        offsets = (w.m + 8.0 * w.d).T.astype(np.float32)  # (K/32, N)
        sums = node("MatMul", [x, f"blocks_{k}"], name + ".sums")  # (T, K/32)
        return node("Gemm", [sums, const(name + ".m", offsets), y], name + ".out")  # (T, N)

    pending: str | None = None  # a sublayer's output not yet added to the residual stream

    def rmsnorm(name: str, gamma: np.ndarray) -> str:
        """Norm of the residual stream ``h`` (T, hidden), first adding ``pending`` to it."""
        nonlocal h, pending
        g = const(name, gamma.astype(np.float32))
        if pending is None:
            return node("SimplifiedLayerNormalization", [h, g], name + ".out", axis=-1, epsilon=s.eps)
        out, _, _, h = node("SkipSimplifiedLayerNormalization", [h, pending, g],
                            [name + ".out", name + ".mean", name + ".inv_std", name + ".sum"],
                            domain="com.microsoft", epsilon=s.eps)
        pending = None
        return out

    angles = np.outer(np.arange(s.context, dtype=np.float64), rope_frequencies(s))  # (context, head_dim / 2)
    const("cos", np.cos(angles).astype(np.float32))
    const("sin", np.sin(angles).astype(np.float32))
    const("gate_split", np.array([s.ffn, s.ffn], dtype=np.int64))
    const("axis0", np.array([0], dtype=np.int64))

    graph_inputs = [
        helper.make_tensor_value_info("embeds", TensorProto.FLOAT, [1, "T", s.hidden]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
        helper.make_tensor_value_info("total_len", TensorProto.INT32, []),
    ]
    graph_outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, s.vocab]),
                     helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, s.hidden])]
    h = node("Squeeze", ["embeds", "axis0"], "h0")  # (T, hidden)
    for i, layer in enumerate(weights.layers):
        p = f"l{i}."
        for kind in ("key", "value"):
            graph_inputs.append(helper.make_tensor_value_info(f"past_{kind}_{i}", TensorProto.FLOAT, [1, s.kv_heads, "C", s.head_dim]))
            graph_outputs.append(helper.make_tensor_value_info(f"present_{kind}_{i}", TensorProto.FLOAT, [1, s.kv_heads, "C", s.head_dim]))
        qkv = linear(p + "qkv", rmsnorm(p + "attn_norm", layer["attn_norm"]), layer["qkv"])  # (T, (H + 2 Hkv) * D)
        attn = node(
            "GroupQueryAttention",
            [node("Unsqueeze", [qkv, "axis0"], p + "qkv3"), "", "", f"past_key_{i}", f"past_value_{i}",
             "seqlens_k", "total_len", "cos", "sin"],
            [p + "attn", f"present_key_{i}", f"present_value_{i}"], domain="com.microsoft",
            num_heads=s.heads, kv_num_heads=s.kv_heads, do_rotary=1, rotary_interleaved=int(s.interleaved_rope),
        )[0]  # (1, T, H * D)
        pending = linear(p + "o", node("Squeeze", [attn, "axis0"], p + "attn2"), layer["o"])  # (T, hidden)
        gate, up = node("Split", [linear(p + "gate_up", rmsnorm(p + "ffn_norm", layer["ffn_norm"]), layer["gate_up"]),
                                  "gate_split"], [p + "gate", p + "up"], axis=-1)  # 2 x (T, ffn)
        act = node("Mul", [node("Mul", [gate, node("Sigmoid", [gate], p + "sig")], p + "silu"), up], p + "act")
        pending = linear(p + "down", act, layer["down"])  # (T, hidden)
    const("last_start", np.array([-1], dtype=np.int64))
    const("last_end", np.array([np.iinfo(np.int64).max], dtype=np.int64))
    last = node("Slice", [rmsnorm("final_norm", weights.final_norm), "last_start", "last_end", "axis0"], "hidden")  # (1, hidden)
    node("Identity", [linear("head", last, weights.head)], "logits")  # (1, vocab)

    graph = helper.make_graph(nodes, "decoder", graph_inputs, graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)


# ---------------------------------------------------------------------- cache on disk


def prepare(weights_loader, stamp: dict, folder: Path, activations: str = "fp32") -> Path:
    """Build the graph into ``folder`` once (``stamp`` identifies the source) and return it.
    ``weights_loader(tmp)`` is only called when the cached graph is missing or stale; it returns
    the :class:`Weights` and may write files of its own (the tokenizer) into ``tmp``."""
    from safetensors.numpy import save_file

    stamp = {**stamp, "graph_version": GRAPH_VERSION, "activations": activations}
    if is_current(folder, stamp, "model.onnx"):
        return folder
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        weights: Weights = weights_loader(tmp)
        build_graph(weights, tmp / "model.onnx", activations)
        tables = {"q": weights.embed.q, "d": weights.embed.d}
        if weights.head is not weights.embed:
            tables.update(head_q=weights.head.q, head_d=weights.head.d)
        save_file(tables, str(tmp / "embed.safetensors"))
        (tmp / "shape.json").write_text(json.dumps(asdict(weights.shape), indent=2))
        (tmp / "source.json").write_text(json.dumps(stamp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def is_current(folder: Path, stamp: dict, required: str) -> bool:
    """Whether ``folder`` holds ``required`` and was made from the source ``stamp`` describes."""
    try:
        return (folder / required).is_file() and json.loads((folder / "source.json").read_text()) == stamp
    except (OSError, ValueError):
        return False


def greedy(decoder: "OnnxDecoder", prompt: list[int], max_new_tokens: int, stop: set[int]) -> list[int]:
    """The plainest greedy loop over the session (a reference for tests and benchmarks)."""
    reply: list[int] = []
    cache, x = decoder.new_cache(), decoder.embed(prompt)
    for _ in range(max_new_tokens):
        token = int(decoder.forward(x, cache, step=bool(reply)).argmax())
        if token in stop:
            break
        reply.append(token)
        x = decoder.embed([token])
    return reply


# ---------------------------------------------------------------------- runtime


class KVCache:
    """Keys and values of the tokens seen so far, in buffers the graph writes in place.

    Per layer one key and one value buffer (1, kv_heads, capacity, head_dim), views of one array
    for all layers (so a context shift moves them all at once), bound to the session both as
    ``past`` input and as ``present`` output (ONNX Runtime's
    ``GroupQueryAttention`` then appends the new positions where they belong instead of copying
    the whole cache every token). Only the first ``len(cache)`` positions mean anything;
    cropping is setting that length. The buffers double when they fill, up to the context."""

    START = 256
    """Positions the buffers hold at first."""

    def __init__(self, decoder: "OnnxDecoder"):
        self._decoder = decoder
        self.length = 0
        self._all_keys: np.ndarray | None = None  # (layers, 1, kv_heads, capacity, head_dim)
        self._all_values: np.ndarray | None = None
        self._bindings: dict = {}  # session -> its binding of these buffers

    def __len__(self) -> int:
        return self.length

    @property
    def keys(self) -> list[np.ndarray]:
        """Per layer (1, kv_heads, capacity, head_dim): contiguous views of the one array."""
        return [] if self._all_keys is None else list(self._all_keys)

    @property
    def values(self) -> list[np.ndarray]:
        return [] if self._all_values is None else list(self._all_values)

    def crop(self, length: int) -> None:
        """Keep the first ``length`` positions."""
        self.length = max(0, min(self.length, length if length >= 0 else self.length + length))

    def shift(self, start: int, end: int, to: int) -> None:
        """Move positions ``start``..``end``-1 down to ``to`` (``to`` < ``start``) and end the cache
        after them: what llama.cpp calls a context shift. Values move as they are; keys were
        rotated for their old positions (RoPE), so they are rotated back by ``start - to``
        (each pair of a head's dimensions by that many steps of its frequency). The moved
        tokens keep what they had seen of the dropped ones, so the result is close to, not
        equal to, computing them again at their new positions; layer 0 is exact. All layers
        move at once: their buffers are one array (two numpy operations, not a dozen per layer)."""
        s, n = self._decoder.shape, end - start
        angles = (to - start) * rope_frequencies(s)  # (D/2,)
        cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
        k, v = self._all_keys, self._all_values  # (layers, 1, kv_heads, capacity, D)
        if s.interleaved_rope:  # each pair side by side, as a complex number's parts: a product rotates it
            kc = k.view(np.complex64)  # (layers, 1, kv_heads, capacity, D/2)
            kc[..., to:to + n, :] = kc[..., start:end, :] * (cos + 1j * sin).astype(np.complex64)
        else:  # a head's first half of dimensions pairs with its second half
            halves = k[..., start:end, :].reshape(*k.shape[:3], n, 2, s.head_dim // 2)  # (layers, 1, kv_heads, n, 2, D/2)
            a, b = halves[..., 0, :], halves[..., 1, :]
            k[..., to:to + n, :] = np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
        v[..., to:to + n, :] = v[..., start:end, :].copy()  # (the right side is whole before the write: ranges may overlap)
        self.length = to + n

    def reserve(self, total: int, session=None):
        """``session``'s binding (default: the decoder's prefill session), with buffers for at
        least ``total`` positions."""
        capacity = 0 if self._all_keys is None else self._all_keys.shape[3]
        if total > capacity:
            s = self._decoder.shape
            capacity = min(s.context, max(self.START, 2 * capacity, total))

            def grow(old: np.ndarray | None) -> np.ndarray:
                new = np.zeros((s.layers, 1, s.kv_heads, capacity, s.head_dim), dtype=np.float32)
                if old is not None:
                    new[..., :self.length, :] = old[..., :self.length, :]
                return new

            self._all_keys, self._all_values = grow(self._all_keys), grow(self._all_values)
            self._bindings = {}
        session = session or self._decoder.session
        if session not in self._bindings:
            self._bindings[session] = self._decoder.bind(self.keys, self.values, session)
        return self._bindings[session]


def mapped_tables(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file as read-only views of the file mapped into memory.

    The embedding table (and an untied output layer's) is 31 MB for SmolLM2-135M, but a turn
    reads only the rows of the tokens it embeds or rescores, so mapping it keeps the rest of
    the file out of the process's memory (``safetensors.numpy.load_file`` reads every byte)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")  # the format: an 8-byte header length, a JSON header, the data
        header = json.loads(f.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    dtypes = {"U8": np.uint8, "I8": np.int8, "F16": np.float16, "F32": np.float32, "I32": np.int32, "I64": np.int64}
    return {name: np.asarray(data[start:end]).view(dtypes[info["dtype"]]).reshape(info["shape"])  # plain arrays: memmap's own indexing is slower
            for name, info in header.items() if name != "__metadata__"
            for start, end in [info["data_offsets"]]}


class OnnxDecoder:
    """The built graph in an ONNX Runtime session, plus the embedding table.

    With ``step_folder`` (another graph of the same weights, e.g. the int8 one beside the fp32
    one: the generator's ``activations = "mixed"``), the passes that feed a reply's chosen
    tokens (``step=True``) run there, and every other pass (a prompt, a question, soft tokens,
    even of one token) in ``folder``'s graph; both write the same cache buffers. So a reply's
    first token comes from an fp32 pass (the exact model's in a new conversation; later, it
    attends to earlier replies' keys that the step graph wrote), and the following tokens from
    the faster graph. It costs the second graph's memory."""

    def __init__(self, folder: Path, threads: int | None = None, step_folder: Path | None = None):
        import onnxruntime as ort

        self.folder = folder
        self.shape = LlamaShape(**json.loads((folder / "shape.json").read_text()))
        table = mapped_tables(folder / "embed.safetensors")
        self._embed_q, self._embed_d = table["q"], table["d"]  # (vocab, hidden/32, 32) uint8, (vocab, hidden/32)
        self._head_q, self._head_d = table.get("head_q", table["q"]), table.get("head_d", table["d"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        if step_folder is not None and json.loads((step_folder / "shape.json").read_text()) != asdict(self.shape):
            raise ValueError(f"{step_folder} holds a model of another shape than {folder}")
        self.step_session = self.session if step_folder is None else ort.InferenceSession(
            str(step_folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self._ort = ort
        self._logits = np.zeros((1, self.shape.vocab), dtype=np.float32)  # the graph writes its outputs here
        self._hidden = np.zeros((1, self.shape.hidden), dtype=np.float32)

    def embed(self, ids) -> np.ndarray:
        """Token ids (T,) -> (T, hidden) float32 input embeddings (the 8-bit table, dequantized)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = (self._embed_q[ids].astype(np.float32) - 128.0) * self._embed_d[ids][..., None]
        return rows.reshape(len(ids), self.shape.hidden)

    def new_cache(self) -> KVCache:
        return KVCache(self)

    def bind(self, keys: list[np.ndarray], values: list[np.ndarray], session):
        """A binding of ``session`` whose past and present tensors are the same ``keys``/``values`` buffers."""
        ortvalue = self._ort.OrtValue.ortvalue_from_numpy  # shares the numpy array's memory
        binding = session.io_binding()
        binding.bind_ortvalue_output("logits", ortvalue(self._logits))
        binding.bind_ortvalue_output("hidden", ortvalue(self._hidden))
        for i, (k, v) in enumerate(zip(keys, values)):
            k, v = ortvalue(k), ortvalue(v)
            binding.bind_ortvalue_input(f"past_key_{i}", k)
            binding.bind_ortvalue_output(f"present_key_{i}", k)
            binding.bind_ortvalue_input(f"past_value_{i}", v)
            binding.bind_ortvalue_output(f"present_value_{i}", v)
        return binding

    def forward(self, embeds: np.ndarray, cache: KVCache, step: bool = False) -> np.ndarray:
        """(T, hidden) embeddings after ``cache`` -> logits (vocab,) of the last position; extends
        ``cache``. ``step``: the pass feeds a reply's last chosen token (it runs in the step graph)."""
        t = embeds.shape[0]
        total = len(cache) + t
        if total > self.shape.context:
            raise ValueError(f"{total} tokens exceed the model's context of {self.shape.context}")
        session = self.step_session if step else self.session
        binding = cache.reserve(total, session)
        binding.bind_cpu_input("embeds", np.ascontiguousarray(embeds, dtype=np.float32)[None])
        binding.bind_cpu_input("seqlens_k", np.array([total - 1], dtype=np.int32))
        binding.bind_cpu_input("total_len", np.array(total, dtype=np.int32))
        session.run_with_iobinding(binding)
        cache.length = total
        logits, hidden = self._logits[0].copy(), self._hidden[0]  # (vocab,), (hidden,)
        top = np.flatnonzero(logits >= logits.max() - RESCORE_MARGIN)
        if len(top) > RESCORE:
            top = top[np.argpartition(logits[top], -RESCORE)[-RESCORE:]]
        rows = (self._head_q[top].astype(np.float32) - 128.0) * self._head_d[top][..., None]  # (RESCORE, hidden/32, 32)
        logits[top] = rows.reshape(len(top), -1) @ hidden
        return logits
