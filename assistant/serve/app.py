"""The ASGI app: OpenAI's routes over one :class:`~assistant.serve.worker.Worker`.

    POST /v1/chat/completions     text, image_url (data:), input_audio; stream=true as SSE
    POST /v1/audio/transcriptions multipart file -> json | text | verbose_json
    POST /v1/audio/speech         input -> wav | flac | pcm
    GET  /v1/models               the one model (the whole pipeline)
    GET  /health                  {"status": "loading" | "ready" | "failed"} (no key needed)

Inputs are decoded and checked in the request (a bad file is a 400 at once, even while others
wait); only model work goes to the worker. Errors use OpenAI's error body.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from assistant.errors import AssistantError, InputError
from assistant.inputs import load_audio
from assistant.serve import schemas
from assistant.serve.conversation import build_chat_turn
from assistant.serve.errors import ApiError, error_body, from_assistant_error
from assistant.serve.gate import Gate
from assistant.serve.media import media_folder
from assistant.serve.turns import AUDIO_TYPES, check_speech_format, run_chat, run_speech, run_transcription
from assistant.serve.worker import Job, Worker

POLL_S = 0.25
"""How often a waiting request checks that its client is still there."""


@dataclass
class ServeOptions:
    api_key: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    queue_size: int = 8
    """Requests that may wait behind the one running; more get a 429."""
    allow_commands: bool = False
    """Let requests run slash commands that declare no capabilities (never file readers)."""


class ClientGone(Exception):
    """The client disconnected while its request waited."""


def create_app(load: Callable[[], Any], options: ServeOptions | None = None, *,
               on_failed: Callable[[Exception], None] | None = None) -> FastAPI:
    """``load()`` returns the Assistant; it runs on the worker thread when the app starts."""
    options = options or ServeOptions()
    worker = Worker(load, capacity=options.queue_size, on_ready=_serving, on_failed=on_failed)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app):
        worker.start()
        yield
        await run_in_threadpool(worker.stop)

    app = FastAPI(title="Synesthesia", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker = worker
    app.add_middleware(Gate, api_key=options.api_key, max_body_bytes=options.max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        return JSONResponse(error_body(400, _validation_message(e.errors()), code="invalid_request"), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return JSONResponse(error_body(e.status_code, str(e.detail)), status_code=e.status_code)

    @app.get("/health")
    async def health():
        return {"status": worker.state, "error": worker.error or None, "load_s": round(worker.load_s, 2),
                "queued": worker.queued()}

    @app.get("/v1/models")
    async def models():
        return schemas.models_list(started)

    @app.get("/v1/models/{model}")
    async def model(model: str):
        if model != schemas.MODEL_ID:
            raise ApiError(404, f"model {model!r} not found; this server offers {schemas.MODEL_ID!r}", code="model_not_found")
        return schemas.model_card(started)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _parse(request, schemas.ChatRequest)  # bad JSON, schema, n, stop: a 400 even while the models load
        if body.n != 1:
            raise ApiError(400, "n: only one choice per request is supported (n=1)", param="n")
        if len(body.stops()) > 4:
            raise ApiError(400, "stop: at most 4 stop strings", param="stop")
        bot = worker.ready_bot()
        chat_turn = await _checked(build_chat_turn, body.messages, bot.settings, plugins=bot.plugins,
                                   allow_commands=options.allow_commands)
        fn = partial(_chat_job, chat_turn=chat_turn, sampling=body.sampling(), stops=body.stops())
        job = await _submit(worker, fn)
        try:
            first = await _next(job, request)
        except ClientGone:
            return Response(status_code=499)
        if first[0] == "error":
            raise _as_api_error(first[1])
        cid = schemas.completion_id()
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_sse(job, first, cid, body.model, include_usage), media_type="text/event-stream",
                                     headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        item = first
        try:
            while item[0] == "chunk":
                item = await _next(job, request)
        except ClientGone:
            return Response(status_code=499)
        if item[0] == "error":
            raise _as_api_error(item[1])
        result = item[1]
        return schemas.completion(cid, body.model, result.text, result.finish_reason,
                                  schemas.usage(result.prompt_tokens, result.completion_tokens), result.extra())

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        bot = worker.ready_bot()
        upload, fields = await _form(request)
        response_format = fields.get("response_format") or "json"
        if response_format not in ("json", "text", "verbose_json"):
            raise ApiError(400, f"response_format {response_format!r} is not supported here; use json, text or verbose_json",
                           param="response_format")
        data = await upload.read()
        samples = await _checked(_upload_audio, upload.filename, data, bot.settings.speech.max_audio_seconds)
        text = await _run(worker, request, lambda bot, cancel, emit: run_transcription(bot, samples))
        if response_format == "text":
            return PlainTextResponse(text + "\n")
        if response_format == "verbose_json":
            return {"task": "transcribe", "language": fields.get("language") or bot.settings.speech.language,
                    "duration": round(len(samples) / 16_000, 3), "text": text}
        return {"text": text}

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        body = await _parse(request, schemas.SpeechRequest)
        fmt = await _checked(check_speech_format, body.response_format)
        worker.ready_bot()
        audio = await _run(worker, request, lambda bot, cancel, emit: run_speech(bot, body.input, fmt))
        return Response(audio, media_type=AUDIO_TYPES[fmt])

    return app


# ---------------------------------------------------------------------- helpers


def _serving(bot) -> None:
    """Ready the loaded Assistant for requests: nobody at the server's terminal answers
    plugin permission prompts, so a plugin not trusted in settings is refused."""
    if getattr(bot, "plugins", None) is not None:
        bot.plugins.confirm = lambda plugin, message: False


def _chat_job(bot, cancel, emit, *, chat_turn, sampling, stops):
    return run_chat(bot, chat_turn, sampling=sampling, stops=stops, cancel=cancel, emit=emit)


def _upload_audio(filename: str | None, data: bytes, max_seconds: float):
    with media_folder() as folder:
        path = folder.upload(filename, data)
        with folder.checked():
            return load_audio(path, max_seconds=max_seconds)


async def _checked(fn, *args, **kwargs):
    """Run an input check off the event loop; its InputError is a 400."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except InputError as e:
        raise from_assistant_error(e) from e


