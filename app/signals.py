"""Stop signals for the long-running commands (run, replay, dashboard)."""

from __future__ import annotations

import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def handle_signals(handler: Callable, signals: tuple[int, ...] = STOP_SIGNALS) -> Callable[[], None]:
    """Install ``handler`` for ``signals``; returns the function that puts the previous ones back.

    A command's own handler also works where Python installed no KeyboardInterrupt: a process
    started from a non-interactive shell's background job (`cmd &`) inherits SIGINT ignored.
    """
    previous = {sig: signal.signal(sig, handler) for sig in signals}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
