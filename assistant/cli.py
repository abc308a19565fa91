"""The `assistant` command.

    assistant                          the terminal UI (a line REPL where it is unavailable)
    assistant ask "TEXT" [--image P]... [--audio P]... [--json] [--speak OUT.wav] [--attention OUT.png]
    assistant chat                     a line REPL with history
    assistant models [--json]          each model slot and where its weights came from
    assistant models pull whisper:base download Whisper weights (needs network)
    assistant serve [--host H] [--port P] [--api-key KEY]   an OpenAI-compatible HTTP API

Common options: --config FILE, --offline / --online, --no-plugins.

Exit status (the README says the same): 0 done; 2 a mistake the user can fix (bad input or
arguments, an unknown command, a bad setting, a missing or damaged package, no audio
device); 1 something failed while running (a model or a plugin); 130 interrupted (Ctrl-C). A failure is
one line on stderr, never a traceback; with ``--json`` (any command) also ``{"error": ...}`` on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Callable

from assistant import paths
from assistant.errors import AssistantError, InputError

FEATURE_MODULES = ["assistant.voice_cli", "assistant.sessions_cli", "assistant.plugins_cli", "assistant.train_cli",
                   "assistant.serve.cli", "assistant.draw_cli"]
"""Modules that add subcommands with ``add_commands(sub, parents)``."""


def _common(top: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name. Only the top-level parser
    sets defaults, so a subcommand does not reset an option given before it."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    unset = {} if top else {"default": argparse.SUPPRESS}
    g.add_argument("--config", metavar="FILE", help="settings file (default: config.toml in the user config dir)", **unset)
    net = g.add_mutually_exclusive_group()
    net.add_argument("--offline", dest="offline", action="store_const", const=True,
                     help="forbid every download (the default)", **({"default": None} if top else unset))
    net.add_argument("--online", dest="offline", action="store_const", const=False,
                     help="allow downloading hub models named in the settings", **unset)
    g.add_argument("--no-plugins", action="store_true", help="do not load third-party plugins", **unset)
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common(top=False)
    parser = argparse.ArgumentParser(
        prog="assistant", parents=[_common(top=True)],
        description="Synesthesia: a multimodal assistant for the terminal (text, images, speech).",
    )
    from assistant import __version__

    parser.add_argument("--version", action="version", version=f"synesthesia {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ask = sub.add_parser("ask", parents=[common], help="ask one question and print the reply")
    ask.add_argument("text", nargs="?", default="", help="the question ('-' reads standard input)")
    ask.add_argument("--image", action="append", default=[], metavar="PATH", help="attach an image (repeatable)")
    ask.add_argument("--audio", action="append", default=[], metavar="PATH", help="attach an audio file (repeatable)")
    ask.add_argument("--json", action="store_true", help="print the reply, transcript, evidence and timings as JSON")
    ask.add_argument("--speak", metavar="OUT.wav", help="also write the spoken reply to this file")
    ask.add_argument("--attention", metavar="OUT.png",
                     help="also write the image with a heat map of where the fusion core looked (several images: "
                          "OUT-1.png, OUT-2.png, ...)")
    ask.set_defaults(handler=cmd_ask)

    chat = sub.add_parser("chat", parents=[common], help="a line-by-line chat in the terminal")
    chat.set_defaults(handler=cmd_chat)

    models = sub.add_parser("models", parents=[common], help="list model slots, or pull weights")
    models.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    models.add_argument("name", nargs="?", help="with pull: whisper:SIZE (tiny, base, small, medium, large-v3, turbo)")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=cmd_models)

    for module_name in FEATURE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            if e.name != module_name:
                raise
            continue
        module.add_commands(sub, [common])
    return parser


def _loader(args: argparse.Namespace) -> Callable:
    """What handlers call to get the assistant (once), honouring the common options."""
    cache = {}

    def load_bot(progress=None):
        if "bot" not in cache:
            from assistant.pipeline import Assistant

            settings = load_settings(args)
            cache["bot"] = Assistant.load(settings, plugins=True, progress=progress or _progress)
        return cache["bot"]

    return load_bot


def load_settings(args: argparse.Namespace):
    """The settings every command uses: the file (``--config`` or the default), the environment,
    then ``--offline``/``--online`` and ``--no-plugins``. Options a caller's namespace lacks are unset."""
    from assistant.config import Settings

    settings = Settings.load(getattr(args, "config", None))
    if getattr(args, "offline", None) is not None:
        settings.offline = args.offline
    if getattr(args, "no_plugins", False) or os.environ.get("SYNESTHESIA_NO_PLUGINS") == "1":
        settings.plugins.enabled = False
    return settings


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"\033[2m{message}…\033[0m", file=sys.stderr)


