"""The terminal UI (Textual). Start it with :func:`run`; ``assistant`` with no arguments does.

Importing this package is cheap: Textual and the app load inside :func:`run`.
"""

from __future__ import annotations

import gc
from typing import Any, Callable


def run(settings: Any, load_bot: Callable[[], Any], config_file: str | None = None) -> int:
    """Run the app until the user quits; return the exit status.

    ``settings``: an :class:`assistant.config.Settings`. ``load_bot()``: returns the
    assistant (``Assistant.load(...)``); it is called in a worker thread after the window
    opens, so the user can type while the models load. ``config_file``: the file the settings
    came from (``--config``), which the settings screen saves to (default: ``config.toml``).
    """
    if settings.ui.image_preview == "auto":
        # textual-image asks the terminal about graphics support; that must happen before
        # Textual takes the terminal over.
        try:
            import textual_image.widget  # noqa: F401
        except Exception:
            pass
    from assistant.storage import SessionStore
    from assistant.tui.app import SynesthesiaApp

    with SessionStore.open(write=True) as store:
        app = SynesthesiaApp(settings, load_bot, store, config_file=config_file)
        freeze_imported()
        result = app.run()
    return int(result or 0)


def freeze_imported() -> None:
    """Leave what exists now (the imported modules, classes and functions: some 50,000 objects,
    all kept till exit) out of the garbage collector's passes. Called once, just before the
    app starts: otherwise the first full pass comes during the first frame and walks them all
    (about 0.05 s of a start of about 1 s)."""
    gc.freeze()


__all__ = ["freeze_imported", "run"]
