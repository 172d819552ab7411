"""The collector: worker results → per-stream rolling scores and verdicts → Redis.

It runs in the service process, owns every stream's scoring state and is the only writer of
score messages, so per-stream state needs no coordination between workers.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from detector.config import FILES_TRACK, TrackingConfig
from detector.errors import WireFormatError
from detector.identifiers import shown
from detector.inflight import InFlightLedger
from detector.records import ScoreRecord, StatusRecord
from detector.redis_sink import RedisSink
from detector.scoring import frame_score, stream_verdict, verdict
from detector.stream_status import TERMINAL_STATUSES, StreamStatus
from detector.thumbnail import encode_frame_jpeg
from detector.tracking import StreamTracker
from detector.wire import (
    DetectRequest,
    FrameMessage,
    ResultMessage,
    WorkerStats,
    decode_worker_output,
)

log = logging.getLogger(__name__)

FPS_WINDOW_S = 5.0
MAX_WORKERS_TRACKED = 256  # stats of more worker ids than this are dropped (bounded memory)
REJECTED_LOG_EVERY = 1000  # after the first few, one log line per this many dropped results


@dataclass
class FrameRecord:
    """One scored frame, kept for replay reports."""

    frame_index: int
    pts_s: float | None
    frame_score: float | None
    faces: list[dict[str, Any]]
    error: str | None = None
    detect_mode: str = "full"

    def to_json(self) -> dict[str, Any]:
        return {
            "frame_index": self.frame_index,
            "pts_s": self.pts_s,
            "frame_score": self.frame_score,
            "faces": self.faces,
            "detect_mode": self.detect_mode,
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class StreamState:
    """Everything the collector knows about one stream."""

    stream_id: str
    window: int
    source: str = ""
    kind: str = "file"
    status: StreamStatus = StreamStatus.CONNECTING
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    counters: dict[str, int] = field(default_factory=dict)
    frames_scored: int = 0
    frames_with_faces: int = 0
    frames_failed: int = 0
    score_sum: float = 0.0
    expected_frames: int | None = None
    rolling_score: float | None = None
    last_latency_ms: float | None = None
    scored_at: float | None = None   # wall-clock time of the latest scored frame
    ended_at: float | None = None    # wall-clock time it finished, failed or stopped
    frames: list[FrameRecord] = field(default_factory=list)
    nonce: str = ""
    scored_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=256))
    last_result_s: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    max_tracks: int = 5
    tracker: StreamTracker | None = None
    # File results wait here until every earlier frame's result is in, so that tracks are
    # associated in frame order whatever order the workers answer in (deterministic replay).
    pending: dict[int, ResultMessage] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tracker = StreamTracker(
            self.tracking, self.window, self.max_tracks,
            allow_track_mode=self.kind != "file" or self.tracking.files == FILES_TRACK)

    @property
    def is_in_frame_order(self) -> bool:
        """Results are applied in frame order (file streams, which are lossless)."""
        return self.kind == "file"

    def fps(self, now_s: float) -> float:
        recent = [t for t in self.scored_times if now_s - t <= FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1] - recent[0], 1e-6)
        return (len(recent) - 1) / span

    def video_score(self) -> float | None:
        """Mean frame score over the frames with faces so far (None without any)."""
        return self.score_sum / self.frames_with_faces if self.frames_with_faces else None


class Collector:
    """Consumes the results socket and publishes scores.

    Args:
        sink: the Redis writer.
        threshold: the FAKE/REAL decision threshold (from the model card or config).
        window: rolling window in sampled frames.
        model_id: ``name@version`` of the model, put in every message.
        keep_frames: keep every frame's record in memory (replay reports).
        drain_timeout_s: a finished file whose frames stop arriving for this long is failed.
        finished_ttl_s: an ended stream leaves the stream list this long after it ended.
        ledger: frames sent and not yet answered; only results that answer one are scored.
        tracking: the ``[tracking]`` section (each stream's :class:`StreamTracker`).
        max_tracks: live tracks per stream at most (``faces.max_faces``).
    """

    def __init__(
        self,
        sink: RedisSink,
        threshold: float,
        window: int,
        model_id: str,
        keep_frames: bool = False,
        drain_timeout_s: float = 120.0,
        finished_ttl_s: float = 3600.0,
        ledger: InFlightLedger | None = None,
        tracking: TrackingConfig | None = None,
        max_tracks: int = 5,
    ):
        self.tracking = tracking or TrackingConfig()
        self.max_tracks = max_tracks
        self.sink = sink
        self.threshold = threshold
        self.window = window
        self.model_id = model_id
        self.keep_frames = keep_frames
        self.drain_timeout_s = drain_timeout_s
        self.finished_ttl_s = finished_ttl_s
        self._forgotten: set[str] = set()  # detached ids: late results and statuses are dropped
        self.malformed_results = 0
        self.ledger = ledger or InFlightLedger()
        self.workers_dropped = 0
        self.metrics = None  # a detector.metrics.PipelineMetrics, when the service serves them
        self.workers: dict[str, WorkerStats] = {}
        self.workers_seen_s: dict[str, float] = {}
        self._streams: dict[str, StreamState] = {}
        self._frames_to_keep: dict[str, FrameMessage] = {}
        self._lock = threading.RLock()

    # --- stream status (called from producer threads and the service) -----------------------
    def stream(self, stream_id: str) -> StreamState | None:
        with self._lock:
            return self._streams.get(stream_id)

    def streams(self) -> list[StreamState]:
        with self._lock:
            return list(self._streams.values())

    def register(self, stream_id: str, source: str, kind: str) -> StreamState:
        """Start (or restart) tracking a stream; clears its previous Redis state."""
        with self._lock:
            state = StreamState(stream_id, self.window, source=source, kind=kind,
                                nonce=self.ledger.open_stream(stream_id),
                                tracking=self.tracking, max_tracks=self.max_tracks)
            self._streams[stream_id] = state
            self._forgotten.discard(stream_id)
            self._frames_to_keep.pop(stream_id, None)
        self.sink.clear_stream(stream_id)
        self._publish_status(state)
        return state

    def on_status(self, stream_id: str, status: str, info: dict[str, Any]) -> None:
        """Producer callback: a status change or end of stream, with counters."""
        status = StreamStatus(status)
        with self._lock:
            if stream_id in self._forgotten:
                return
            state = self._streams.get(stream_id)
            if state is None:
                state = StreamState(stream_id, self.window, kind=info.get("kind", "file"),
                                    tracking=self.tracking, max_tracks=self.max_tracks)
                self._streams[stream_id] = state
            if state.status in TERMINAL_STATUSES:
                return
            state.counters.update(
                {k: v for k, v in info.items() if k.startswith("frames_") or k == "reconnects"}
            )
            state.source = info.get("source", state.source)
            state.kind = info.get("kind", state.kind)
            if status == StreamStatus.FAILED:
                state.error = info.get("error")
                self._finish(state, StreamStatus.FAILED)
                return
            if status == StreamStatus.STOPPED:
                self._finish(state, StreamStatus.STOPPED)
                return
            if info.get("eof"):
                state.expected_frames = info.get("frames_sampled", 0)
                state.last_result_s = time.monotonic()
                state.status = StreamStatus.DRAINING
                if not self._maybe_finish(state):
                    self._publish_status(state)
                return
            state.status = status
            # Live streams show why they are reconnecting; frames flowing again clear it.
            state.error = info.get("error") if status in (StreamStatus.RECONNECTING, StreamStatus.STALLED) else None
            self._publish_status(state)

    def detect_plan(self, stream_id: str, frame_index: int) -> DetectRequest | None:
        """How to find the faces of a frame about to be sent (the hub's sender thread asks);
        None for a stream not registered."""
        with self._lock:
            state = self._streams.get(stream_id)
        return None if state is None else state.tracker.plan(frame_index)

    def in_order_ready(self, stream_id: str) -> bool:
        """May the next file frame of ``stream_id`` be sent now? With ``tracking.files =
        "track"`` only once every earlier frame's result is applied (its plan needs them)."""
        with self._lock:
            state = self._streams.get(stream_id)
            if state is None or state.kind != "file" or self.tracking.files != FILES_TRACK:
                return True
            return not state.pending and self.ledger.open_count(stream_id) == 0

    def update_counters(self, stream_id: str, counters: dict[str, int]) -> None:
        """Refresh a running stream's producer counters (read, sampled, dropped, reconnects);
        published with the next status refresh and score."""
        with self._lock:
            state = self._streams.get(stream_id)
            if state is not None and state.status not in TERMINAL_STATUSES:
                state.counters.update(counters)

    def fail(self, stream_id: str, error: str) -> None:
        with self._lock:
            state = self._streams.get(stream_id)
            if state is not None and state.status not in TERMINAL_STATUSES:
                state.error = error
                self._finish(state, StreamStatus.FAILED)

    def _maybe_finish(self, state: StreamState) -> bool:
        if state.expected_frames is not None and state.frames_scored >= state.expected_frames:
            self._finish(state, StreamStatus.FINISHED)
            return True
        return False

    def forget(self, stream_id: str, keep_history_s: float | None = None) -> bool:
        """Take a stream off the list (detach, or ``finished_ttl_s`` after it ended); results
        still in flight for it are dropped. Its history expires after ``keep_history_s``
        (default ``finished_ttl_s``). Returns whether the stream was known."""
        with self._lock:  # held while writing: no result of this stream is published meanwhile
            known = self._streams.pop(stream_id, None) is not None
            self._frames_to_keep.pop(stream_id, None)
            self._forgotten.add(stream_id)
            self.sink.forget_stream(stream_id, self.finished_ttl_s if keep_history_s is None
                                    else keep_history_s)
        self.ledger.close_stream(stream_id)
        return known

    def expire_finished(self, now_s: float | None = None) -> list[str]:
        """Forget the streams that ended more than ``finished_ttl_s`` ago; returns their ids."""
        now_s = time.time() if now_s is None else now_s
        with self._lock:
            expired = [s.stream_id for s in self._streams.values()
                       if s.ended_at is not None and now_s - s.ended_at >= self.finished_ttl_s]
        for stream_id in expired:
            log.info("stream %s ended %.0f s ago; removed from the stream list", stream_id,
                     self.finished_ttl_s)
            self.forget(stream_id, keep_history_s=0)
        return expired

    def _finish(self, state: StreamState, status: StreamStatus) -> None:
        state.status = status
        state.ended_at = time.time()
        if status != StreamStatus.STOPPED:  # a detached stream's frames in flight are still scored
            self.ledger.close_stream(state.stream_id)
        self._publish_status(state)
        # Logged before ``done`` is set: a waiter (replay's progress bars) that stops on
        # ``done`` must not be tearing its display down while this line is printed.
        if status == StreamStatus.FAILED:
            log.warning("stream %s failed: %s", state.stream_id, state.error)
        else:
            log.info("stream %s %s: %d frames scored", state.stream_id, status, state.frames_scored)
        state.done.set()

    def status_record(self, state: StreamState) -> StatusRecord:
        """The stream's status record as it is published now."""
        now = time.monotonic()
        score = state.video_score() if state.kind == "file" else None
        return StatusRecord(
            stream_id=state.stream_id,
            source=state.source,
            kind=state.kind,
            status=state.status,
            error=state.error,
            started_at=state.started_at,
            updated_at=time.time(),
            frames_read=state.counters.get("frames_read", 0),
            frames_sampled=state.counters.get("frames_sampled", 0),
            frames_dropped=state.counters.get("frames_dropped", 0),
            frames_scored=state.frames_scored,
            frames_with_faces=state.frames_with_faces,
            reconnects=state.counters.get("reconnects", 0),
            rolling_score=state.rolling_score,
            verdict=stream_verdict(state.rolling_score, state.frames_scored, state.status,
                                   self.threshold),
            fps=round(state.fps(now), 2),
            latency_ms=state.last_latency_ms,
            scored_at=state.scored_at,
            ended_at=state.ended_at,
            expires_at=None if state.ended_at is None else state.ended_at + self.finished_ttl_s,
            video_score=None if score is None else round(score, 6),
            label=(stream_verdict(score, state.frames_scored, state.status, self.threshold)
                   if state.kind == "file" else None),
        )

    def _publish_status(self, state: StreamState) -> None:
        self.sink.set_status(self.status_record(state))

    # --- results ------------------------------------------------------------------------------
    def handle_parts(self, parts: list[bytes]) -> None:
        try:
            message = decode_worker_output(parts)
        except WireFormatError as exc:
            self.malformed_results += 1
            log.warning("dropped a malformed result message: %s", exc)
            return
        if isinstance(message, WorkerStats):
            if message.worker_id not in self.workers and len(self.workers) >= MAX_WORKERS_TRACKED:
                self.workers_dropped += 1
                return
            self.workers[message.worker_id] = message
            self.workers_seen_s[message.worker_id] = time.monotonic()
            return
        self.handle_result(message)

    @property
    def results_rejected(self) -> int:
        """Results that answered no frame in flight (forged, duplicate or late), dropped."""
        return self.ledger.rejected

    def _log_rejected(self, result: ResultMessage) -> None:
        count = self.ledger.rejected
        if count <= 5 or count % REJECTED_LOG_EVERY == 0:
            log.warning("dropped a result for stream %s frame %d from worker %s: no such frame "
                        "is in flight (forged, a duplicate or late); %d dropped so far",
                        shown(result.stream_id), result.frame_index, shown(result.worker_id), count)

    def handle_result(self, result: ResultMessage) -> ScoreRecord | None:
        """Score one frame result and publish it; returns the published message.

        A file stream's results are tracked and published in frame order: a result that
        arrives before an earlier frame's waits for it (and None is returned for now).
        """
        now_s = time.time()
        with self._lock:
            if result.stream_id in self._forgotten:
                return None
            state = self._streams.get(result.stream_id)
            is_answer = self.ledger.answer(result.stream_id, result.frame_index, result.nonce)
            if not is_answer or state is None:
                self._log_rejected(result)
                return None
            if not state.is_in_frame_order:
                return self._apply(state, result, now_s)
            state.pending[result.frame_index] = result
            state.last_result_s = time.monotonic()
            published = None
            lowest_open = self.ledger.lowest_open(result.stream_id)
            while state.pending:
                index = min(state.pending)
                if lowest_open is not None and index > lowest_open:
                    break  # an earlier frame is still in flight
                message = self._apply(state, state.pending.pop(index), now_s)
                if index == result.frame_index:
                    published = message
            return published

    def _apply(self, state: StreamState, result: ResultMessage, now_s: float) -> ScoreRecord:
        """Track, score and publish one answered frame (the collector's lock is held)."""
        probabilities = [face.fake_probability for face in result.faces]
        score = None if result.error else frame_score(probabilities)
        update = state.tracker.update(result.frame_index, result.faces,
                                      failed=result.error is not None)
        state.rolling_score = update.stream_score
        state.frames_scored += 1
        if score is not None:
            state.frames_with_faces += 1
            state.score_sum += score
        state.frames_failed += 1 if result.error else 0
        state.last_result_s = time.monotonic()
        state.scored_times.append(state.last_result_s)
        latency_ms = (now_s - result.capture_time_s) * 1000.0
        state.last_latency_ms = round(latency_ms, 1)
        state.scored_at = now_s
        faces_json = [face.to_json() for face in update.faces]
        if self.keep_frames:
            state.frames.append(
                FrameRecord(result.frame_index, result.pts_s, score, faces_json, result.error,
                            update.detect_mode)
            )
        message = ScoreRecord(
            stream_id=result.stream_id,
            frame_index=result.frame_index,
            pts_s=result.pts_s,
            capture_time=result.capture_time_s,
            published_time=now_s,
            faces=tuple(faces_json),
            frame_score=score,
            rolling_score=state.rolling_score,
            verdict=verdict(state.rolling_score, self.threshold),
            threshold=self.threshold,
            latency_ms=round(latency_ms, 1),
            timings_ms=result.timings_ms,
            batch_size=result.batch_size,
            worker=result.worker_id,
            model=self.model_id,
            fps=round(state.fps(state.last_result_s), 2),
            frames_scored=state.frames_scored,
            frames_dropped=state.counters.get("frames_dropped", 0),
            error=result.error,
            tracks=tuple(track.to_json() for track in update.tracks),
            detect_mode=update.detect_mode,
        )
        self.sink.publish_score(message)
        if self.metrics is not None:
            self.metrics.observe_result(result.batch_size, result.timings_ms,
                                        (time.time() - result.capture_time_s) * 1000.0)
        if result.thumbnail_jpeg is not None:
            self.sink.set_thumbnail(result.stream_id, result.thumbnail_jpeg)
            self._store_kept_frame(result)
        self._maybe_finish(state)
        return message

    def keep_frame(self, message: FrameMessage) -> None:
        """Hold a live frame that asked for a thumbnail until its result comes back; then it is
        written, unannotated, beside the thumbnail (hub's sender thread; one per stream)."""
        with self._lock:
            self._frames_to_keep[message.stream_id] = message

    def _store_kept_frame(self, result: ResultMessage) -> None:
        with self._lock:
            held = self._frames_to_keep.get(result.stream_id)
            if held is None or held.frame_index != result.frame_index:
                return
            del self._frames_to_keep[result.stream_id]
        self.sink.set_frame(result.stream_id, result.frame_index, encode_frame_jpeg(held.image_bgr))

    def check_timeouts(self) -> None:
        """Fail draining streams whose last frames never came back (a worker was lost)."""
        now = time.monotonic()
        with self._lock:
            for state in self._streams.values():
                if state.status == StreamStatus.DRAINING and now - state.last_result_s > self.drain_timeout_s:
                    missing = (state.expected_frames or 0) - state.frames_scored
                    state.error = (
                        f"{missing} of {state.expected_frames} sampled frames were never scored "
                        f"within {self.drain_timeout_s:.0f} s (a worker was lost)"
                    )
                    self._finish(state, StreamStatus.FAILED)

    def publish_counters(self) -> None:
        """Refresh every running stream's status record (fps, drops) in Redis."""
        with self._lock:
            for state in self._streams.values():
                if state.status not in TERMINAL_STATUSES:
                    self._publish_status(state)

    def run(self, socket: zmq.Socket, stop: threading.Event, poll_ms: int = 100) -> None:
        """Serve the results socket until ``stop`` is set."""
        last_refresh = time.monotonic()
        while not stop.is_set():
            if socket.poll(poll_ms):
                while True:
                    try:
                        parts = socket.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        self.handle_parts(parts)
                    except Exception:  # one bad result must not stop scoring
                        log.exception("collector failed on a result message")
            now = time.monotonic()
            if now - last_refresh >= 1.0:
                last_refresh = now
                try:
                    self.check_timeouts()
                    self.publish_counters()
                except Exception:  # the refresh must never end result intake
                    log.exception("collector: refreshing stream status failed; going on")
                self.expire_finished()
