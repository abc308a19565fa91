"""The 4-bit ONNX Runtime decoder: exact block formats, the graph against transformers on the
same (dequantized) weights, the KV cache, the tokenizer without transformers, sampling."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from models import llm_onnx as L
from models.generator import Generator
from models.sampling import Chooser, Sampling
from tests.conftest import TEST_CACHE


def test_q4_1_and_q8_0_blocks_decode_bit_exactly():
    rng = np.random.default_rng(0)
    n, k = 3, 64
    q = rng.integers(0, 16, (n, k // 32, 32)).astype(np.uint8)
    d = rng.random((n, k // 32)).astype(np.float16)
    m = (-rng.random((n, k // 32))).astype(np.float16)
    raw = np.concatenate([d[..., None].view(np.uint8), m[..., None].view(np.uint8),
                          (q[..., :16] | (q[..., 16:] << 4)).astype(np.uint8)], axis=-1).reshape(n, -1)  # GGUF Q4_1 rows
    w = L._from_gguf_blocks(raw, "Q4_1", k)
    expected = q.astype(np.float32) * d.astype(np.float32)[..., None] + m.astype(np.float32)[..., None]
    assert np.array_equal(w.dequantize(), expected.reshape(n, k))
    q8 = rng.integers(-127, 128, (n, k // 32, 32)).astype(np.int8)
    raw8 = np.concatenate([d[..., None].view(np.uint8), q8.view(np.uint8)], axis=-1).reshape(n, -1)  # Q8_0 rows
    w8 = L._from_gguf_blocks(raw8, "Q8_0", k)
    assert np.array_equal(w8.dequantize(), (q8.astype(np.float32) * d.astype(np.float32)[..., None]).reshape(n, k))


def test_quantize4_error_is_within_half_a_step():
    w = np.random.default_rng(1).standard_normal((8, 96)).astype(np.float32)
    qw = L.quantize4(w)
    step = np.repeat(qw.d, 32, axis=1)
    assert np.all(np.abs(qw.dequantize() - w) <= step / 2 + 1e-6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Llama (transformers) and the ONNX decoder built from its folder, with the
    transformers model then given the decoder's dequantized weights: both compute the same
    function but for the int8 rounding of activations."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny")
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder)
    weights = L.read_hf(folder)
    L.prepare(lambda tmp: weights, {"test": 1}, folder / "onnx")
    decoder = L.OnnxDecoder(folder / "onnx", threads=1)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.from_numpy(weights.embed.dequantize()))
        for layer, w in zip(model.model.layers, weights.layers):
            qkv, gate_up = w["qkv"].dequantize(), w["gate_up"].dequantize()
            a, b = cfg.hidden_size, cfg.hidden_size + cfg.num_key_value_heads * 16
            layer.self_attn.q_proj.weight.copy_(torch.from_numpy(qkv[:a]))
            layer.self_attn.k_proj.weight.copy_(torch.from_numpy(qkv[a:b]))
            layer.self_attn.v_proj.weight.copy_(torch.from_numpy(qkv[b:]))
            layer.self_attn.o_proj.weight.copy_(torch.from_numpy(w["o"].dequantize()))
            layer.mlp.gate_proj.weight.copy_(torch.from_numpy(gate_up[:cfg.intermediate_size]))
            layer.mlp.up_proj.weight.copy_(torch.from_numpy(gate_up[cfg.intermediate_size:]))
            layer.mlp.down_proj.weight.copy_(torch.from_numpy(w["down"].dequantize()))
    return model, decoder


def test_graph_computes_the_model(tiny):
    model, decoder = tiny
    ids = list(range(3, 40))
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()  # (T, vocab)
    logits = decoder.forward(decoder.embed(ids), decoder.new_cache())  # (vocab,)
    assert np.corrcoef(logits, ref[-1])[0, 1] > 0.99
    assert np.abs(logits - ref[-1]).max() < 0.05 * np.abs(ref[-1]).max() + 0.05


def test_cache_continues_where_the_prompt_ended(tiny):
    _, decoder = tiny
    ids = list(range(10, 30))
    whole = decoder.forward(decoder.embed(ids), decoder.new_cache())
    cache = decoder.new_cache()
    decoder.forward(decoder.embed(ids[:12]), cache)
    assert len(cache) == 12
    split = decoder.forward(decoder.embed(ids[12:]), cache)  # several new tokens after a past
    assert len(cache) == 20 and np.allclose(split, whole, atol=1e-4)
    cache.crop(12)  # reuse the prefix for another continuation
    again = decoder.forward(decoder.embed(ids[12:]), cache)
    assert np.allclose(again, whole, atol=1e-4)


def test_cache_buffers_grow_and_keep_what_they_held(tiny, monkeypatch):
    _, decoder = tiny
    monkeypatch.setattr(L.KVCache, "START", 8)
    ids = list(range(40, 70))
    whole = decoder.forward(decoder.embed(ids), decoder.new_cache())
    cache = decoder.new_cache()
    decoder.forward(decoder.embed(ids[:5]), cache)
    assert cache.keys[0].shape[2] == 8  # (1, kv_heads, capacity, head_dim)
    for token in ids[5:-1]:  # one token at a time: the buffers double twice (8 -> 16 -> 32)
        decoder.forward(decoder.embed([token]), cache)
    last = decoder.forward(decoder.embed(ids[-1:]), cache)
    assert len(cache) == 30 and cache.keys[0].shape[2] == 32
    assert np.allclose(last, whole, atol=1e-4)


def test_the_likely_tokens_get_exact_logits(tiny):
    _, decoder = tiny
    logits = decoder.forward(decoder.embed(list(range(3, 20))), decoder.new_cache())  # (vocab,)
    head = ((decoder._head_q.astype(np.float32) - 128.0) * decoder._head_d[..., None]).reshape(len(logits), -1)
    exact = head @ decoder._hidden[0]  # fp32 dot products with the final hidden state
    best = int(exact.argmax())
    assert int(logits.argmax()) == best and np.isclose(logits[best], exact[best], rtol=1e-5, atol=1e-5)


def shifted_and_fresh(decoder, head: list[int], dropped: list[int], kept: list[int]):
    """A cache of head + dropped + kept with kept moved down after head, and a fresh cache of head + kept."""
    shifted, fresh = decoder.new_cache(), decoder.new_cache()
    decoder.forward(decoder.embed(head + dropped + kept), shifted)
    shifted.shift(len(head) + len(dropped), len(head) + len(dropped) + len(kept), len(head))
    decoder.forward(decoder.embed(head + kept), fresh)
    return shifted, fresh


def test_a_context_shift_rotates_the_moved_keys_to_their_new_positions(tiny):
    _, decoder = tiny
    shifted, fresh = shifted_and_fresh(decoder, list(range(3, 13)), list(range(50, 70)), list(range(100, 130)))
    assert len(shifted) == len(fresh) == 40
    # Layer 0's keys and values depend on the token and its position only: the moved ones must
    # equal those computed at the new positions (half-split rotary, as Hugging Face stores it).
    assert np.allclose(shifted.keys[0][:, :, :40], fresh.keys[0][:, :, :40], atol=1e-4)
    assert np.allclose(shifted.values[0][:, :, :40], fresh.values[0][:, :, :40], atol=1e-4)
    logits = decoder.forward(decoder.embed([7]), shifted)  # the shifted cache goes on like any other
    assert len(shifted) == 41 and np.isfinite(logits).all()


def test_the_growth_benchmark_runs_a_turn_again_from_the_same_cache(tiny, monkeypatch):
    """bench_growth times each turn several times: what a turn writes into the cache buffers
    (a prefill, a context shift, growing them) is undone by ``restore``, so each try starts alike."""
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("bench_growth", "benchmarks/bench_growth.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_growth", bench)  # its dataclasses look themselves up there
    monkeypatch.setattr(sys, "path", list(sys.path))  # it puts the repository first on the path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and sets this if unset
    spec.loader.exec_module(bench)
    monkeypatch.setattr(L.KVCache, "START", 64)
    _, decoder = tiny
    cache = decoder.new_cache()
    decoder.forward(decoder.embed(list(range(3, 40))), cache)
    bot = SimpleNamespace(history=["earlier"], last_reply=None, generator=SimpleNamespace(_cache=cache, _cache_ids=list(range(37))))
    state = bench.snapshot(bot)
    first = decoder.forward(decoder.embed([5, 6]), cache)
    cache.shift(20, 39, 4)
    decoder.forward(decoder.embed(list(range(50, 150))), cache)  # the buffers grow (64 -> 128)
    assert cache.keys[0].shape[2] == 128
    bot.history, bot.generator._cache_ids = ["changed"], []
    bench.restore(bot, state)
    assert bot.history == ["earlier"] and bot.generator._cache_ids == list(range(37)) and len(cache) == 37
    assert np.array_equal(decoder.forward(decoder.embed([5, 6]), cache), first)


def test_too_long_for_the_context_is_refused(tiny):
    _, decoder = tiny
    with pytest.raises(ValueError, match="exceed the model's context of 256"):
        decoder.forward(decoder.embed([7] * 257), decoder.new_cache())


def test_the_embedding_table_is_mapped_not_read(tmp_path):
    """The decoder's tables are views of the file mapped into memory (a turn touches only the
    rows it uses), equal to what safetensors reads, and read-only."""
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(3)
    arrays = {"q": rng.integers(0, 256, (50, 2, 32)).astype(np.uint8), "d": rng.random((50, 2)).astype(np.float32),
              "h": rng.random((3, 5)).astype(np.float16)}
    save_file(arrays, str(tmp_path / "embed.safetensors"))
    mapped = L.mapped_tables(tmp_path / "embed.safetensors")
    read = load_file(str(tmp_path / "embed.safetensors"))
    assert mapped.keys() == read.keys()
    for name, array in mapped.items():
        assert array.dtype == read[name].dtype and np.array_equal(array, read[name])
        assert mapped_from_a_file(array) and not array.flags.writeable
        assert type(array) is np.ndarray  # numpy's memmap subclass indexes slower


def test_the_decoder_maps_its_tables(tiny):
    _, decoder = tiny
    for table in (decoder._embed_q, decoder._embed_d, decoder._head_q, decoder._head_d):
        assert mapped_from_a_file(table)


def mapped_from_a_file(array: np.ndarray) -> bool:
    import mmap

    while isinstance(array, np.ndarray):
        array = array.base
    return isinstance(array, mmap.mmap)


def copied(cache: L.KVCache, decoder: L.OnnxDecoder) -> L.KVCache:
    """A cache of ``decoder`` holding what ``cache`` holds."""
    new = decoder.new_cache()
    new.reserve(len(cache))
    for mine, theirs in zip(new.keys + new.values, cache.keys + cache.values):
        mine[:, :, :len(cache)] = theirs[:, :, :len(cache)]
    new.length = len(cache)
    return new


def test_mixed_runs_prompts_in_the_fp32_graph_and_single_tokens_in_the_int8_one(tiny, tmp_path):
    """activations = "mixed": a pass of several tokens is the fp32 graph's, a pass of one token
    the int8 graph's, and both write the one cache."""
    _, fp32 = tiny
    L.prepare(lambda tmp: L.read_hf(fp32.folder.parent), {"test": 1}, tmp_path / "int8", "int8")
    int8 = L.OnnxDecoder(tmp_path / "int8", threads=1)
    mixed = L.OnnxDecoder(fp32.folder, threads=1, step_folder=tmp_path / "int8")
    ran = []
    for session, name in ((mixed.session, "fp32"), (mixed.step_session, "int8")):
        run = session.run_with_iobinding
        session.run_with_iobinding = lambda binding, *a, _run=run, _name=name: (ran.append(_name), _run(binding, *a))[1]
    ids = list(range(3, 25))
    cache, reference = mixed.new_cache(), fp32.new_cache()
    assert np.array_equal(mixed.forward(mixed.embed(ids), cache), fp32.forward(fp32.embed(ids), reference))
    step = mixed.forward(mixed.embed([9]), cache, step=True)  # (vocab,)
    assert ran == ["fp32", "int8"] and len(cache) == len(ids) + 1
    # The same step after the same cached prompt in each graph alone: it is the int8 graph's.
    assert np.array_equal(int8.forward(int8.embed([9]), copied(reference, int8)), step)
    assert not np.array_equal(fp32.forward(fp32.embed([9]), copied(reference, fp32)), step)
    # A prompt pass of one token (a question whose other tokens were cached) is still the fp32 graph's.
    cache.crop(len(ids))
    mixed.forward(mixed.embed([9]), cache)
    assert ran[-1] == "fp32"


