"""`assistant serve`: the whole pipeline behind an OpenAI-compatible HTTP API.

    cli.py           the `serve` subcommand (address and key checks, uvicorn)
    app.py           the ASGI app: routes, error rendering, the loading state
    gate.py          API key and request-body limit, before any route runs
    schemas.py       request bodies and OpenAI-shaped responses
    conversation.py  a request's messages -> system prompt, history and a checked Turn
    media.py         data: URLs and base64 audio -> files the input checks read
    turns.py         what runs on the worker: a chat turn (stop strings, usage), transcription, speech
    worker.py        one thread owns the models: background load, a bounded queue, cancellation
    errors.py        ApiError and the OpenAI error body
    background.py    serving(): the API in a thread on a free loopback port (tests, benchmarks)

Every request carries its own conversation; the worker runs one at a time.
"""
