"""Redis key and channel templates, defined once. See docs/redis.md for the contract."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1
# Score messages and history entries: version 2 added face track ids and per-track scores.
SCORE_SCHEMA_VERSION = 2
SCORE_SCHEMA_VERSIONS_READ = (1, 2)


@dataclass(frozen=True)
class RedisKeys:
    """All names under one prefix (``redis.prefix``, default ``deepfake``)."""

    prefix: str = "deepfake"

    @property
    def scores_channel(self) -> str:
        """PUBLISH: one JSON message per scored frame."""
        return f"{self.prefix}:scores"

    @property
    def events_channel(self) -> str:
        """PUBLISH: one JSON message per stream status change."""
        return f"{self.prefix}:events"

    @property
    def streams(self) -> str:
        """HASH: stream id → JSON status record."""
        return f"{self.prefix}:streams"

    @property
    def control(self) -> str:
        """LIST: JSON control requests (attach / detach) pushed by the CLI and dashboard."""
        return f"{self.prefix}:control"

    def control_reply(self, request_id: str) -> str:
        """LIST: the service's JSON reply to one control request (expires after 60 s)."""
        return f"{self.prefix}:control:reply:{request_id}"

    def latest(self, stream_id: str) -> str:
        """STRING: JSON of the stream's latest scored frame and counters."""
        return f"{self.prefix}:latest:{stream_id}"

    def history(self, stream_id: str) -> str:
        """STREAM: score history, ``XADD … MAXLEN ~ redis.history_maxlen``."""
        return f"{self.prefix}:history:{stream_id}"

    def thumbnail(self, stream_id: str) -> str:
        """STRING: JPEG bytes of the latest scored frame with face boxes (rate-limited)."""
        return f"{self.prefix}:thumb:{stream_id}"

    def frame(self, stream_id: str) -> str:
        """HASH ``frame_index``, ``jpeg``: a live stream's latest thumbnail frame, unannotated,
        for the dashboard's "why" (``dashboard.keep_live_frame``)."""
        return f"{self.prefix}:frame:{stream_id}"

    @property
    def service(self) -> str:
        """STRING: JSON heartbeat of the running service (pid, started, updated), 10 s TTL."""
        return f"{self.prefix}:service"