@pytest.fixture(scope="module")
def onnx_generator(generator):
    """The real SmolLM2 on the 4-bit ONNX runtime, even when the test run's default is torch."""
    if generator.runtime == "onnx":
        return generator
    return Generator.load(device="cpu", runtime="onnx", cache_dir=TEST_CACHE)


@pytest.mark.integration
def test_real_smollm2_mixed_keeps_the_exact_first_token_where_int8_alone_goes_astray(onnx_generator):
    """"What is the capital of France?": the fp32 logits of "The" and "L" differ by 0.08, and
    int8 activations flip them ("L'Alcaz, la la, ..."). The mixed runtime takes its first token
    from the fp32 prompt pass and decodes the rest in int8."""
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    sampling = Sampling(max_new_tokens=12)
    int8, mixed = (Generator.load(device="cpu", runtime="onnx", activations=a, cache_dir=TEST_CACHE) for a in ("int8", "mixed"))
    assert mixed.runner.decoder.step_session is not mixed.runner.decoder.session
    exact = "".join(onnx_generator.stream(chat, sampling=sampling))
    assert exact.startswith("The capital of France is Paris")
    assert "".join(mixed.stream(chat, sampling=sampling)).startswith("The capital of France is Paris")
    assert not "".join(int8.stream(chat, sampling=sampling)).startswith("The")


