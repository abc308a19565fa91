"""Request bodies (validated by pydantic) and the OpenAI-shaped responses built from results.

Fields OpenAI defines that this server does not use (``user``, ``presence_penalty``,
``logit_bias``...) are accepted and ignored, as other local servers do; ``n`` above 1 and audio
output formats it cannot write are refused with a 400 saying so.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_ID = "synesthesia"
"""The one model this server offers (the whole pipeline); any ``model`` value in a request is accepted."""


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = MODEL_ID
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    seed: int | None = None

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]

    def sampling(self) -> dict[str, Any]:
        """Overrides of the generator settings for this request only."""
        wanted = {"max_new_tokens": self.max_completion_tokens or self.max_tokens,
                  "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        return {k: v for k, v in wanted.items() if v is not None}


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = "tts-1"
    input: str = Field(min_length=1, max_length=4096)
    voice: str | dict[str, Any] = "default"
    response_format: str = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0)


# ---------------------------------------------------------------------- responses


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(cid: str, model: str, text: str, finish_reason: str, usage_: dict, extra: dict) -> dict:
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": usage_,
        "synesthesia": extra,
    }


def chunk(cid: str, model: str, delta: dict, finish_reason: str | None = None, usage_: dict | None = None,
          choices: bool = True) -> dict:
    body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if choices else []}
    if usage_ is not None:
        body["usage"] = usage_
    return body


def models_list(created: int) -> dict:
    return {"object": "list", "data": [model_card(created)]}


def model_card(created: int) -> dict:
    return {"id": MODEL_ID, "object": "model", "created": created, "owned_by": "synesthesia"}
