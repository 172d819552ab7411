"""Log set-up shared by every process: one format, and every message escaped and bounded, so
outside text (a stream id, a URL, a request) can neither forge a log line nor flood the log."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from detector.identifiers import escape_text

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_LOG_MESSAGE_CHARS = 4000


class EscapingFormatter(logging.Formatter):
    """Writes control characters of the message (newlines included) as escapes and cuts it at
    ``MAX_LOG_MESSAGE_CHARS``; a traceback, which is ours, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging's name
        record.message = escape_text(record.message, MAX_LOG_MESSAGE_CHARS)
        return super().formatMessage(record)


_STDERR_CONSOLE = None


def stderr_console():
    """The one rich console on stderr of this process: log lines (the CLI's handler on a
    terminal) and progress bars (replay, prepare) share it, so that a log line is printed above
    the bars instead of into them, and no bar lands on stdout."""
    global _STDERR_CONSOLE
    if _STDERR_CONSOLE is None:
        from rich.console import Console

        _STDERR_CONSOLE = Console(stderr=True)
    return _STDERR_CONSOLE


def configure_logging(level: int, stream: TextIO | None = None) -> None:
    """Configure the root logger of this process; like ``logging.basicConfig``, a no-op where
    it already has handlers (a test's log capture)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
