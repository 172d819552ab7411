"""A stream's status (``StreamStatus``) and which statuses mean it has ended."""

from __future__ import annotations

import enum


class StreamStatus(enum.StrEnum):
    """A stream's status, as published in its status record."""

    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    STALLED = "stalled"
    DRAINING = "draining"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"
    # Not stored: the events-channel message when a stream leaves the list (detach, forget, or
    # redis.finished_ttl_s after it ended); see :func:`detector.records.removed_event`.
    REMOVED = "removed"

    @property
    def is_terminal(self) -> bool:
        """The stream is over: nothing more will be scored or published for it."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({StreamStatus.FINISHED, StreamStatus.FAILED, StreamStatus.STOPPED})
