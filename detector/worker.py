"""A pool worker: pull frames from any stream over ZeroMQ, batch them, score, push results.

Batches close at ``workers.max_batch`` frames or ``workers.max_wait_ms`` after their first
frame, whichever comes first. A malformed message is counted, logged with its stream id and
dropped; it never stops the worker. The service's own workers read the pixels of frames that
name a shared-memory slot from its frame rings (detector/frame_ring.py); a frame whose slot was
written again before it was scored is answered with an error (:data:`STALE_FRAME_ERROR`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

import cv2
import zmq
from zmq.utils.monitor import recv_monitor_message

from detector.config import Config, WorkersConfig
from detector.curve import CurveKeys, make_curve_client
from detector.errors import DetectorError, WireFormatError
from detector.face_detect import make_face_detector
from detector.face_detector_kinds import AUTO, HAAR, YUNET
from detector.frame_ring import RingReader
from detector.frame_scorer import FrameScorer
from detector.logs import configure_logging
from detector.model_card import ModelCard, card_path_for, load_model_card
from detector.scoring import decision_threshold
from detector.thumbnail import render_thumbnail
from detector.wire import FrameMessage, ResultMessage, WorkerStats, peek_stream_id

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 2.0
# How long a worker waits for the pool to answer before it says so (it goes on waiting).
POOL_WAIT_NOTICE_S = 10.0
_HANDSHAKE_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the pool refused this worker's key",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the pool spoke another protocol (a server key mismatch?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the handshake with the pool failed",
}
# The answer to a frame whose shared-memory slot was released and written again before it was
# scored (its worker was given up as lost, or it expired): answered, not dropped, so a live
# stream's credit comes back at once and a replay's counts add up.
STALE_FRAME_ERROR = "frame pixels were replaced before they were scored (stale shared-memory slot)"


@dataclass(frozen=True)
class WorkerEndpoints:
    """Where a worker connects; with ``curve``, as a CURVE client (detector/curve.py), and
    where it reads frames that wait in shared memory (``frame_rings``: the service's ring
    folder, for its own workers only; None: such frames are malformed here)."""

    frames: str
    results: str
    curve: CurveKeys | None = None
    frame_rings: str | None = None


def results_endpoint_for(frames_endpoint: str) -> str:
    """Default results endpoint of a remote pool: the frames port + 1 (tcp) or ``…-results``."""
    if frames_endpoint.startswith("tcp://"):
        host, _, port = frames_endpoint[len("tcp://"):].rpartition(":")
        if not port.isdigit():
            raise ValueError(f"expected tcp://HOST:PORT, got {frames_endpoint!r}")
        return f"tcp://{host}:{int(port) + 1}"
    return frames_endpoint + "-results"


def resolve_face_detector_kind(config: Config, card: ModelCard, warn: bool = True) -> str:
    """``faces.detector = auto`` → the card's detector if usable, else Haar (with one WARNING
    naming the fix, unless ``warn`` is False: worker processes leave it to the service)."""
    kind = config.faces.detector
    if kind != AUTO:
        return kind
    if card.face_detector == YUNET:
        if config.resolve_path(config.faces.yunet_model).is_file():
            return YUNET
        if warn:
            log.warning(
                "YuNet face detector not found at %s: faces are found with OpenCV's Haar cascade "
                "instead, but model %s was trained on YuNet crops, so its scores are less "
                "reliable. Fix: deepfake-detector fetch-yunet",
                config.resolve_path(config.faces.yunet_model), card.name,
            )
        return HAAR
    return card.face_detector


def load_card(config: Config) -> ModelCard:
    return load_model_card(card_path_for(config.resolve_path(config.model.dir), config.model.name))


def build_frame_scorer(config: Config, threads: int = 0, warn_fallback: bool = True) -> FrameScorer:
    """Load the configured model card, face detector and runtime (``warn_fallback``: say so
    when YuNet is missing and Haar is used)."""
    from detector.runtime import load_runtime

    card = load_card(config)
    detector = make_face_detector(
        resolve_face_detector_kind(config, card, warn=warn_fallback),
        yunet_model=config.resolve_path(config.faces.yunet_model),
        detect_width_px=config.faces.detect_width_px,
        min_face_px=config.faces.min_face_px,
        max_faces=config.faces.max_faces,
        yunet_runtime=config.faces.yunet_runtime,
        threads=threads,
    )
    runtime = load_runtime(card, config.workers.runtime, threads)
    return FrameScorer(card, detector, runtime, roi_scale=config.tracking.roi_scale,
                       roi_face_px=config.tracking.roi_face_px,
                       full_width_px=config.faces.detect_width_px)


class Worker:
    """The batching loop of one worker process (or thread, in tests).

    Args:
        workers: the ``[workers]`` section (batch size and wait).
        threshold: the decision threshold in force (:func:`detector.scoring.decision_threshold`);
            thumbnail boxes are red at or above it, as the verdicts are FAKE.
        endpoints: the pool's frames and results sockets.
        worker_id: this worker's name in its stats.
        scorer: the loaded face detector and model.
    """

    def __init__(
        self,
        workers: WorkersConfig,
        threshold: float,
        endpoints: WorkerEndpoints,
        worker_id: str,
        scorer: FrameScorer,
        context: zmq.Context | None = None,
    ):
        self.workers = workers
        self.threshold = threshold
        self.worker_id = worker_id
        self.scorer = scorer
        self.frames_scored = 0
        self.malformed_messages = 0
        self.stale_frames = 0
        self._rings = RingReader(endpoints.frame_rings) if endpoints.frame_rings else None
        self._context = context or zmq.Context.instance()
        self._pull = self._context.socket(zmq.PULL)
        self._pull.setsockopt(zmq.RCVHWM, max(2, workers.max_batch))
        self._pull.setsockopt(zmq.LINGER, 0)
        self._push = self._context.socket(zmq.PUSH)
        self._push.setsockopt(zmq.LINGER, 2000)
        if endpoints.curve is not None:
            make_curve_client(self._pull, endpoints.curve)
            make_curve_client(self._push, endpoints.curve)
        self._frames_endpoint = endpoints.frames
        self._frames_monitor: zmq.Socket | None = self._pull.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | sum(_HANDSHAKE_FAILED))
        self._pull.connect(endpoints.frames)
        self._push.connect(endpoints.results)
        self._last_stats_s = 0.0

    @classmethod
    def for_config(cls, config: Config, endpoints: WorkerEndpoints, worker_id: str,
                   scorer: FrameScorer, context: zmq.Context | None = None) -> Worker:
        """A worker with ``config``'s batching and the threshold in force: ``scoring.threshold``
        when set, else the card's (the service's verdicts use the same one)."""
        return cls(config.workers, decision_threshold(config.scoring.threshold, scorer.card.threshold),
                   endpoints, worker_id, scorer, context)

    def close(self) -> None:
        self._send_stats(is_ready=False, is_stopping=True)
        self._close_monitor()
        self._pull.close()
        self._push.close()

    def _send_stats(self, is_ready: bool = True, is_stopping: bool = False) -> None:
        stats = WorkerStats(
            worker_id=self.worker_id,
            pid=os.getpid(),
            frames_scored=self.frames_scored,
            malformed_messages=self.malformed_messages,
            is_ready=is_ready,
            is_stopping=is_stopping,
        )
        self._push.send_multipart(stats.encode())
        self._last_stats_s = time.monotonic()
        if self._rings is not None:
            self._rings.forget_removed()

    def _decode(self, parts: list) -> FrameMessage | None:
        try:
            return FrameMessage.decode(parts, self._rings)
        except WireFormatError as exc:
            self.malformed_messages += 1
            log.warning(
                "worker %s dropped a malformed frame message from stream %s: %s",
                self.worker_id, peek_stream_id(parts) or "<unknown>", exc,
            )
            return None

    def collect_batch(self, stop: threading.Event) -> list[tuple[FrameMessage, float]]:
        """Wait for a first frame, then gather more until the batch is full or times out."""
        batch: list[tuple[FrameMessage, float]] = []
        max_batch = self.workers.max_batch
        max_wait_s = self.workers.max_wait_ms / 1000.0
        deadline = None
        while len(batch) < max_batch and not stop.is_set():
            if deadline is None:
                timeout_ms = 200
            else:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    break
                timeout_ms = max(0, int(remaining_s * 1000))
            if not self._pull.poll(timeout_ms):
                if deadline is None:
                    if time.monotonic() - self._last_stats_s > STATS_INTERVAL_S:
                        self._send_stats()
                    continue
                break
            while len(batch) < max_batch:
                try:
                    # zero-copy: inline pixels are read where ZeroMQ received them
                    frames = self._pull.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                parts = [frames[0].bytes, *(frame.buffer for frame in frames[1:])]
                message = self._decode(parts)
                if message is None:
                    continue
                batch.append((message, time.time()))
                if deadline is None:
                    deadline = time.monotonic() + max_wait_s
        return batch

    def _is_current(self, message: FrameMessage) -> bool:
        """Whether the frame's pixels are still its own (always, for inline pixels)."""
        return message.slot is None or self._rings is None or self._rings.is_current(message.slot)

    def score_batch(self, batch: list[tuple[FrameMessage, float]]) -> None:
        stale = [item for item in batch if not self._is_current(item[0])]
        batch = [item for item in batch if self._is_current(item[0])]
        for message, received_s in stale:
            self._answer_stale(message, received_s)
        if not batch:
            return
        frames = [message.image_bgr for message, _ in batch]
        error = None
        try:
            results, timings = self.scorer.score_frames(
                frames, plans=[message.detect for message, _ in batch])
        except Exception as exc:  # report the failure per frame, keep serving
            log.exception("worker %s: scoring a batch of %d frames failed", self.worker_id, len(batch))
            error = f"scoring failed: {exc.__class__.__name__}: {exc}"
            results, timings = [[] for _ in batch], None
        n = len(batch)
        for (message, received_s), faces in zip(batch, results):
            timings_ms = {"queue": (received_s - message.capture_time_s) * 1000.0}
            if timings is not None:
                timings_ms.update(
                    detect=timings.detect_s * 1000.0 / n,
                    crop=timings.crop_s * 1000.0 / n,
                    classify=timings.classify_s * 1000.0 / n,
                )
            thumbnail = None
            if message.want_thumbnail and error is None:
                thumbnail = render_thumbnail(message.image_bgr, faces, self.threshold)
            if not self._is_current(message):  # written again while it was being scored
                self._answer_stale(message, received_s)
                continue
            result = ResultMessage(
                stream_id=message.stream_id,
                frame_index=message.frame_index,
                pts_s=message.pts_s,
                capture_time_s=message.capture_time_s,
                faces=tuple(faces),
                worker_id=self.worker_id,
                batch_size=n,
                timings_ms=timings_ms,
                error=error,
                thumbnail_jpeg=thumbnail,
                nonce=message.nonce,
            )
            self._push.send_multipart(result.encode())
        self.frames_scored += n

    def _answer_stale(self, message: FrameMessage, received_s: float) -> None:
        self.stale_frames += 1
        log.info("worker %s: stream %s frame %d: %s", self.worker_id, message.stream_id,
                 message.frame_index, STALE_FRAME_ERROR)
        result = ResultMessage(
            stream_id=message.stream_id, frame_index=message.frame_index, pts_s=message.pts_s,
            capture_time_s=message.capture_time_s, faces=(), worker_id=self.worker_id,
            batch_size=1, timings_ms={"queue": (received_s - message.capture_time_s) * 1000.0},
            error=STALE_FRAME_ERROR, nonce=message.nonce,
        )
        self._push.send_multipart(result.encode())

    def wait_for_pool(self, stop: threading.Event, parent_pid: int | None = None) -> bool:
        """Block until the frames socket has finished its handshake with the pool (or ``stop``).

        Only then does the worker say it is ready: a PUSH socket deals frames to the peers it
        has, so a stream started as soon as a worker *said* it was ready could otherwise go
        entirely to the workers whose frames connection happened to be up first. Returns
        whether the pool answered.
        """
        if self._frames_monitor is None:
            return True
        started = time.monotonic()
        noticed: set[str] = set()
        while not stop.is_set() and (parent_pid is None or os.getppid() == parent_pid):
            if self._frames_monitor.poll(200):
                event = recv_monitor_message(self._frames_monitor)["event"]
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._close_monitor()
                    return True
                reason = _HANDSHAKE_FAILED.get(event)
                if reason is not None and reason not in noticed:  # ZeroMQ retries; say it once
                    noticed.add(reason)
                    log.error("worker %s: %s at %s; retrying", self.worker_id, reason,
                              self._frames_endpoint)
            elif not noticed and time.monotonic() - started > POOL_WAIT_NOTICE_S:
                noticed.add("silent")
                log.warning("worker %s: no pool has answered at %s yet; waiting",
                            self.worker_id, self._frames_endpoint)
        return False

    def _close_monitor(self) -> None:
        if self._frames_monitor is not None:
            self._pull.disable_monitor()
            self._frames_monitor.close(0)
            self._frames_monitor = None

    def run(self, stop: threading.Event, parent_pid: int | None = None) -> None:
        """Serve until ``stop`` is set (or the parent process disappears), once the pool has
        answered (:meth:`wait_for_pool`)."""
        if not self.wait_for_pool(stop, parent_pid):
            return
        self._send_stats()
        detector = self.scorer.detector
        log.info("worker %s ready (pid %d; faces %s%s, classifier %s)", self.worker_id, os.getpid(),
                 detector.name, f" in {detector.runtime}" if hasattr(detector, "runtime") else "",
                 self.scorer.runtime.name)
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("worker %s: parent process exited; stopping", self.worker_id)
                break
            batch = self.collect_batch(stop)
            if batch:
                self.score_batch(batch)
            if time.monotonic() - self._last_stats_s > STATS_INTERVAL_S:
                self._send_stats()


