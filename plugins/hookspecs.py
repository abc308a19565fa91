"""The plugin contract: the hooks a Synesthesia plugin may implement.

A plugin is a module (or any object) with functions marked ``@hookimpl``. Each hook receives a
``register`` callback and calls it once per thing it provides; a hook returns nothing. The
built-in plugins (``plugins.builtin``) use these same hooks. ::

    from plugins import hookimpl

    @hookimpl
    def register_commands(register):
        register(shout, name="shout", help="Repeat the text in capitals")

    def shout(args, ctx):
        return args.upper()

``hookimpl`` is ``pluggy.HookimplMarker("synesthesia")``; a plugin may make its own marker
with that project name instead of importing ours.

Every hook is optional. A hook that raises, or runs past ``settings.plugins.timeout_s``, makes
the host skip the whole plugin (nothing it registered is kept) and report why. Later, a
command, tool or transform that runs past its time limit turns its plugin off for the rest of
the session (Python cannot stop its thread).
"""

from __future__ import annotations

import pluggy

PROJECT = "synesthesia"

PLUGIN_API = 1
"""The version of this contract. A plugin may declare the version it was written for with a
module (or object) attribute ``SYNESTHESIA_PLUGIN_API = 1``; the host refuses, in one line, a
plugin that needs a newer contract than this one or one it no longer supports. A plugin that
declares nothing is taken to be written for version 1. The number grows only when a change
would break existing plugins (a hook removed, a ``register(...)`` argument changing meaning)."""

OLDEST_PLUGIN_API = 1
"""The oldest contract version this host still loads."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_commands(register):
    """Add slash commands (``/name ARGS``), usable in the terminal UI, ``assistant chat`` and ``ask``.

    ``register(fn, name=None, help=None, *, usage="", aliases=(), capabilities=(), timeout_s=None)``

    - ``fn(args: str, ctx) -> CommandResult | str | None``: ``args`` is the text after the
      command name; ``ctx`` is a :class:`plugins.types.CommandContext`. Raise
      ``assistant.errors.InputError`` for a user's mistake (bad arguments, missing file).
    - ``name`` defaults to the function's name; ``help`` to the first line of its docstring.
    - ``capabilities``: any of ``"read_files"``, ``"write_files"``, ``"run_commands"``,
      ``"network"``; the user is asked once per session before the first use unless the plugin
      is listed in ``settings.plugins.trusted``.
    """


@hookspec
def register_tools(register):
    """Add tools: things the assistant does when a request asks for them in plain words.

    ``register(fn, name=None, *, description, examples, threshold=None, guard=None,
    capabilities=(), timeout_s=None)``

    - ``fn(text: str, ctx) -> ToolResult | str | dict``: ``text`` is the user's request. The
      result's ``text`` is given to the generator, which phrases the reply.
    - ``examples``: a few requests this tool should answer ("what is 17% of 230"). The router
      embeds them with a small sentence encoder and fires the tool when a request is at least
      ``threshold`` similar (cosine, 0..1) to one of them.
    - ``guard(text) -> bool``: optional cheap check run before the tool fires (for example,
      "the request holds a number"), which keeps near-misses from firing it.
    """


@hookspec
def register_encoders(register):
    """Add modality encoders: a new modality, or a replacement for a built-in encoder.

    ``register(name, factory, *, modality, description="")``

    ``factory(**options)`` builds the encoder. For ``modality="image"`` it must behave like
    ``models.image.ImageEncoder`` (``encode(list[PIL.Image]) -> ImageFeatures``); other
    modalities are free-form and listed in ``host.encoders``.
    """


@hookspec
def register_speech_engines(register):
    """Add speech engines: recognizers (speech to text) and synthesizers (voices).

    ``register(name, factory, *, kind, description="")`` with ``kind`` ``"recognizer"`` or
    ``"synthesizer"``. ``factory(**options)`` returns an object with the ``models.speech``
    interface: a recognizer has ``.name`` and ``.transcribe(audio: np.ndarray) -> str``
    (float32 mono 16 kHz); a synthesizer has ``.name``, ``.sample_rate`` and
    ``.synthesize(text) -> np.ndarray``. Select one by name in ``[speech]`` settings.
    """


@hookspec
def register_turn_transforms(register):
    """Observe or change a turn before it is encoded.

    ``register(fn)`` with ``fn(turn) -> Turn | None``. ``turn`` is an
    ``assistant.pipeline.Turn`` as the user gave it: ``text``, ``images`` (PIL, RGB) with
    ``image_names``, ``audio`` (float32 mono 16 kHz) with ``audio_names``, and ``context`` (extra
    lines for the model); transcripts, labels and evidence are still empty, since no encoder
    has run. Return the (changed) turn, or None to leave it as it is (observers); anything else
    is reported and skipped. Slash-command lines are not turns. Transforms run in registration
    order; one that fails is skipped for that turn.
    """


@hookspec
def register_reply_transforms(register):
    """Observe or change the reply text before it is shown or spoken.

    ``register(fn)`` with ``fn(text: str) -> str | None``: the whole reply, once. Return the new
    text, or None to leave it unchanged. While any reply transform is registered, replies are
    generated whole, transformed, then shown and spoken (no word-by-word streaming); the
    transformed text is what is shown, spoken and stored, while the model's own memory keeps
    what it wrote. Slash-command replies go through the transforms too. Transforms run in
    registration order; one that fails is skipped.
    """
