"""A request's ``messages`` -> what one turn of the pipeline needs, checked before it queues.

* system and developer messages -> the system prompt for this request (else the configured one);
* earlier user and assistant messages -> the history, as text (images and audio in earlier
  messages are not encoded again: the pipeline keeps history as text);
* the last message, which must be the user's -> a :class:`~assistant.pipeline.Turn` made by
  :func:`~assistant.pipeline.prepare_turn`, so its images and audio pass the CLI's checks.

Slash commands: a request never runs one unless the server was started with
``--allow-commands``, and even then never one that declares capabilities (reading files,
running programs): those act on the server's machine, not the client's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assistant.errors import InputError
from assistant.inputs import check_text
from assistant.pipeline import Turn, prepare_turn
from assistant.plugin_host.commands import is_command
from assistant.serve.media import media_folder
from assistant.serve.schemas import Message

MAX_IMAGES = 8
MAX_AUDIO = 4


@dataclass
class ChatTurn:
    turn: Turn
    history: list[dict] = field(default_factory=list)
    system: str | None = None


def build_chat_turn(messages: list[Message], settings, *, plugins=None, allow_commands: bool = False) -> ChatTurn:
    """Raises InputError (a 400) naming the message and part at fault."""
    if messages[-1].role != "user":
        raise InputError(f"messages[{len(messages) - 1}]: the last message must be the user's (got {messages[-1].role!r})")
    system = [_text_only(m, i) for i, m in enumerate(messages) if m.role in ("system", "developer")]
    history = [{"role": m.role, "content": _text_only(m, i)} for i, m in enumerate(messages[:-1])
               if m.role in ("user", "assistant")]
    last = len(messages) - 1
    with media_folder() as folder:
        texts, images, audio = [], [], []
        for j, part in enumerate(_parts(messages[last], last)):
            where = f"messages[{last}].content[{j}]"
            kind = part.get("type")
            if kind == "text":
                texts.append(_string(part.get("text"), f"{where}.text"))
            elif kind == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                images.append(folder.image_from_url(_string(url, f"{where}.image_url.url"), f"{where}.image_url"))
            elif kind == "input_audio":
                spec = part.get("input_audio")
                if not isinstance(spec, dict):
                    raise InputError(f"{where}.input_audio: expected an object with 'data' and 'format'")
                audio.append(folder.audio_from_base64(_string(spec.get("data"), f"{where}.input_audio.data"),
                                                      str(spec.get("format") or ""), f"{where}.input_audio"))
            else:
                raise InputError(f"{where}: part type {kind!r} is not supported (text, image_url, input_audio)")
        if len(images) > MAX_IMAGES or len(audio) > MAX_AUDIO:
            raise InputError(f"messages[{last}]: at most {MAX_IMAGES} images and {MAX_AUDIO} audio clips a message")
        text = "\n".join(texts)
        check_command(text, plugins, allow_commands)
        with folder.checked():
            turn = prepare_turn(settings, text, images, audio)  # decoded into memory: the folder can go
    return ChatTurn(turn=turn, history=history, system="\n\n".join(s for s in system if s) or None)


def check_command(text: str, plugins, allow: bool) -> None:
    """Refuse a slash command the operator has not allowed (see the module docstring)."""
    line = text.strip()
    if plugins is None or not is_command(line):  # "//x" is text for the model
        return
    name = line[1:].split(maxsplit=1)[0].lower()
    if not allow:
        raise InputError(f"/{name}: slash commands are off for API requests (the operator can start "
                         "`assistant serve --allow-commands`)")
    command = plugins.resolve(name)
    if command is not None and command.capabilities:
        raise InputError(f"/{command.name}: this command acts on the server's machine "
                         f"({', '.join(sorted(command.capabilities))}); it never runs from an API request")


def _parts(message: Message, index: int) -> list[dict]:
    if message.content is None:
        raise InputError(f"messages[{index}]: content is missing")
    if isinstance(message.content, str):
        return [{"type": "text", "text": message.content}]
    return message.content


def _text_only(message: Message, index: int) -> str:
    """An earlier message's text (its media parts are not carried into history)."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return check_text(message.content, name=f"messages[{index}].content")
    text = "\n".join(_string(p.get("text"), f"messages[{index}].content[{j}].text")
                     for j, p in enumerate(message.content) if p.get("type") == "text")
    return check_text(text, name=f"messages[{index}].content")


def _string(value, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: expected a string")
    return value