# ---------------------------------------------------------------------- commands


def cmd_ask(args: argparse.Namespace) -> int:
    text = args.text
    if text == "-":
        data = sys.stdin.buffer.read()
        text = data  # bytes: check_text reports invalid UTF-8 with its position
    if not text and not args.image and not args.audio:
        raise InputError("ask: give a question, an --image or an --audio file")
    if args.attention:  # checked before any model loads
        if not args.image:
            raise InputError("--attention: give an --image too (the map is drawn over it)")
        _check_png_path(args.attention)
    from assistant.pipeline import MessageTooLong, prepare_turn

    settings = load_settings(args)
    turn = prepare_turn(settings, text, args.image, args.audio)  # bad input fails before loading models
    from assistant.plugin_host import is_command

    if is_command(turn.text) and not (args.image or args.audio):
        return _ask_command(turn.text.strip(), settings, args)
    bot = args.load_bot()

    def show(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()

    # With --speak the reply is synthesized sentence by sentence while it is generated.
    try:
        reply = bot.ask(turn=turn, speak=bool(args.speak), on_text=None if args.json else show)
    except MessageTooLong as e:
        if args.json:  # the work done so far (a transcript) is printed, not lost
            print(json.dumps({"error": str(e), "exit_code": e.exit_code, "transcript": e.transcript,
                              "transcript_file": str(e.saved_to) if e.saved_to else None,
                              "tokens": e.tokens, "budget": e.budget}, ensure_ascii=False, indent=2))
            e.json_printed = True
        raise
    if not args.json:
        sys.stdout.write("\n")
    if args.speak:
        _write_wav(args.speak, reply.audio, reply.sample_rate)
    if args.attention:
        _write_attention(args.attention, turn.images, reply, bot)
    if args.json:
        print(json.dumps(reply.to_dict(), ensure_ascii=False, indent=2))
    return 0


def _check_png_path(path: str) -> None:
    """A place --attention can write a PNG, or a one-line InputError saying why not."""
    from pathlib import Path

    p = Path(path).expanduser()
    if p.is_dir():
        raise InputError(f"--attention {path}: that is a folder; give a file name such as {p / 'attention.png'}")
    if p.suffix.lower() != ".png":
        raise InputError(f"--attention {path}: the map is written as a PNG; give a name ending in .png")
    parent = p.parent
    if not parent.is_dir():
        raise InputError(f"--attention {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"--attention {path}: cannot write in the folder {parent}")


def _write_attention(path: str, images: list, reply, bot) -> None:
    """Draw each image's attention map over it (OUT.png, or OUT-1.png, OUT-2.png, ... for several);
    each entry of ``reply.attention`` gets its ``file``. A caveat, if any, goes to stderr."""
    from pathlib import Path

    from assistant.turns import attention_caveat
    from models.attention import AttentionMap, draw_attention

    if not any(reply.attention):
        why = (f"the fusion core did not run ({bot.fusion_source})" if bot.fusion is None else
               "the fusion core reported no attention over an image grid (its strategy or the image encoder's tokens)")
        raise InputError(f"--attention: no map to draw: {why}")
    p = Path(path).expanduser()
    for i, entry in enumerate(reply.attention):
        if entry is None:
            continue
        out = p if len(images) == 1 else p.with_name(f"{p.stem}-{i + 1}{p.suffix}")
        try:
            draw_attention(images[i], AttentionMap.from_dict(entry)).save(out, format="PNG")
        except (OSError, ValueError) as e:
            raise InputError(f"--attention {out}: cannot write the map ({e})") from e
        entry["file"] = str(out)
        print(f"assistant: attention map of {entry['image']} written to {out}", file=sys.stderr)
        caveat = attention_caveat(entry)
        if caveat:
            print(f"assistant: note: {caveat}", file=sys.stderr)


def _ask_command(line: str, settings, args: argparse.Namespace) -> int:
    """A slash command needs no model: run it through the plugins alone (fast)."""
    from assistant.plugin_host import load_plugins
    from plugins.types import BasicContext

    host = load_plugins(settings.plugins, enabled=settings.plugins.enabled and not args.no_plugins)
    try:
        result = host.run_command(line, BasicContext(settings=settings, folder=paths.data_dir))
        if result is not None and result.text:
            result.text = host.transform_reply(result.text)  # as in chat and the terminal UI
    finally:
        host.close()
    if result is None:
        raise InputError(f"{line.split()[0]}: not a command")
    if args.json:
        print(json.dumps({"command": result.command, "text": result.text, "data": result.data}, ensure_ascii=False,
                         indent=2, default=str))
    else:
        print(result.text)
    return 0


def _write_wav(path: str, audio, rate) -> None:
    import soundfile as sf

    if audio is None:
        raise InputError(f"{path}: the reply was empty, nothing to speak")
    try:
        sf.write(path, audio, rate)
    except (OSError, RuntimeError) as e:
        raise InputError(f"{path}: cannot write audio ({e})") from e


CHAT_HELP = """chat commands: /image PATH  attach an image to the next message
               /audio PATH  attach an audio file to the next message
               /reset       forget the conversation     /quit  leave (or Ctrl-D)
plugin commands:"""


def cmd_chat(args: argparse.Namespace) -> int:
    """A line REPL. Each turn is saved in a new session of the session store (see `assistant sessions`)."""
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    from assistant.background import warm_up_in_background
    from assistant.plugin_host import is_command
    from assistant.storage import SessionStore

    bot = args.load_bot()
    # The intent router and the system prompt's keys and values, while the first line is typed:
    # a first tool question ("What is 7 times 8?") otherwise waits for the router (7.3 s to the
    # first chunk here); a plain one typed while it loads waits a little longer (0.33-0.43 s
    # instead of 0.19 s, two cores), and after it 0.08-0.13 s. Piped input is there already: no gain.
    if sys.stdin.isatty():
        warm_up_in_background(bot)
    images: list[str] = []
    audio: list[str] = []
    with SessionStore.open(write=True) as store:
        session = store.create_session()
        bot.on_note = lambda text: store.add_note(session.id, text)
        print(f"Synesthesia chat (session {session.id}). /help for commands, Ctrl-D to leave.", file=sys.stderr)
        while True:
            try:
                line = input("you> ")
            except EOFError:
                print(file=sys.stderr)
                return 0
            except KeyboardInterrupt:
                print(file=sys.stderr)
                continue
            stripped = line.strip()
            if not stripped:
                continue
            try:
                if is_command(stripped):
                    if _chat_command(bot, stripped, images, audio):
                        return 0
                    continue
                _chat_turn(bot, store, session.id, stripped, images, audio)
                images, audio = [], []
            except AssistantError as e:
                print(f"error: {e}", file=sys.stderr)


def _chat_command(bot, line: str, images: list[str], audio: list[str]) -> bool:
    """Handle a /command in the REPL; True means leave."""
    cmd, _, rest = line.partition(" ")
    if cmd in ("/quit", "/exit"):
        return True
    if cmd == "/reset":
        bot.reset()
        print("(conversation cleared)")
    elif cmd in ("/image", "/audio"):
        path = os.path.expanduser(rest.strip())
        if not path:
            raise InputError(f"{cmd}: give a file path")
        kind = {"/image": "images", "/audio": "audio"}[cmd]
        bot.prepare("", **{kind: [path]})  # check the file now, not at the next message
        (images if cmd == "/image" else audio).append(path)
        print(f"(attached {os.path.basename(path)})")
    else:
        result = bot.command(line)  # plugin commands (/calc, /read, /save, ...)
        if result is None:
            raise InputError(f"{cmd}: unknown command")
        if cmd == "/help":
            print(CHAT_HELP)
        print(result.text)
    return False


def _chat_turn(bot, store, session_id: int, text: str, images: list[str], audio: list[str]) -> None:
    """One streamed reply, recorded as it arrives (a crash keeps what was said, marked partial)."""
    writer = store.begin_turn(session_id, text, images=images, audio=audio)
    print("bot> ", end="", flush=True)
    try:
        for chunk in bot.stream(text, images=images, audio=audio):
            writer.append(chunk)
            print(chunk, end="", flush=True)
        writer.finish(bot.last_reply)
    except KeyboardInterrupt:
        bot.cancel()
        writer.finish(bot.last_reply, partial=True, stop_reason="cancelled")
        print(" [stopped]", end="")
    except AssistantError as e:
        kept = getattr(e, "reply", None)  # a transcript too long to answer about: keep it in the session
        if kept is not None:
            writer.finish(kept, partial=True, stop_reason=str(e))
        elif writer.text:
            writer.abort(str(e))  # keep what was said, marked partial
        else:
            store.delete_turn(writer.turn_id)
        raise
    finally:
        print()


def cmd_models(args: argparse.Namespace) -> int:
    if args.action == "pull":
        return _pull(args)
    bot = args.load_bot()
    infos = bot.models()
    if args.json:
        print(json.dumps([vars(i) for i in infos], indent=2))
        return 0
    width = max(len(i.slot) for i in infos)
    for i in infos:
        print(f"{i.slot:<{width}}  {i.name}")
        print(f"{'':<{width}}    from: {i.source}")
        if i.detail:
            print(f"{'':<{width}}    {i.detail}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    name = args.name or ""
    kind, _, size = name.partition(":")
    if kind != "whisper" or not size:
        raise InputError(f"models pull: {name or '(nothing)'}: say which model, e.g. whisper:base")
    settings = load_settings(args)
    if args.offline:
        raise InputError("models pull: --offline forbids downloads")
    from models.speech.asr import pull_whisper

    try:
        path = pull_whisper(size, whisper_dir=settings.speech.whisper_dir)
    except (RuntimeError, ValueError, OSError) as e:
        raise AssistantError(f"models pull {name}: {e}") from e
    print(f"whisper:{size} ready at {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.load_bot = _loader(args)
    try:
        if getattr(args, "handler", None) is None:
            return run_default(args)
        return args.handler(args)
    except AssistantError as e:
        if getattr(args, "json", False) is True and not getattr(e, "json_printed", False):
            # --json always prints JSON: a failure is an object with an "error" field
            print(json.dumps({"error": str(e), "exit_code": e.exit_code}, ensure_ascii=False, indent=2))
        print(f"assistant: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def run_default(args: argparse.Namespace) -> int:
    """No subcommand: the terminal UI when stdin and stdout are a terminal, else the line REPL."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return cmd_chat(args)
    from assistant.tui import run as run_tui

    return run_tui(load_settings(args), args.load_bot, config_file=getattr(args, "config", None))


if __name__ == "__main__":
    sys.exit(main())
