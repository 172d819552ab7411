"""``watch``: a live terminal table of every stream's rolling score, fed by the Redis channel."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from detector.redis_keys import RedisKeys
from detector.redis_sink import record_expired
from detector.scoring import PENDING, unscored_verdict

log = logging.getLogger(__name__)

REDRAW_INTERVAL_S = 0.25


@dataclass
class StreamRow:
    """What the table shows for one stream."""

    stream_id: str
    status: str = "?"
    source: str = ""
    rolling_score: float | None = None
    verdict: str = PENDING
    fps: float = 0.0
    frames_scored: int = 0
    frames_dropped: int = 0
    latency_ms: float | None = None
    error: str | None = None
    updated_s: float = field(default_factory=time.time)

    def apply_score(self, message: dict[str, Any]) -> None:
        self.rolling_score = message.get("rolling_score")
        self.verdict = message.get("verdict", self.verdict)
        self.fps = message.get("fps", self.fps) or 0.0
        self.frames_scored = message.get("frames_scored", self.frames_scored)
        self.frames_dropped = message.get("frames_dropped", self.frames_dropped)
        self.latency_ms = message.get("latency_ms")
        self.updated_s = time.time()

    def apply_status(self, record: dict[str, Any]) -> None:
        self.status = record.get("status", self.status)
        self.source = record.get("source", self.source)
        self.error = record.get("error")
        self.frames_dropped = record.get("frames_dropped", self.frames_dropped)
        self.frames_scored = record.get("frames_scored", self.frames_scored)
        if record.get("rolling_score") is not None:
            self.rolling_score = record["rolling_score"]
        self.verdict = record.get("verdict") or self.verdict
        if not self.frames_scored:
            # Records written before PENDING/FAILED existed said NO_FACE here.
            self.verdict = unscored_verdict(self.status)
        self.fps = record.get("fps", self.fps) or 0.0
        if record.get("latency_ms") is not None:
            self.latency_ms = record["latency_ms"]
        self.updated_s = time.time()


class StreamTable:
    """The table's state, rebuilt from Redis and kept current from the channels."""

    def __init__(self):
        self.rows: dict[str, StreamRow] = {}

    def row(self, stream_id: str) -> StreamRow:
        return self.rows.setdefault(stream_id, StreamRow(stream_id))

    def load(self, client: redis.Redis, keys: RedisKeys) -> None:
        """Rebuild from the stream list: streams no longer listed (detached, forgotten) or
        past their ``expires_at`` are dropped."""
        now_s = time.time()
        listed: dict[str, StreamRow] = {}
        for key, raw in client.hgetall(keys.streams).items():
            stream_id = key.decode() if isinstance(key, bytes) else key
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("ignoring a malformed status record for %r", stream_id)
                continue
            if record_expired(record, now_s):
                continue
            row = self.rows.get(stream_id) or StreamRow(stream_id)
            row.apply_status(record)
            listed[stream_id] = row
        self.rows = listed

    def on_message(self, channel: str, data: bytes, keys: RedisKeys) -> None:
        try:
            message = json.loads(data)
            stream_id = message["stream_id"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed message on %s", channel)
            return
        if channel == keys.scores_channel:
            self.row(stream_id).apply_score(message)
        elif message.get("status") == "removed":
            self.rows.pop(stream_id, None)
        else:
            self.row(stream_id).apply_status(message)

    def render(self, title: str):
        from rich.table import Table

        table = Table(title=title)
        for column in ("stream", "status", "score", "verdict", "fps", "scored", "drops", "latency"):
            table.add_column(column, justify="right" if column in ("score", "fps", "scored", "drops", "latency") else "left")
        if not self.rows:
            table.add_row("(no streams yet)", "", "", "", "", "", "", "")
        for row in sorted(self.rows.values(), key=lambda r: r.stream_id):
            score = "—" if row.rolling_score is None else f"{row.rolling_score:.3f}"
            style = {"FAKE": "bold red", "REAL": "green", "FAILED": "red"}.get(row.verdict, "dim")
            latency = "—" if row.latency_ms is None else f"{row.latency_ms:.0f} ms"
            status = row.status if not row.error else f"{row.status} ({row.error})"
            table.add_row(row.stream_id, status, score, f"[{style}]{row.verdict}[/]",
                          f"{row.fps:.1f}", str(row.frames_scored), str(row.frames_dropped), latency)
        return table


def run_watch(redis_url: str, prefix: str, once: bool = False, duration_s: float | None = None,
              socket_timeout_s: float = 5.0, name: str = "watch") -> int:
    """Show the table until Ctrl-C (or once, or for ``duration_s``). Survives Redis restarts."""
    from rich.console import Console
    from rich.live import Live

    from detector.url_mask import mask_url
    from detector.embedded_redis import connect

    keys = RedisKeys(prefix)
    console = Console()
    client = connect(redis_url, socket_timeout_s)
    table = StreamTable()
    table.load(client, keys)
    title = f"deepfake-detector {name} — {mask_url(redis_url)}"
    if once:
        console.print(table.render(title))
        return 0
    deadline = None if duration_s is None else time.monotonic() + duration_s
    pubsub = None
    with Live(table.render(title), console=console, auto_refresh=False) as live:
        last_draw = 0.0
        while deadline is None or time.monotonic() < deadline:
            try:
                if pubsub is None:
                    pubsub = client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(keys.scores_channel, keys.events_channel)
                    table.load(client, keys)
                    title = f"deepfake-detector {name} — {mask_url(redis_url)}"
                message = pubsub.get_message(timeout=REDRAW_INTERVAL_S)
                while message is not None:
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    table.on_message(channel, message["data"], keys)
                    message = pubsub.get_message(timeout=0)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (redis.RedisError, OSError):
                        pass
                pubsub = None
                title = f"deepfake-detector {name} — {mask_url(redis_url)} — DISCONNECTED, retrying"
                live.update(table.render(title), refresh=True)
                time.sleep(1.0)
                continue
            now = time.monotonic()
            if now - last_draw >= REDRAW_INTERVAL_S:
                live.update(table.render(title), refresh=True)
                last_draw = now
    return 0
