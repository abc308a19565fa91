"""Errors as OpenAI's API shapes them: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from assistant.errors import AssistantError, InputError, first_line

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
         500: "server_error", 503: "server_error"}


class ApiError(Exception):
    """An error response: HTTP status, a one-line message, OpenAI's ``code`` and ``param``."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.status, self.message, code=self.code, param=self.param)


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
                      "param": param, "code": code}}


def from_assistant_error(e: AssistantError) -> ApiError:
    """The user's mistake (bad input, a refused command, a message over the context budget) is
    a 400; a model failing is a 500."""
    from assistant.pipeline import MessageTooLong

    message = first_line(e)
    if isinstance(e, MessageTooLong):  # as OpenAI answers a prompt over the model's context
        return ApiError(400, message, code="context_length_exceeded", param="messages")
    if isinstance(e, InputError):
        return ApiError(400, message, code="invalid_input")
    return ApiError(500, message, code=type(e).__name__.removesuffix("Error").lower() + "_error")