@pytest.mark.integration
def test_real_smollm2_context_shift_rotates_interleaved_keys(onnx_generator):
    generator = onnx_generator
    """The GGUF's rotary pairs are interleaved: the shift must rotate them as the graph does."""
    ids = generator.encode("The lighthouse keeper walked down to the shore and found a small talking fish in a pool.")
    shifted, fresh = shifted_and_fresh(generator.runner.decoder, ids[:6], ids[6:12], ids[12:])
    n = len(fresh)
    assert np.allclose(shifted.keys[0][:, :, :n], fresh.keys[0][:, :, :n], atol=1e-3)
    assert not np.allclose(shifted.keys[5][:, :, :n], fresh.keys[5][:, :, :n], atol=1e-3)  # deeper layers remember


@pytest.mark.integration
def test_real_smollm2_graph_agrees_with_the_dequantized_model(onnx_generator):
    generator = onnx_generator
    """The shipped GGUF through ONNX Runtime against transformers' fp32 model of the same file."""
    reference = Generator.load(device="cpu", runtime="torch", cache_dir=TEST_CACHE)
    messages = [{"role": "user", "content": "Name three colours."}]
    ids = generator.encode(generator.render(messages))
    assert ids == reference.encode(reference.render(messages))  # the same tokenizer and template
    fast = generator.runner.forward(generator.runner.new_cache(), generator.runner.embed(ids))
    exact = reference.runner.forward(reference.runner.new_cache(), reference.runner.embed(ids))
    assert np.array_equal(generator.runner.embed(ids), reference.runner.embed(ids).numpy())  # the same 8-bit table
    assert np.corrcoef(fast, exact)[0, 1] > 0.995
    assert set(np.argsort(-fast)[:5]) & set(np.argsort(-exact)[:2])


