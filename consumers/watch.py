"""``watch``: a live terminal table of every stream's rolling score, fed by the Redis channel."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from detector.identifiers import escape_text
from detector.records import ScoreRecord, StatusRecord
from detector.redis_keys import RedisKeys
from detector.scoring import PENDING
from detector.stream_status import StreamStatus

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

    def cells(self) -> tuple[str, ...]:
        """Display strings: stream, status, score, verdict, fps, scored, drops, latency."""
        score = "—" if self.rolling_score is None else f"{self.rolling_score:.3f}"
        latency = "—" if self.latency_ms is None else f"{self.latency_ms:.0f} ms"
        return (self.stream_id, self.status, score, self.verdict, f"{self.fps:.1f}",
                str(self.frames_scored), str(self.frames_dropped), latency)

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object (``watch --json``, ``streams --json``)."""
        return {"stream_id": self.stream_id, "status": self.status, "source": self.source,
                "rolling_score": self.rolling_score, "verdict": self.verdict,
                "fps": self.fps, "frames_scored": self.frames_scored,
                "frames_dropped": self.frames_dropped, "latency_ms": self.latency_ms,
                "error": self.error, "time": round(self.updated_s, 3)}

    def apply_score(self, message: ScoreRecord) -> None:
        self.rolling_score = message.rolling_score
        self.verdict = message.verdict
        self.fps = message.fps
        self.frames_scored = message.frames_scored
        self.frames_dropped = message.frames_dropped
        self.latency_ms = message.latency_ms
        self.updated_s = time.time()

    def apply_status(self, record: StatusRecord) -> None:
        self.status = record.status
        self.source = record.source
        self.error = record.error
        self.frames_dropped = record.frames_dropped
        self.frames_scored = record.frames_scored
        if record.rolling_score is not None:
            self.rolling_score = record.rolling_score
        self.verdict = record.verdict   # PENDING / FAILED before the first scored frame
        self.fps = record.fps
        if record.latency_ms is not None:
            self.latency_ms = record.latency_ms
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
                record = StatusRecord.from_redis(raw, stream_id)
            except ValueError:
                log.warning("ignoring a malformed status record for %r", stream_id)
                continue
            if record.has_expired(now_s):
                continue
            row = self.rows.get(stream_id) or StreamRow(stream_id)
            row.apply_status(record)
            listed[stream_id] = row
        self.rows = listed

    def on_message(self, channel: str, data: bytes, keys: RedisKeys) -> str | None:
        """Apply one channel message; returns the stream id it was about (None if malformed)."""
        try:
            if channel == keys.scores_channel:
                score = ScoreRecord.from_redis(data)
                self.row(score.stream_id).apply_score(score)
                return score.stream_id
            record = StatusRecord.from_redis(data)
        except ValueError:
            log.warning("ignoring a malformed message on %s", channel)
            return None
        if record.status == StreamStatus.REMOVED:
            self.rows.pop(record.stream_id, None)
        else:
            self.row(record.stream_id).apply_status(record)
        return record.stream_id

    def render(self, title: str, with_reasons: bool = True):
        """The table, then one line per stream with an error (a table column would wrap the
        reasons into a narrow strip at 80 columns)."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title)
        for column in ("stream", "status", "score", "verdict", "fps", "scored", "drops", "latency"):
            table.add_column(column, no_wrap=column != "stream",
                             justify="right" if column in NUMERIC_COLUMNS else "left")
        if not self.rows:
            table.add_row("(no streams yet)", "", "", "", "", "", "", "")
        reasons = []
        for row in sorted(self.rows.values(), key=lambda r: r.stream_id):
            cells = row.cells()
            style = {"FAKE": "bold red", "REAL": "green", "FAILED": "red"}.get(row.verdict, "dim")
            # Text, not str: a cell from Redis is shown as written, never read as rich markup
            texts = [Text(escape_text(cell)) for cell in cells]
            texts[3].stylize(style)
            table.add_row(*texts)
            if row.error:
                reasons.append(Text(escape_text(f"{row.stream_id}: {row.error}"), style="dim"))
        return Group(table, *reasons) if reasons and with_reasons else table


NUMERIC_COLUMNS = ("score", "fps", "scored", "drops", "latency")


def _line(row: StreamRow) -> str:
    """One plain line per update, for pipes: ``time stream status score verdict fps …``."""
    stream, status, score, verdict_text, fps, scored, drops, latency = row.cells()
    line = (f"{time.strftime('%H:%M:%S')} {stream} {status} score {score} {verdict_text} "
            f"fps {fps} scored {scored} drops {drops} latency {latency}")
    return escape_text(line + (f" error: {row.error}" if row.error else ""))  # one line, always


def run_watch(redis_url: str, prefix: str, once: bool = False, duration_s: float | None = None,
              socket_timeout_s: float = 5.0, name: str = "watch", as_json: bool = False,
              as_lines: bool | None = None) -> int:
    """Show the streams until Ctrl-C (or once, or for ``duration_s``). Survives Redis restarts.

    On a terminal: a live table. Otherwise (or with ``as_lines``): one line per update, flushed
    at once, so that ``watch | grep`` and ``timeout 60 watch > log`` see each update as it
    happens; ``as_json`` makes each line a JSON object (:meth:`StreamRow.to_json`).
    """
    import sys

    from rich.console import Console
    from rich.live import Live

    from detector.embedded_redis import connect
    from detector.url_mask import mask_url

    keys = RedisKeys(prefix)
    console = Console()
    if as_lines is None:
        as_lines = as_json or not console.is_terminal
    client = connect(redis_url, socket_timeout_s)
    table = StreamTable()
    table.load(client, keys)
    title = f"deepfake-detector {name} — {mask_url(redis_url)}"

    def emit(rows) -> None:
        for row in rows:
            sys.stdout.write((json.dumps(row.to_json()) if as_json else _line(row)) + "\n")
        sys.stdout.flush()

    if once:
        if as_json:
            emit(sorted(table.rows.values(), key=lambda r: r.stream_id))
        else:
            console.print(table.render(title, with_reasons=False))
            for row in sorted(table.rows.values(), key=lambda r: r.stream_id):
                if row.error:  # whole, on one line each, however narrow the console
                    console.print(escape_text(f"{row.stream_id}: {row.error}"), soft_wrap=True, markup=False,
                                  highlight=False)
        return 0
    if as_lines:
        emit(sorted(table.rows.values(), key=lambda r: r.stream_id))
    deadline = None if duration_s is None else time.monotonic() + duration_s
    pubsub = None
    live = None if as_lines else Live(table.render(title), console=console, auto_refresh=False)
    if live is not None:
        live.start()
    try:
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
                    stream_id = table.on_message(channel, message["data"], keys)
                    if as_lines and stream_id in table.rows:
                        emit([table.rows[stream_id]])
                    message = pubsub.get_message(timeout=0)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (redis.RedisError, OSError):
                        pass
                    if as_lines:
                        log.warning("Redis at %s unreachable; retrying", mask_url(redis_url))
                pubsub = None
                title = f"deepfake-detector {name} — {mask_url(redis_url)} — DISCONNECTED, retrying"
                if live is not None:
                    live.update(table.render(title), refresh=True)
                time.sleep(1.0)
                continue
            now = time.monotonic()
            if live is not None and now - last_draw >= REDRAW_INTERVAL_S:
                live.update(table.render(title), refresh=True)
                last_draw = now
    finally:
        if live is not None:
            live.stop()
    return 0
