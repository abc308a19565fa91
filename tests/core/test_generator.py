"""The generator loop on a tiny random Llama with SmolLM2's real tokenizer and chat template,
run by both runtimes: transformers ("torch") and the 4-bit ONNX Runtime graph ("onnx")."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from models.generator import FUSION_MARKER, Generator
from models.sampling import Sampling
from models.llm_onnx import greedy


@pytest.fixture(scope="module", params=["torch", "onnx"])
def tiny_generator(request, tiny_folder, tmp_path_factory):
    return Generator.load(str(tiny_folder), device="cpu", runtime=request.param, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture
def gen(tiny_generator):
    tiny_generator.forget()
    return tiny_generator


MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


def test_stream_matches_a_plain_greedy_loop(gen):
    """The reply equals a greedy loop written against the runtime itself (transformers'
    generate for torch, the ONNX session token by token for onnx)."""
    chunks = list(gen.stream(MSGS, sampling=Sampling(max_new_tokens=12)))
    assert len(chunks) > 1  # streamed, not one block
    prompt = gen.encode(gen.render(MSGS))
    if gen.runtime == "torch":
        ids = torch.tensor([prompt])
        ref = gen.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                 eos_token_id=list(gen.eos_ids), pad_token_id=gen.tokenizer.pad_token_id)[0, len(prompt):].tolist()
    else:
        ref = greedy(gen.runner.decoder, prompt, 12, gen.eos_ids)
    assert "".join(chunks) == gen.tokenizer.decode(ref, skip_special_tokens=True)
    assert gen.stop_reason in ("length", "eos")


def test_cancel_stops_mid_reply(gen):
    cancel = threading.Event()
    got = []
    for chunk in gen.stream(MSGS, sampling=Sampling(max_new_tokens=50), cancel=cancel):
        got.append(chunk)
        cancel.set()
    assert len(got) == 1 and gen.stop_reason == "cancelled"


def test_prefix_cache_gives_the_same_reply(gen):
    first = "".join(gen.stream(MSGS, sampling=Sampling(max_new_tokens=8)))
    follow = MSGS + [{"role": "assistant", "content": first}, {"role": "user", "content": "Another one?"}]
    cached = "".join(gen.stream(follow, sampling=Sampling(max_new_tokens=8)))
    assert gen.reused_tokens >= len(gen.encode(gen.render(MSGS))) - 1  # the first turn was not recomputed
    gen.forget()
    fresh = "".join(gen.stream(follow, sampling=Sampling(max_new_tokens=8)))
    assert cached == fresh


def test_a_finished_reply_feeds_the_next_turns_opening_ahead(gen, monkeypatch):
    """Once a reply ends, its end and the next user turn's opening are fed at once, so the
    next question prefills only its own words; its reply is the one a fresh cache gives."""
    with monkeypatch.context() as m:
        m.setattr(gen, "eos_ids", set(range(len(gen.tokenizer))))  # every token ends the reply: an empty one
        assert "".join(gen.stream(MSGS)) == "" and gen.stop_reason == "eos"
    replied = MSGS + [{"role": "assistant", "content": ""}]
    ahead = gen._next_turn_ids(replied)
    assert gen._cache_ids == ahead and len(gen._cache) == len(ahead)
    assert len(ahead) > len(gen.encode(gen.tokenizer.apply_chat_template(replied, tokenize=False)))  # the user opening too
    follow = replied + [{"role": "user", "content": "Another one?"}]
    cached = "".join(gen.stream(follow, sampling=Sampling(max_new_tokens=6)))
    assert gen.reused_tokens == len(ahead)
    gen.forget()
    assert cached == "".join(gen.stream(follow, sampling=Sampling(max_new_tokens=6)))


def test_a_failed_feed_ahead_leaves_the_reply_and_a_consistent_cache(gen, monkeypatch):
    calls = []
    forward = gen.runner.forward

    def flaky(cache, embeds, step=False):  # the prompt goes through; the next turn's opening (the second long feed) fails
        calls.append(len(embeds))
        if len(calls) > 1 and len(embeds) > 1:
            raise RuntimeError("out of memory")
        return forward(cache, embeds, step=step)

    monkeypatch.setattr(gen.runner, "forward", flaky)
    monkeypatch.setattr(gen, "eos_ids", set(range(len(gen.tokenizer))))
    assert "".join(gen.stream(MSGS)) == "" and gen.stop_reason == "eos"
    assert len(calls) == 2  # the feed ahead was tried
    prompt = gen.encode(gen.render(MSGS))
    assert gen._cache_ids == prompt and len(gen._cache) == len(prompt)


def test_sampling_is_seeded(gen):
    opts = Sampling(max_new_tokens=10, temperature=1.0, top_p=0.95, top_k=0)
    a = "".join(gen.stream(MSGS, sampling=opts, seed=3))
    gen.forget()
    b = "".join(gen.stream(MSGS, sampling=opts, seed=3))
    assert a == b


def test_fit_drops_oldest_turns(gen):
    history = []
    for i in range(30):
        history += [{"role": "user", "content": f"question {i} " + "word " * 20},
                    {"role": "assistant", "content": f"answer {i} " + "word " * 20}]
    messages = [MSGS[0]] + history + [{"role": "user", "content": "latest?"}]
    fitted = gen.fit(messages, budget=300)
    assert fitted[0] == MSGS[0] and fitted[-1]["content"] == "latest?"
    assert len(fitted) < len(messages) and gen.count_tokens(fitted) <= 300
    assert fitted[1]["role"] == "user"  # turns are dropped in pairs
    assert "answer 29" in fitted[-2]["content"]  # the newest turns stay


def test_a_prompt_rendered_and_encoded_again_is_taken_from_the_last_time(gen, monkeypatch):
    """fit() and the stream render and encode the same prompt: the second time is free, and a
    changed conversation (even a list changed in place), another text, or a caller changing the
    ids it was given, is never served stale."""
    messages = [MSGS[0], {"role": "user", "content": "word " * 300}]
    text = gen.render(messages)
    ids = gen._prompt_ids(text)
    assert ids == gen.encode(text) and gen.count_tokens(messages) == len(ids)
    ids.append(7)  # the caller's list, not the kept one
    calls = []
    monkeypatch.setattr(gen, "_rendered", gen._rendered)  # restored afterwards: the fixture is shared
    monkeypatch.setattr(gen, "_prompt", gen._prompt)
    monkeypatch.setattr(gen.tokenizer, "apply_chat_template", lambda *a, **k: calls.append("render") or "x")
    real = type(gen.tokenizer).__call__
    monkeypatch.setattr(type(gen.tokenizer), "__call__",
                        lambda self, *a, **k: (self is gen.tokenizer and calls.append("encode")) or real(self, *a, **k))
    assert gen.render([dict(m) for m in messages]) == text and calls == []
    again = gen._prompt_ids(text)
    assert again == ids[:-1] and calls == []
    again.append(7)
    assert gen._prompt_ids(text) == ids[:-1] and calls == []
    gen.render(messages[:1] + [{"role": "user", "content": "word " * 299 + "other"}])
    gen._prompt_ids(text + " more")
    assert calls == ["render", "encode"]
    parts = [{"type": "text", "text": "a"}]
    gen.render([{"role": "user", "content": parts}])
    parts.append({"type": "text", "text": "b"})
    gen.render([{"role": "user", "content": parts}])
    gen.render([])
    assert calls == ["render", "encode", "render", "render", "render"]


def test_fit_keeps_the_prompt_start_while_the_conversation_grows(gen):
    """Turns are dropped in large steps, so the prompt's start (and the KV cache of it) stays
    the same over many turns instead of changing every turn once the budget is full."""
    system, history, firsts = MSGS[0], [], []
    for i in range(60):
        history += [{"role": "user", "content": f"question {i} " + "word " * 10},
                    {"role": "assistant", "content": f"answer {i} " + "word " * 10}]
        fitted = gen.fit([system] + history + [{"role": "user", "content": "next?"}], budget=400)
        assert gen.count_tokens(fitted) <= 400
        firsts.append(fitted[1]["content"])
    changes = sum(a != b for a, b in zip(firsts, firsts[1:]))
    assert 1 <= changes <= 12  # full from about turn 12 on: one change per turn would be 48


def test_history_limit_keeps_earlier_turns_short_and_the_start_stable(gen):
    """``history``: the turns before the latest exchange never take more than that many tokens
    (however much room the budget has), dropped half of it at a time so the prompt's start
    still changes rarely; the latest exchange and the last message stay whatever their length."""
    system, history, firsts = MSGS[0], [], []
    for i in range(60):
        history += [{"role": "user", "content": f"question {i} " + "word " * 10},
                    {"role": "assistant", "content": f"answer {i} " + "word " * 10}]
        fitted = gen.fit([system] + history + [{"role": "user", "content": "next?"}], budget=4000, history=200)
        assert fitted[-3:-1] == history[-2:] and fitted[1]["role"] == "user"
        if i >= 1:
            earlier = gen.count_tokens([system] + fitted[1:-3]) - gen.count_tokens([system])
            assert 0 < earlier <= 200 + 8
        firsts.append(fitted[1]["content"])
    changes = sum(a != b for a, b in zip(firsts, firsts[1:]))
    assert 5 <= changes <= 25  # one change per turn would be 59
    long = {"role": "user", "content": "word " * 900}
    fitted = gen.fit([system] + history + [long], budget=4000, history=200)
    assert fitted[-1] == long and gen.count_tokens(fitted) > 900
    follow_up = history + [long, {"role": "assistant", "content": "Many words."}, {"role": "user", "content": "How many?"}]
    assert long in gen.fit([system] + follow_up, budget=4000, history=200)  # the long message is still there to ask about
    assert gen.fit([system] + history + [long], budget=4000, history=0) == gen.fit([system] + history + [long], budget=4000)


def test_after_dropping_old_turns_the_kept_turns_are_moved_not_recomputed(gen):
    """Once the conversation outgrows the budget, ``fit`` drops the oldest turns; the onnx
    runtime then shifts the cached keys and values of the turns kept (llama.cpp's context
    shift) instead of computing them all again (the torch runtime does compute them again)."""
    system, history = MSGS[0], []
    for i in range(12):
        history += [{"role": "user", "content": f"question {i} " + "word " * 10},
                    {"role": "assistant", "content": f"answer {i} " + "word " * 10}]
    before = [system] + history + [{"role": "user", "content": "next?"}]
    list(gen.stream(before, sampling=Sampling(max_new_tokens=2)))
    after = gen.fit(before[:-1] + [{"role": "user", "content": "and then?"}], budget=gen.count_tokens(before) - 60)
    assert after[1] != before[1]  # older turns were dropped, so the prompts differ after the system message
    kept = gen.count_tokens(after) - gen.count_tokens([system]) - gen.count_tokens([after[-1]])
    list(gen.stream(after, sampling=Sampling(max_new_tokens=2)))
    if gen.runtime == "onnx":
        assert gen.reused_tokens >= gen.count_tokens([system]) + kept - 8
    else:  # transformers' cache has no shift: only the system message's part is reused
        assert gen.reused_tokens < gen.count_tokens([system]) + 8


def test_fit_refuses_a_message_longer_than_the_context(gen):
    with pytest.raises(ValueError, match="tokens long"):
        gen.fit([MSGS[0], {"role": "user", "content": "word " * 500}], budget=200)


def test_fusion_inserts(gen):
    msgs = [{"role": "user", "content": f"Look: {FUSION_MARKER} what is it?"}]
    soft = torch.randn(4, gen.hidden_size)
    prompt = gen.render(msgs)
    embeds = gen._prompt_embeddings(prompt, [soft])  # (T, hidden)
    before = gen.encode(prompt.split(FUSION_MARKER)[0])
    assert embeds.shape[0] == len(before) + 4 + len(gen.encode(prompt.split(FUSION_MARKER)[1]))
    assert np.array_equal(embeds[len(before):len(before) + 4], soft.numpy())  # spliced where the marker stood
    other = gen._prompt_embeddings(prompt, [torch.randn(4, gen.hidden_size)])
    first = gen.runner.forward(gen.runner.new_cache(), embeds)
    assert not np.allclose(first, gen.runner.forward(gen.runner.new_cache(), other))
    assert list(gen.stream(msgs, inserts=[soft], sampling=Sampling(max_new_tokens=3)))
    with pytest.raises(ValueError, match="1 fusion markers in the prompt but 2"):
        list(gen.stream(msgs, inserts=[soft, soft]))


def test_embed_text_masks_padding(gen):
    emb, mask = gen.embed_text(["a b c d e", "a"])
    assert emb.shape[:2] == mask.shape and emb.shape[2] == gen.hidden_size
    assert mask[0].all() and mask[1].sum() < mask[0].sum()


def test_missing_hub_model_offline(tmp_path):
    with pytest.raises(RuntimeError, match="downloads are off"):
        Generator.load("nobody/no-such-model-xyz", cache_dir=tmp_path, offline=True)


def test_forget_can_keep_the_system_prompt_and_prefill_caches_it(tiny_generator):
    gen = tiny_generator
    system = {"role": "system", "content": "You are a terse assistant who answers in one word."}
    gen.forget()
    gen.prefill([system])
    kept = list(gen._cache_ids)
    assert len(kept) > len(gen.encode(gen.tokenizer.apply_chat_template([system], tokenize=False)))  # and the user's opening
    list(gen.stream([system, {"role": "user", "content": "hi"}], sampling=Sampling(max_new_tokens=3)))
    assert gen.reused_tokens >= len(kept) - 1  # the turn started from the cached system prompt
    gen.forget(keep=[system])
    assert gen._cache_ids == kept and len(gen._cache) == len(kept)
    gen.forget()
    assert gen._cache is None and gen._cache_ids == []


def test_looping_finds_a_short_piece_repeated_back_to_back():
    from models.sampling import looping

    assert looping([5] * 16) and not looping([5] * 15)
    assert looping([1, 2, 3] * 6) and not looping([1, 2, 3] * 5)  # at least 16 tokens of the loop
    assert looping(list(range(40)) + [7, 8] * 8)
    assert not looping(list(range(100)))  # a long reply that never repeats itself
    assert not looping([1, 2, 3, 4, 5, 6, 7, 8, 9] * 4)  # a period longer than 8 tokens is left alone


def test_a_reply_stuck_in_a_loop_ends_there(gen):
    """Greedy, the tiny random model repeats itself: the reply stops at the loop, not at the limit."""
    reply = "".join(gen.stream(MSGS, sampling=Sampling(max_new_tokens=200)))
    assert gen.stop_reason == "loop" and 16 <= gen.generated_tokens < 40
    assert reply  # what was written before the model got stuck is kept