@pytest.mark.integration
def test_tokenizer_read_straight_from_the_gguf_equals_transformers_conversion(onnx_generator):
    generator = onnx_generator
    """The onnx runtime's tokenizer files are written from the GGUF's vocabulary and merges
    (models/chat_tokenizer.write_gguf_tokenizer); the torch runtime's come from transformers'
    GGUF conversion. Both must cut every text into the same tokens."""
    reference = Generator.load(device="cpu", runtime="torch", cache_dir=TEST_CACHE)
    texts = ["Hello, world!", "  leading spaces\tand tabs\n\n\nnewlines ", "numbers 1234567 and 3.14159",
             "日本語と中文、émigré naïve café", "<|im_start|>user\nhi<|im_end|>", "don't won't it's", "emoji 🎉🙂",
             "def f(x):\n    return x ** 2  # square"]
    for text in texts:
        ids = generator.encode(text)
        assert ids == reference.encode(text), text
        assert generator.tokenizer.decode(ids) == reference.tokenizer.decode(ids)
    assert generator.eos_ids == reference.eos_ids


def test_chat_tokenizer_agrees_with_transformers(onnx_generator):
    from transformers import PreTrainedTokenizerFast

    from models.chat_tokenizer import ChatTokenizer

    folder = onnx_generator.tokenizer.folder
    ours, theirs = ChatTokenizer(folder), PreTrainedTokenizerFast.from_pretrained(folder)
    conversations = [
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "héllo 世界 {x} <b>"},
         {"role": "assistant", "content": "ok\n\n  spaced"}, {"role": "user", "content": "again?"}],
    ]
    for messages in conversations:
        for opening in (True, False):
            text = ours.apply_chat_template(messages, add_generation_prompt=opening)
            assert text == theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=opening)
            assert ours(text)["input_ids"] == theirs(text, add_special_tokens=False)["input_ids"]
    ids = ours("The café — ok")["input_ids"]
    assert ours.decode(ids) == theirs.decode(ids)
    assert (ours.eos_token_id, ours.pad_token_id, len(ours)) == (theirs.eos_token_id, theirs.pad_token_id, len(theirs))