async def _submit(worker: Worker, fn) -> Job:
    job = Job(fn, asyncio.get_running_loop())
    worker.submit(job)
    return job


async def _run(worker: Worker, request: Request, fn):
    """Submit a job that sends no chunks and wait for its result."""
    job = await _submit(worker, fn)
    try:
        kind, value = await _next(job, request)
    except ClientGone:
        raise ApiError(499, "client closed the request") from None
    if kind == "error":
        raise _as_api_error(value)
    return value


async def _next(job: Job, request: Request):
    """The job's next event; if the client leaves meanwhile, cancel the job (ClientGone)."""
    while True:
        try:
            return await asyncio.wait_for(job.events.get(), POLL_S)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                job.cancel.set()
                raise ClientGone from None


async def _sse(job: Job, first, cid: str, model: str, include_usage: bool):
    """OpenAI's chunk stream: the role, the text as it comes, the finish reason, [DONE].
    Starlette cancels this generator when the client disconnects; ``finally`` then stops the job."""
    def event(payload: dict) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"

    try:
        yield event(schemas.chunk(cid, model, {"role": "assistant", "content": ""}))
        item = first
        while True:
            kind, value = item
            if kind == "chunk":
                yield event(schemas.chunk(cid, model, {"content": value}))
            elif kind == "done":
                usage = schemas.usage(value.prompt_tokens, value.completion_tokens)
                yield event(schemas.chunk(cid, model, {}, value.finish_reason))
                if include_usage:
                    yield event(schemas.chunk(cid, model, {}, usage_=usage, choices=False))
                break
            else:
                yield event(_as_api_error(value).body())
                break
            item = await job.events.get()
        yield "data: [DONE]\n\n"
    finally:
        job.cancel.set()  # no-op when the turn is over; stops the generator when the client left


def _as_api_error(e: Exception) -> ApiError:
    if isinstance(e, AssistantError):
        return from_assistant_error(e)
    return ApiError(500, f"internal error ({type(e).__name__}); see the server log", code="internal_error")


async def _parse(request: Request, model):
    """The JSON body as ``model`` (whatever Content-Type the client sent), or a 400."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object", code="invalid_request")
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise ApiError(400, _validation_message(e.errors()), code="invalid_request") from e


async def _form(request: Request) -> tuple[UploadFile, dict[str, str]]:
    """A multipart form's ``file`` and its text fields, or a 400."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(400, "send the audio as multipart/form-data with a 'file' field", code="invalid_request")
    try:
        form = await request.form()
    except Exception as e:  # noqa: BLE001 - python-multipart's parse errors vary by version
        raise ApiError(400, f"the multipart body cannot be parsed ({type(e).__name__})", code="invalid_request") from e
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "file: an audio file is required (multipart field 'file')", param="file")
    return upload, {k: v for k, v in form.items() if isinstance(v, str)}


def _validation_message(errors: list) -> str:
    """Pydantic's first complaint in one line, e.g. ``messages: Field required``."""
    if not errors:
        return "invalid request"
    err = errors[0]
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
    where = ".".join(loc) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if err.get("type") == "json_invalid":
        return f"the request body is not valid JSON{more}"
    return f"{where}: {err.get('msg', 'invalid')}{more}"
