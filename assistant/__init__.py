"""Synesthesia: a multimodal dialogue assistant for the terminal.

    from assistant import Assistant
    bot = Assistant.load()
    r = bot.ask("What is in this picture?", images=["cat.jpg"])
    print(r.text, r.evidence, r.timings)
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Assistant", "Reply", "Settings", "AssistantError", "InputError"]


def __getattr__(name: str):
    # Lazy: `import assistant` stays fast (the CLI prints --help without loading torch).
    if name in ("Assistant", "Reply"):
        from assistant import pipeline

        return getattr(pipeline, name)
    if name == "Settings":
        from assistant.config import Settings

        return Settings
    if name in ("AssistantError", "InputError"):
        from assistant import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'assistant' has no attribute {name!r}")
