"""Work started in the background to save the user time later (no imports beyond the standard library)."""

from __future__ import annotations

import threading


def warm_up_in_background(bot) -> None:
    """Start ``bot.warm_up()`` in a daemon thread (the plugins' intent router, the system
    prompt's keys and values), e.g. while the user types or speaks the first request. It is
    only a speed-up: a failure costs the time it would have saved, and the turn loads what it
    needs itself."""
    warm_up = getattr(bot, "warm_up", None)
    if warm_up is None:
        return

    def quietly() -> None:
        try:
            warm_up()
        except Exception:  # noqa: BLE001 - see above
            pass

    threading.Thread(target=quietly, name="synesthesia-warm-up", daemon=True).start()
