"""Voice subcommands: ``assistant say``, ``assistant listen``, ``assistant talk``, ``assistant devices``.

* ``say "TEXT" [-o OUT.wav]``: speak text (markdown is cleaned; no generator is loaded); with ``-o`` write a WAV file,
  else play it (no speaker: written to a file in the data dir, with a one-line notice).
* ``listen [--device D] [--seconds N] [-o OUT.wav]``: microphone to transcript, ends on
  silence (toggle: Ctrl-C stops early and transcribes what was heard).
* ``talk [--device D] [--output-device D] [--no-barge-in] [--timings]``: hands-free
  conversation (:class:`assistant.voice.TalkLoop`): listen, answer aloud, listen again, until
  Ctrl-C; talking over a reply interrupts it. Without a microphone it says why in one line
  (exit status 2): files still work.
* ``devices [--json]``: audio inputs and outputs with their indices.

``models pull whisper:SIZE`` lives in the core CLI and calls
:func:`models.speech.asr.pull_whisper`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict

from assistant.errors import DeviceError, InputError


def add_commands(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    say = sub.add_parser("say", parents=parents, help="speak text aloud or into a WAV file")
    say.add_argument("text", help="what to say ('-' reads standard input); markdown is cleaned")
    say.add_argument("-o", "--output", metavar="OUT.wav", help="write the speech to this file instead of playing it")
    say.add_argument("--voice", help="voice: joe (Piper, the default) or a Piper .onnx file; with --engine espeak: en-us, en-gb, en-us+f3, ...")
    say.add_argument("--rate", type=int, help="speaking rate in words per minute")
    say.add_argument("--engine", help="synthesis engine: piper (default), espeak, coqui, or one a plugin registers")
    say.add_argument("--output-device", help="speaker by name or index (see `assistant devices`)")
    say.set_defaults(handler=cmd_say)

    listen = sub.add_parser("listen", parents=parents, help="transcribe the microphone until you stop speaking")
    listen.add_argument("--device", help="microphone by name or index (see `assistant devices`)")
    listen.add_argument("--seconds", type=float, default=30.0, help="give up after this long (default 30)")
    listen.add_argument("-o", "--output", metavar="OUT.wav", help="also save what was heard")
    listen.add_argument("--end-silence-ms", type=int, help="silence that ends the utterance (default from settings: 700)")
    listen.set_defaults(handler=cmd_listen)

    talk = sub.add_parser("talk", parents=parents, help="hands-free conversation: listen, answer aloud, repeat (Ctrl-C ends)")
    talk.add_argument("--device", help="microphone by name or index (see `assistant devices`)")
    talk.add_argument("--output-device", help="speaker by name or index")
    talk.add_argument("--no-barge-in", action="store_true",
                      help="do not listen while the assistant speaks (talking over it does not interrupt)")
    talk.add_argument("--timings", action="store_true",
                      help="after each reply, print how long each stage took (end of speech to first sound)")
    talk.set_defaults(handler=cmd_talk)

    devices = sub.add_parser("devices", parents=parents, help="list audio inputs and outputs")
    devices.add_argument("--json", action="store_true", help="print the list as JSON")
    devices.set_defaults(handler=cmd_devices)


def _text_arg(text: str) -> str:
    from assistant.inputs import check_text

    if text == "-":
        text = sys.stdin.buffer.read()  # type: ignore[assignment]
    return check_text(text, name="say")


def _settings(args: argparse.Namespace):
    """The settings alone: `say` and `devices` need no generator, so they do not load the assistant."""
    from assistant.cli import load_settings

    return load_settings(args)


def _synthesizer(args: argparse.Namespace):
    """A synthesizer from the settings, with --engine/--voice/--rate applied; engines that
    plugins register are chosen by name like the built-in ones (no generator is loaded)."""
    from assistant import paths
    from assistant.errors import InstallError, ModelError
    from assistant.pipeline import speech_engines
    from models.speech.weights import WeightsError
    from assistant.plugin_host import load_plugins

    settings = _settings(args)
    s = settings.speech
    host = load_plugins(settings.plugins, enabled=settings.plugins.enabled and not getattr(args, "no_plugins", False))
    engines = speech_engines(host, lambda message, severity: print(f"{severity}: {message}", file=sys.stderr))
    engine, voice, rate = args.engine or s.tts, args.voice or s.voice, (s.rate if args.rate is None else args.rate)
    try:
        synth = engines.synthesizer(engine, voice=voice, rate=rate, language=s.language,
                                    cache_dir=paths.cache_dir() / "speech")
    except WeightsError as e:
        raise InstallError(str(e)) from e
    except ValueError as e:
        raise InputError(f"say: {e}") from e
    except (RuntimeError, OSError) as e:
        raise ModelError(f"say: {e}") from e
    if getattr(synth, "fallback_reason", None):
        print(f"speaking with {synth.name}: {synth.fallback_reason}", file=sys.stderr)
    return synth


def cmd_say(args: argparse.Namespace) -> int:
    from assistant.voice import SpeechOutput, speak_text

    text = _text_arg(args.text)
    synth = _synthesizer(args)
    if args.output:
        import soundfile as sf

        audio, rate = speak_text(synth, text)
        if audio.size == 0:
            raise InputError("say: nothing speakable in the text")
        try:
            sf.write(args.output, audio, rate, subtype="PCM_16")
        except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as e:
            raise InputError(f"{args.output}: cannot write audio ({e}); use a .wav, .flac or .ogg name") from e
        print(f"{args.output}: {len(audio) / rate:.1f} s of speech ({synth.name})")
        return 0
    out = SpeechOutput(synth, device=args.output_device or _settings(args).voice.output_device)
    try:
        spoken = out.speak(text)
    except KeyboardInterrupt:
        out.stop()
        return 130
    finally:
        out.close()
    if spoken.audio.size == 0:
        raise InputError("say: nothing speakable in the text")
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    from assistant.voice import Listener, sounddevice

    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise InputError(f"listen: --seconds {args.seconds:g}: give a positive number of seconds")
    if args.end_silence_ms is not None and not 100 <= args.end_silence_ms <= 5000:
        raise InputError(f"listen: --end-silence-ms {args.end_silence_ms} is out of range (100-5000, as voice.end_silence_ms)")
    sounddevice()  # no PortAudio: say so before loading any model
    bot = args.load_bot()
    state = {"level": 0.0}

    def meter(level: float) -> None:
        if sys.stderr.isatty():
            bar = "#" * int(level * 30)
            print(f"\r\033[2mlistening {bar:<30}\033[0m", end="", file=sys.stderr, flush=True)
        state["level"] = level

    listener = Listener(bot.settings, device=args.device, on_level=meter, end_silence_ms=args.end_silence_ms)
    print("listening… speak, then pause (Ctrl-C stops)", file=sys.stderr)
    try:
        audio = listener.listen(timeout=args.seconds)
    except KeyboardInterrupt:
        listener.stop(transcribe=False)
        audio = listener._result if listener._result is not None else None
    finally:
        if sys.stderr.isatty():
            print("\r" + " " * 45 + "\r", end="", file=sys.stderr)
    if audio is None or audio.size == 0:
        print("(no speech heard)", file=sys.stderr)
        return 1
    if args.output:
        import soundfile as sf

        sf.write(args.output, audio, 16_000, subtype="PCM_16")
    text = bot.transcribe(audio)
    print(text)
    print(f"[{bot.recognizer.name}]", file=sys.stderr)
    return 0 if text else 1


def _talk_streams():
    """The audio devices ``talk`` uses: None, the real ones. Tests put fake devices here."""
    return None


FILES_STILL_WORK = "files still work: assistant ask --audio Q.wav --speak R.wav"


def _no_microphone(reason: str) -> int:
    reason = reason.split("; files still work")[0].split("; pick one with")[0]
    print(f"assistant talk: cannot listen: {reason}; {FILES_STILL_WORK}", file=sys.stderr)
    return 2


def cmd_talk(args: argparse.Namespace) -> int:
    from assistant.voice import TalkLoop, list_devices

    streams = _talk_streams()
    if streams is None:  # real devices: say what is missing before loading any model
        try:
            if not any(d.inputs > 0 for d in list_devices()):
                return _no_microphone("no microphone found (PortAudio sees no input device)")
        except DeviceError as e:
            return _no_microphone(str(e))
    bot = args.load_bot()
    out = sys.stdout
    tty = sys.stderr.isatty()

    def heard(text: str) -> None:
        print(f"you> {text}", file=out, flush=True)
        print("bot> ", end="", file=out, flush=True)

    def chunk(text: str) -> None:
        print(text, end="", file=out, flush=True)

    def turn_done(turn) -> None:
        print(" [interrupted]" if turn.interrupted else "", file=out, flush=True)
        if args.timings:
            parts = [f"{k.replace('_', ' ')} {v:.2f}s" for k, v in turn.breakdown().items() if v is not None]
            print(f"[{' · '.join(parts)}]", file=sys.stderr, flush=True)

    def state(name: str) -> None:
        if tty and name == "listening":
            print("\033[2m(listening…)\033[0m", file=sys.stderr, flush=True)

    def problem(line: str) -> None:
        print(f"assistant talk: {line}", file=sys.stderr, flush=True)

    try:
        loop = TalkLoop(bot, streams=streams, input_device=args.device, output_device=args.output_device,
                        barge_in=False if args.no_barge_in else None, on_heard=heard, on_chunk=chunk,
                        on_turn=turn_done, on_state=state, on_error=problem, on_notice=problem)
    except ValueError as e:
        raise InputError(f"talk: {e}") from e
    print("speak, then pause; talk over a reply to interrupt it (Ctrl-C ends)"
          if not args.no_barge_in else "speak, then pause (Ctrl-C ends)", file=sys.stderr, flush=True)
    try:
        loop.run()
    except DeviceError as e:  # the microphone could not be opened
        return _no_microphone(str(e))
    if loop.error:
        print(f"assistant talk: stopped: {loop.error}", file=sys.stderr)
        return 1
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from assistant.voice import list_devices

    devices = list_devices()
    if args.json:
        print(json.dumps([asdict(d) for d in devices], indent=2))
        return 0
    if not devices:
        raise DeviceError("no audio devices found (PortAudio sees none); files still work: --audio, -o")
    for kind in ("input", "output"):
        rows = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
        print(f"{kind}s:")
        for d in rows:
            mark = "*" if (d.default_input if kind == "input" else d.default_output) else " "
            ch = d.inputs if kind == "input" else d.outputs
            print(f" {mark}{d.index:>3}  {d.name}  ({ch} ch, {d.default_rate:.0f} Hz{', ' + d.hostapi if d.hostapi else ''})")
        if not rows:
            print("    (none)")
    return 0
