"""Chat completions through the official openai client, on a fake generator and the real image encoder."""

from __future__ import annotations

import base64

import pytest
from openai import OpenAI

from tests.conftest import DATA
from tests.serve.conftest import wav_bytes


@pytest.fixture
def client(server):
    url, _ = server
    return OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)


def user(content):
    return [{"role": "user", "content": content}]


def test_plain_chat_with_usage(client, server):
    _, bot = server
    bot.generator.replies.append("Paris is the capital.")
    r = client.chat.completions.create(model="synesthesia", messages=user("Capital of France?"))
    assert r.choices[0].message.content == "Paris is the capital."
    assert r.choices[0].finish_reason == "stop" and r.object == "chat.completion"
    prompt = bot.generator.prompts[-1]
    assert prompt == [{"role": "system", "content": bot.settings.generator.system_prompt},
                      {"role": "user", "content": "Capital of France?"}]
    assert r.usage.prompt_tokens == bot.generator.count_tokens(prompt)
    assert r.usage.completion_tokens == 4 and r.usage.total_tokens == r.usage.prompt_tokens + 4


def test_streaming_in_openai_chunks(client, server):
    _, bot = server
    bot.generator.replies.append("one two three four")
    stream = client.chat.completions.create(model="synesthesia", messages=user("Count."), stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 4  # streamed, not one block
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


def test_raw_stream_ends_with_done(server):
    import httpx

    url, bot = server
    bot.generator.replies.append("hi there")
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={"messages": user("hi"), "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_image_goes_through_the_image_encoder(client, server):
    _, bot = server
    with open(f"{DATA}/cat.jpg", "rb") as f:
        url = "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()
    r = client.chat.completions.create(model="synesthesia", messages=user([
        {"type": "text", "text": "What animal is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]))
    sent = bot.generator.prompts[-1][-1]["content"]
    assert sent.startswith("[Image 1 (image-1.jpg) shows") and "cat" in sent and sent.endswith("What animal is this?")
    assert any("cat" in note for note in r.model_extra["synesthesia"]["evidence"])


def test_spoken_question_is_transcribed(client, server):
    _, bot = server
    audio = base64.b64encode(wav_bytes()).decode()
    r = client.chat.completions.create(model="synesthesia", messages=user([
        {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}},
    ]))
    assert bot.generator.prompts[-1][-1] == {"role": "user", "content": "what is this"}
    assert r.model_extra["synesthesia"]["transcript"] == ["what is this"]


def test_each_request_carries_its_own_conversation(client, server):
    _, bot = server
    client.chat.completions.create(model="m", messages=[
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Ahoy Ada."},
        {"role": "user", "content": "What is my name?"},
    ])
    first = bot.generator.prompts[-1]
    assert [m["role"] for m in first] == ["system", "user", "assistant", "user"]
    assert first[0]["content"] == "Talk like a pirate." and first[2]["content"] == "Ahoy Ada."
    client.chat.completions.create(model="m", messages=user("What is my name?"))
    second = bot.generator.prompts[-1]
    assert second == [{"role": "system", "content": bot.settings.generator.system_prompt},
                      {"role": "user", "content": "What is my name?"}]  # nothing of Ada, the pirate is gone
    assert bot.settings.generator.system_prompt != "Talk like a pirate."


def test_a_request_keeps_all_the_history_it_sent(client, server):
    """generator.history_tokens limits the assistant's own chats, not a client's: the client
    chose the history; only the context budget trims it."""
    _, bot = server
    bot.settings.generator.history_tokens = 20
    sent = []
    for i in range(8):
        sent += [{"role": "user", "content": f"question {i} with several words in it"},
                 {"role": "assistant", "content": f"answer {i} with several words in it"}]
    client.chat.completions.create(model="m", messages=sent + user("And now?"))
    assert bot.generator.prompts[-1][1:] == sent + user("And now?")
    assert bot.settings.generator.history_tokens == 20  # put back after the request


def test_sampling_limits_and_stop_strings(client, server):
    _, bot = server
    bot.generator.replies += ["alpha beta gamma delta", "alpha beta gamma delta"]
    r = client.chat.completions.create(model="m", messages=user("go"), max_tokens=2, temperature=0.7, top_p=0.5)
    assert r.choices[0].message.content == "alpha beta" and r.choices[0].finish_reason == "length"
    used = bot.generator.samplings[-1]
    assert (used.max_new_tokens, used.temperature, used.top_p) == (2, 0.7, 0.5)
    assert (bot.settings.generator.max_new_tokens, bot.settings.generator.temperature) == (256, 0.0)  # put back
    r = client.chat.completions.create(model="m", messages=user("go"), stop=[" gam"])
    assert r.choices[0].message.content == "alpha beta" and r.choices[0].finish_reason == "stop"
    assert bot.generator.stop_reason == "cancelled"  # the stop string stopped the generator


def test_seed_and_temperature_reach_the_generator_even_when_the_bot_decodes_greedily(client, server):
    _, bot = server
    bot.greedy = True  # as `assistant eval` and the real-stack tests set it
    try:
        client.chat.completions.create(model="m", messages=user("go"), temperature=0.8, seed=5)
        used, seed = bot.generator.samplings[-1], bot.generator.seeds[-1]
        assert (used.temperature, seed) == (0.8, 5)
        client.chat.completions.create(model="m", messages=user("go"))  # no sampling asked: the bot's greedy stands
        used, seed = bot.generator.samplings[-1], bot.generator.seeds[-1]
        assert (used.temperature, seed) == (0.0, None)
        assert bot.greedy is True and bot.settings.generator.seed is None  # put back
    finally:
        bot.greedy = False


def test_stop_string_split_across_chunks_is_never_streamed(client, server):
    _, bot = server
    bot.generator.replies.append("one two END three")
    stream = client.chat.completions.create(model="m", messages=user("go"), stream=True, stop="two END")
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "one "


def test_models_list(client):
    assert [m.id for m in client.models.list()] == ["synesthesia"]
    assert client.models.retrieve("synesthesia").owned_by == "synesthesia"