def test_no_repeat_ngram_blocks_an_earlier_replys_phrases():
    chooser = Chooser(Sampling(no_repeat_ngram=3), seed=0, earlier=[[5, 6, 7, 8]])
    logits = np.zeros(10, dtype=np.float32)
    logits[7] = 5.0  # the model wants to continue 5 6 -> 7, as the earlier reply did
    logits[9] = 1.0
    assert chooser.choose(logits, [5, 6]) == 9
    assert chooser.choose(logits, [4, 6]) == 7  # another context: allowed
    plain = Chooser(Sampling(), seed=0, earlier=[[5, 6, 7, 8]])
    assert plain.choose(logits, [5, 6]) == 7


def test_no_repeat_ngram_lets_the_question_be_echoed_and_a_finite_penalty_lets_a_sure_token_through():
    logits = np.zeros(10, dtype=np.float32)
    logits[7], logits[9] = 5.0, 1.0
    quoted = Chooser(Sampling(no_repeat_ngram=3), seed=0, earlier=[[5, 6, 7, 8]], quoted=lambda ids: ids == [5, 6, 7])
    assert quoted.choose(logits, [5, 6]) == 7  # 5 6 7 is in the user's question: may be repeated
    soft = Chooser(Sampling(no_repeat_ngram=3, ngram_penalty=3.0), seed=0, earlier=[[5, 6, 7, 8]])
    assert soft.choose(logits, [5, 6]) == 7  # 5 - 3 > 1: the model is sure enough
    logits[9] = 2.5
    assert soft.choose(logits, [5, 6]) == 9  # 5 - 3 < 2.5


def test_the_generator_exempts_what_the_last_user_message_says(generator):
    gen = generator
    messages = [{"role": "user", "content": "Tell me one fact about the number 12."},
                {"role": "assistant", "content": "One fact about the number 12 is that it is even."},
                {"role": "user", "content": "Tell me One FACT about   the number 42."}]
    quoted = gen._quoted_in(messages)
    assert quoted(gen.encode(" one fact about the number")) and quoted(gen.encode("One fact about"))
    assert not quoted(gen.encode(" it is even"))
    assert gen._quoted_in([{"role": "system", "content": "Be brief."}]) is None


@pytest.mark.integration
def test_real_smollm2_second_fact_does_not_copy_the_first_ones_phrases(generator):
    """The template-copying case of benchmarks/results_repetition.md on the real model: greedy
    decoding copies the first reply's claim; with 4-gram blocking the second reply writes no
    four tokens in a row of the first reply that its own question does not hold."""
    sampling = Sampling(max_new_tokens=40)
    first_q, second_q = "Tell me one fact about the number 12.", "Tell me one fact about the number 42."
    first = "".join(generator.stream([{"role": "user", "content": first_q}], sampling=sampling))
    chat = [{"role": "user", "content": first_q}, {"role": "assistant", "content": first},
            {"role": "user", "content": second_q}]
    copied = "".join(generator.stream(chat, sampling=sampling))
    blocked = "".join(generator.stream(chat, sampling=Sampling(max_new_tokens=40, no_repeat_ngram=4)))

    def shared_4grams(reply: str) -> set[tuple[int, ...]]:
        earlier, ids = generator.encode(first), generator.encode(reply)
        grams = {tuple(earlier[i:i + 4]) for i in range(len(earlier) - 3)}
        quoted = generator._quoted_in(chat)
        return {tuple(ids[i:i + 4]) for i in range(len(ids) - 3)} & grams - {g for g in grams if quoted(list(g))}

    assert shared_4grams(copied), (first, copied)  # the failure this setting is for
    assert not shared_4grams(blocked), (first, blocked)
    assert "42" in blocked


def test_avoided_tokens_are_never_chosen():
    logits = np.array([0.0, 3.0, 2.0, -1.0], dtype=np.float32)
    assert Chooser(Sampling(), seed=0, earlier=[], avoid=[1]).choose(logits, []) == 2
    sampled = Chooser(Sampling(temperature=1.0, top_k=0, top_p=1.0), seed=0, earlier=[], avoid=[1, 2])
    assert {sampled.choose(logits, []) for _ in range(50)} <= {0, 3}


def test_repetition_penalty_counts_the_reply_only():
    logits = np.array([0.0, 2.0, 1.9, -1.0], dtype=np.float32)
    chooser = Chooser(Sampling(repetition_penalty=1.5), seed=0, earlier=[])
    assert chooser.choose(logits, []) == 1  # nothing generated yet: no penalty
    assert chooser.choose(logits, [1]) == 2  # 2.0 / 1.5 < 1.9
