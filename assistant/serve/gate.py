"""What every request passes before a route sees it: the API key, then the body-size limit.

A pure ASGI middleware, so a refused request costs no parsing: a wrong key is answered from the
headers, and a body over the limit is refused from its Content-Length or, for a chunked upload,
as soon as the bytes read pass the limit (the body is never held beyond ``max_body_bytes``).
"""

from __future__ import annotations

import hmac
import json

from assistant.serve.errors import error_body

OPEN_PATHS = {"/health"}
"""Paths that answer without a key (a load balancer's health check)."""


class Gate:
    def __init__(self, app, *, api_key: str | None, max_body_bytes: int):
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key and scope["path"] not in OPEN_PATHS and not self._authorized(headers.get("authorization", "")):
            await _reply(send, 401, "Incorrect or missing API key: send the key the server was started with as "
                                    "'Authorization: Bearer KEY'", code="invalid_api_key",
                         headers={"www-authenticate": "Bearer"})
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _reply(send, 400, "Content-Length is not a number", code="bad_request")
                return
            if int(length) > self.max_body_bytes:
                await _reply(send, 413, self._too_large(int(length)), code="request_too_large")
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read it here, counting, and hand the app the whole body.
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await _reply(send, 413, self._too_large(None), code="request_too_large")
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    def _too_large(self, length: int | None) -> str:
        size = f"{length:,} bytes" if length is not None else "the request body"
        return f"{size} is over this server's {self.max_body_bytes:,}-byte limit (assistant serve --max-body-mb)"


async def _reply(send, status: int, message: str, *, code: str, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(error_body(status, message, code=code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
           (b"connection", b"close")]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