def worker_process_main(
    config: Config, endpoints: WorkerEndpoints, worker_id: str, stop, log_level: int
) -> None:
    """Entry point of a worker process started by the service (multiprocessing 'spawn')."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service drains on Ctrl-C, then tells us
    configure_logging(log_level)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parent_pid = os.getppid()
    from detector.runtime import native_stderr_silenced, warm_up

    threads = config.workers.resolved_threads()
    # OpenCV (YuNet, resizes, the normalisation table) gets the same share of the cores as the
    # classifier: by default it would start a thread per core in every worker process.
    cv2.setNumThreads(threads)
    try:
        with native_stderr_silenced(log_level > logging.DEBUG):
            # The service has said once whether Haar replaces YuNet; n workers need not repeat it.
            scorer = build_frame_scorer(config, threads=threads, warn_fallback=False)
            warm_up(scorer.runtime, scorer.card.input_size_px)
    except DetectorError as exc:
        log.error("worker %s cannot start: %s", worker_id, exc)
        raise SystemExit(2) from None
    worker = Worker.for_config(config, endpoints, worker_id, scorer)
    try:
        worker.run(stop, parent_pid=parent_pid)
    finally:
        worker.close()


def run_remote_worker(config: Config, frames_endpoint: str, results_endpoint: str,
                      curve: CurveKeys | None = None) -> int:
    """``deepfake-detector worker --connect …``: join a pool on another host until Ctrl-C,
    as a CURVE client with ``curve`` keys."""
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("stopping worker after the current batch")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    scorer = build_frame_scorer(config, threads=config.workers.resolved_threads())
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    worker = Worker.for_config(config, WorkerEndpoints(frames_endpoint, results_endpoint, curve),
                               worker_id, scorer)
    log.info("worker %s connected to %s (results to %s)%s", worker_id, frames_endpoint,
             results_endpoint, " with CURVE keys" if curve else "")
    try:
        worker.run(stop)
    finally:
        worker.close()
    return 0

