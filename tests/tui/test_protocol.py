"""The terminal UI's Protocol (assistant.tui.protocol.AssistantLike) and the objects it runs on:
a member the UI starts to need, or one the Assistant drops or renames, fails here."""

from __future__ import annotations

import inspect

import pytest

from assistant.config import Settings
from assistant.pipeline import Assistant
from assistant.tui.protocol import AssistantLike
from tests.core.fakes import FakeGenerator
from tests.tui.fake_assistant import FakeAssistant


def members() -> list[str]:
    """The Protocol's attributes and methods (properties included)."""
    names = list(AssistantLike.__annotations__)
    names += [n for n, v in vars(AssistantLike).items()
              if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, property))]
    return list(dict.fromkeys(names))


def has_member(obj, name: str) -> bool:
    """Whether ``obj`` has ``name``, without running a property (the Assistant's load models)."""
    return name in vars(obj) or any(name in vars(k) for k in type(obj).__mro__)


def test_the_protocol_lists_what_the_ui_uses():
    assert {"settings", "plugins", "history", "last_reply", "notify", "on_note", "synthesizer", "recognizer",
            "models", "stream", "cancel", "reset", "warm_up", "budget", "command", "transcribe",
            "speak"} == set(members())


@pytest.mark.parametrize("make", [
    lambda: Assistant(Settings(), generator=FakeGenerator("hi"), image_encoder=object()),
    lambda: FakeAssistant(),
], ids=["Assistant", "FakeAssistant"])
def test_the_assistants_have_every_member(make):
    bot = make()
    assert [n for n in members() if not has_member(bot, n)] == []


@pytest.mark.parametrize("cls", [Assistant, FakeAssistant])
def test_the_methods_take_what_the_ui_passes(cls):
    for name in members():
        wanted = vars(AssistantLike).get(name)
        if not inspect.isfunction(wanted):
            continue
        have = inspect.signature(getattr(cls, name)).parameters
        for param in list(inspect.signature(wanted).parameters.values())[1:]:
            assert param.name in have, f"{cls.__name__}.{name} lacks the parameter {param.name!r}"
            if param.default is inspect.Parameter.empty:
                continue
            assert have[param.name].default is not inspect.Parameter.empty, (
                f"{cls.__name__}.{name}: {param.name!r} must be optional")
