"""``assistant serve``: run the API server (see assistant/serve/app.py for the routes).

Loopback by default; any other address needs ``--api-key`` (the server refuses to start
without one). The port is bound before the models load, so a busy port is a one-line error;
the models then load in the background (requests get 503 until they are ready).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import time

from assistant.errors import AssistantError, InputError


def add_commands(sub, parents) -> None:
    p = sub.add_parser("serve", parents=parents, help="serve the assistant over an OpenAI-compatible HTTP API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' (needed off loopback)")
    p.add_argument("--queue", type=int, default=8, metavar="N",
                   help="requests that may wait behind the running one; more get 429 (default: 8)")
    p.add_argument("--max-body-mb", type=float, default=32.0, metavar="MB",
                   help="largest request body; larger gets 413 (default: 32)")
    p.add_argument("--allow-commands", action="store_true",
                   help="let requests run slash commands that read no files and run no programs")
    p.set_defaults(handler=cmd_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    if not is_loopback(args.host) and not args.api_key:
        raise InputError(f"serve: {args.host} is not a loopback address; anyone who can reach it could use the "
                         "assistant, so give --api-key KEY")
    if args.queue < 1 or args.max_body_mb <= 0 or not 0 <= args.port <= 65535:
        raise InputError("serve: --queue must be >= 1, --max-body-mb > 0 and --port 0-65535")
    try:
        import uvicorn

        from assistant.serve.app import ServeOptions, create_app
    except ImportError as e:
        raise InputError(f"serve: {e.name} is not installed (pip install 'synesthesia' installs fastapi and uvicorn)") from e
    from assistant.cli import load_settings

    settings = load_settings(args)
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/v1"
    failed: list[Exception] = []
    server: uvicorn.Server | None = None
    t0 = time.perf_counter()

    def load():
        bot = load_for_serving(settings)
        print(f"models ready in {time.perf_counter() - t0:.1f} s; serving {url}", file=sys.stderr, flush=True)
        return bot

    def on_failed(e: Exception) -> None:
        failed.append(e)
        if server is not None:
            server.should_exit = True

    options = ServeOptions(api_key=args.api_key, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                           queue_size=args.queue, allow_commands=args.allow_commands)
    app = create_app(load, options, on_failed=on_failed)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5))
    print(f"listening on {url} (models loading; requests get 503 until they are ready)", file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    if failed:
        e = failed[0]
        if isinstance(e, AssistantError):
            raise e
        raise AssistantError(f"serve: loading the models failed: {e}")
    return 0


def load_for_serving(settings):
    """The Assistant with everything a request may need loaded now, not on the first request:
    the generator (its system prompt prefilled), the tools' router, the image encoder and fusion
    core, and the speech engines. A model that cannot load is reported in one line and only the
    requests that need it fail."""
    from assistant.pipeline import Assistant

    bot = Assistant.load(settings, plugins=True)
    bot.warm_up()
    for slot in ("fusion", "recognizer", "synthesizer"):  # the fusion core needs the image encoder first
        try:
            getattr(bot, slot)
        except AssistantError as e:
            print(f"warning: {e}", file=sys.stderr, flush=True)
    return bot


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(f"serve: cannot listen on {host}:{port} ({e.strerror or e})") from e
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
