"""The service: Redis (embedded or external), the ZeroMQ pool sockets, worker processes, the
collector and the producer hub, started and stopped together.

``replay`` and ``run`` both use it; ``replay`` waits for its files to finish, ``run`` serves
until Ctrl-C and takes attach/detach requests from the control channel.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import tempfile
import threading
import time
from dataclasses import dataclass

import zmq

from detector.collector import Collector, StreamState
from detector.config import Config
from detector.curve import (
    AUTHORIZED_DIR,
    CurveKeys,
    WorkerKeyring,
    check_exposure,
    load_server_keys,
    make_curve_server,
    start_authenticator,
)
from detector.embedded_redis import EmbeddedRedis, connect
from detector.errors import DetectorError, ModelError, SourceError
from detector.frame_ring import FrameRings
from detector.identifiers import stream_id_problem
from detector.inflight import InFlightLedger
from detector.metrics import PipelineMetrics, ServiceCounts, StreamCounts
from detector.publish_queue import PublishQueue
from detector.redis_keys import RedisKeys
from detector.redis_sink import RedisSink
from detector.scoring import decision_threshold
from detector.stream_status import TERMINAL_STATUSES, StreamStatus
from detector.worker import (
    WorkerEndpoints,
    load_card,
    resolve_face_detector_kind,
    worker_process_main,
)
from producers.base import Source
from producers.hub import ProducerHub
from producers.live import make_live_reader

log = logging.getLogger(__name__)

WORKER_START_FAILURES_LIMIT = 3
HEARTBEAT_INTERVAL_S = 2.0


@dataclass
class WorkerProcess:
    worker_id: str
    process: multiprocessing.process.BaseProcess
    started_s: float
    restarts: int = 0


class Service:
    """Owns every moving part of a running pipeline.

    Args:
        config: the validated configuration.
        redis_url: overrides ``redis.url``; empty/None with an empty ``redis.url`` starts an
            embedded redis-server.
        keep_frames: keep per-frame records for a replay report.
    """

    def __init__(self, config: Config, redis_url: str | None = None, keep_frames: bool = False):
        self.config = config
        self._redis_url = redis_url or config.redis.url
        self._keep_frames = keep_frames
        self._embedded: EmbeddedRedis | None = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._context: zmq.Context | None = None
        self._frames_socket: zmq.Socket | None = None
        self._results_socket: zmq.Socket | None = None
        self._mp = multiprocessing.get_context("spawn")
        self._worker_stop = self._mp.Event()
        self._workers: list[WorkerProcess] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._worker_start_failures = 0
        self.fatal_error: str | None = None
        self.redis_url = ""
        self.endpoints: WorkerEndpoints | None = None
        self.collector: Collector | None = None
        self.hub: ProducerHub | None = None
        self.sink: PublishQueue | None = None
        self.metrics: PipelineMetrics | None = None
        self.ledger: InFlightLedger | None = None
        self.keyring: WorkerKeyring | None = None
        self.rings: FrameRings | None = None
        self._authenticator = None
        self.keys = RedisKeys(config.redis.prefix)

    # --- start / stop -------------------------------------------------------------------------
    def start(self) -> Service:
        card = load_card(self.config)
        if not card.weights_path.is_file():
            raise ModelError(f"weights {card.weights_path} of model {card.name} not found")
        if not card.trained:
            log.warning("model %s is an UNTRAINED test model: its scores mean nothing", card.name)
        resolve_face_detector_kind(self.config, card)  # says once if Haar stands in for YuNet
        threshold = decision_threshold(self.config.scoring.threshold, card.threshold)

        if self._redis_url:
            self.redis_url = self._redis_url
        else:
            self._embedded = EmbeddedRedis(self.config.redis.embedded_port).start()
            self.redis_url = self._embedded.url
        try:
            client = connect(self.redis_url, self.config.redis.socket_timeout_s)
            # Writes go through a bounded queue: a stalled Redis never holds up result intake.
            self.sink = PublishQueue(RedisSink(client, self.keys, self.config.redis.history_maxlen),
                                     max_scores=self.config.redis.publish_queue)
            self.rings = self._make_rings()
            self.ledger = InFlightLedger(release_slot=self.rings.release if self.rings else None)
            self.collector = Collector(
                self.sink, threshold, self.config.scoring.window,
                model_id=f"{card.name}@{card.version}", keep_frames=self._keep_frames,
                finished_ttl_s=self.config.redis.finished_ttl_s,
                ledger=self.ledger,
                tracking=self.config.tracking,
                max_tracks=self.config.faces.max_faces,
            )
            expired = self.sink.forget_expired()
            if expired:
                log.info("removed %d ended stream(s) older than redis.finished_ttl_s from the "
                         "stream list: %s", len(expired), ", ".join(expired))
            self._bind_sockets()
            for index in range(self.config.workers.resolved_count()):
                self._workers.append(self._spawn_worker(f"w{index}"))
            self.hub = ProducerHub(
                self._frames_socket,
                self.collector.on_status,
                thumbnail_interval_s=self.config.dashboard.thumbnail_interval_s,
                live_buffer_frames=self.config.sources.live_buffer_frames,
                scored_count=self._scored_count,
                live_max_in_flight=self.config.sources.max_in_flight_frames,
                on_live_thumbnail_sent=(self.collector.keep_frame
                                        if self.config.dashboard.keep_live_frame else None),
                ledger=self.ledger,
                resend_after_s=self.config.workers.result_timeout_s,
                file_max_in_flight=self.config.pool.frames_hwm,
                live_reader=make_live_reader(self.config.sources),
                detect_plan=self.collector.detect_plan,
                may_send_file_frame=self.collector.in_order_ready,
                rings=self.rings,
            )
            self._start_metrics()
            self._start_thread("collector", self.collector.run, self._results_socket, self._stop)
            self._start_thread("supervisor", self._supervise)
        except BaseException:
            self.stop(drain=False)
            raise
        return self

    def _make_rings(self) -> FrameRings | None:
        """Shared-memory frame rings for the local workers, where no remote worker can join:
        ``pool.shared_memory`` and an ipc:// (or auto) frames endpoint. None: pixels inline."""
        pool = self.config.pool
        endpoint = pool.frames_endpoint
        if not pool.shared_memory:
            return None
        if endpoint != "auto" and not endpoint.startswith("ipc://"):
            log.info("frames go to the workers inline: %s can be joined by remote workers", endpoint)
            return None
        rings = FrameRings.create(pool.ring_slots)
        if rings is not None:
            log.info("frames go to the local workers through shared memory in %s", rings.folder)
        return rings

    def _start_metrics(self) -> None:
        """Serve Prometheus metrics; a taken port costs the metrics, not the service."""
        settings = self.config.metrics
        if not settings.enabled:
            return
        self.metrics = PipelineMetrics(self.stream_counts, self.service_counts)
        try:
            self.metrics.serve(settings.host, settings.port)
        except OSError as exc:
            log.warning("metrics disabled: cannot listen on %s:%d (%s)",
                        settings.host, settings.port, exc)
            self.metrics = None
            return
        self.collector.metrics = self.metrics

    def stream_counts(self) -> list[StreamCounts]:
        """Every stream's counters now: the producer's own where it still reads."""
        counts = []
        for state in self.collector.streams():
            handle = self.hub.handle(state.stream_id) if self.hub is not None else None
            if handle is not None:
                producer = dataclasses.asdict(handle.counters)
                producer["frames_dropped"] = handle.buffer.dropped
            else:
                producer = state.counters
            counts.append(StreamCounts(
                state.stream_id, state.status, producer.get("frames_read", 0),
                producer.get("frames_sampled", 0), producer.get("frames_dropped", 0),
                state.frames_scored, producer.get("reconnects", 0)))
        return counts

    def _scored_count(self, stream_id: str) -> int:
        state = self.collector.stream(stream_id)
        return state.frames_scored if state is not None else 0

    def service_counts(self) -> ServiceCounts:
        return ServiceCounts(self.workers_alive(), sum(w.restarts for w in self._workers))

    def _refresh_producer_counters(self) -> None:
        """Copy live producer counters into the collector, which publishes them each second."""
        for handle in self.hub.handles():
            if handle.is_done:
                continue
            counters = handle.counters
            self.collector.update_counters(handle.source.stream_id, {
                "frames_read": counters.frames_read,
                "frames_sampled": counters.frames_sampled,
                "frames_dropped": handle.buffer.dropped,
                "reconnects": counters.reconnects,
            })

    def _bind_sockets(self) -> None:
        pool = self.config.pool
        if "auto" in (pool.frames_endpoint, pool.results_endpoint):
            self._tmpdir = tempfile.TemporaryDirectory(prefix="deepfake-zmq-")
        frames = pool.frames_endpoint
        results = pool.results_endpoint
        if frames == "auto":
            frames = f"ipc://{self._tmpdir.name}/frames"
        if results == "auto":
            results = f"ipc://{self._tmpdir.name}/results"
        check_exposure([("pool.frames_endpoint", frames), ("pool.results_endpoint", results)],
                       has_keys=bool(pool.keys_dir), insecure=pool.insecure)
        self._context = zmq.Context()
        self._frames_socket = self._context.socket(zmq.PUSH)
        self._frames_socket.setsockopt(zmq.SNDHWM, pool.frames_hwm)
        self._frames_socket.setsockopt(zmq.LINGER, 0)
        self._results_socket = self._context.socket(zmq.PULL)
        self._results_socket.setsockopt(zmq.LINGER, 0)
        local_keys = self._secure_sockets() if pool.keys_dir else None
        try:
            self._frames_socket.bind(frames)
            self._results_socket.bind(results)
        except zmq.ZMQError as exc:
            raise DetectorError(f"cannot listen on {frames} / {results}: {exc}") from None
        self.endpoints = WorkerEndpoints(
            _connectable(self._frames_socket, frames), _connectable(self._results_socket, results),
            curve=local_keys, frame_rings=str(self.rings.folder) if self.rings else None,
        )
        log.info("pool endpoints: frames %s, results %s", self.endpoints.frames, self.endpoints.results)

    def _secure_sockets(self) -> CurveKeys:
        """CURVE on both pool sockets, a ZAP handler that accepts ``authorized/`` keys, and a
        fresh key pair for this service's own workers; returns that pair."""
        folder = self.config.resolve_path(self.config.pool.keys_dir)
        server = load_server_keys(folder)
        public, secret = zmq.curve_keypair()
        self.keyring = WorkerKeyring(folder / AUTHORIZED_DIR, extra_keys=(public,))
        self._authenticator = start_authenticator(self._context, self.keyring)
        for sock in (self._frames_socket, self._results_socket):
            make_curve_server(sock, server)
        log.info("pool sockets use CURVE: %d authorised worker key(s) in %s",
                    self.keyring.authorized_count, folder / AUTHORIZED_DIR)
        return CurveKeys(public, secret, server.public)

    def _spawn_worker(self, worker_id: str, restarts: int = 0) -> WorkerProcess:
        process = self._mp.Process(
            target=worker_process_main,
            args=(self.config, self.endpoints, worker_id, self._worker_stop,
                  logging.getLogger().getEffectiveLevel()),
            name=f"worker-{worker_id}",
            daemon=True,
        )
        process.start()
        return WorkerProcess(worker_id, process, time.monotonic(), restarts)

    def _start_thread(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, drain: bool = True, timeout_s: float = 30.0) -> None:
        """Stop readers; with ``drain``, wait for frames in flight to be scored; stop the rest."""
        if self.hub is not None:
            for handle in self.hub.handles():
                handle.stop.set()
                handle.buffer.close()
            if drain and self.collector is not None:
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline and self._frames_in_flight() > 0 and self.workers_alive():
                    time.sleep(0.05)
            self.hub.close()
        if self.collector is not None:
            for state in self.collector.streams():
                if state.status not in TERMINAL_STATUSES:
                    self.collector.on_status(state.stream_id, StreamStatus.STOPPED, {})
        self._worker_stop.set()
        for worker in self._workers:
            worker.process.join(10)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(5)
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if self.sink is not None:
            self.sink.close(timeout_s=min(timeout_s, 10.0))
        if self.metrics is not None:
            self.metrics.close()
        for sock in (self._frames_socket, self._results_socket):
            if sock is not None:
                sock.close(0)
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._context is not None:
            self._context.term()
            self._context = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        if self.rings is not None:
            self.rings.close()
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    def _frames_in_flight(self) -> int:
        total = 0
        for handle in self.hub.handles():
            state = self.collector.stream(handle.source.stream_id)
            scored = state.frames_scored if state is not None else 0
            total += max(0, handle.counters.frames_sent - scored)
        return total

    # --- supervision --------------------------------------------------------------------------
    def workers_alive(self) -> int:
        return sum(1 for w in self._workers if w.process.is_alive())

    def workers_ready(self) -> int:
        if self.collector is None:
            return 0
        return sum(1 for s in self.collector.workers.values() if s.is_ready and not s.is_stopping)

    def worker_pids(self) -> dict[str, int]:
        return {w.worker_id: w.process.pid for w in self._workers}

    def _supervise(self) -> None:
        """Restart dead workers and write the heartbeat, every 0.5 s, whatever goes wrong."""
        state = {"last_heartbeat": 0.0}
        while not self._stop.wait(0.5):
            if self._worker_stop.is_set():
                continue
            try:
                if self._supervise_once(state):
                    return
            except Exception:  # supervision outlives any one failure
                log.exception("supervisor: one round failed; going on")

    def _supervise_once(self, state: dict) -> bool:
        """One round of :meth:`_supervise`; True when the service gave up."""
        self._refresh_producer_counters()
        for i, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            code = worker.process.exitcode
            started_recently = time.monotonic() - worker.started_s < 60
            if code == 2 and started_recently:
                self._worker_start_failures += 1
            log.warning("worker %s (pid %s) exited with code %s; restarting it",
                        worker.worker_id, worker.process.pid, code)
            if self._worker_start_failures >= WORKER_START_FAILURES_LIMIT:
                self._give_up("workers cannot start (see the log above); stopping")
                return True
            self._workers[i] = self._spawn_worker(worker.worker_id, worker.restarts + 1)
            if self.hub is not None:
                self.hub.worker_lost()
        now = time.monotonic()
        if now - state["last_heartbeat"] >= HEARTBEAT_INTERVAL_S and self.sink is not None:
            state["last_heartbeat"] = now
            self.sink.heartbeat({
                "workers": self.workers_alive(),
                "workers_ready": self.workers_ready(),
                "worker_restarts": sum(w.restarts for w in self._workers),
                "results_rejected": self.collector.results_rejected,
                "frames_resent": self.ledger.resent,
                "scores_shed": self.sink.shed,
                "frames_endpoint": self.endpoints.frames if self.endpoints else None,
                "frames_shared_memory": self.rings is not None,
            })
        return False

    def _give_up(self, reason: str) -> None:
        self.fatal_error = reason
        log.error("%s", reason)
        if self.collector is not None:
            for state in self.collector.streams():
                self.collector.fail(state.stream_id, reason)

    # --- streams ------------------------------------------------------------------------------
    def add_source(self, source: Source, stride: int | None = None) -> StreamState:
        """Start a stream; its status and scores appear in Redis at once.

        Raises:
            SourceError: the stream id does not match the pattern (detector/identifiers.py).
        """
        problem = stream_id_problem(source.stream_id)
        if problem:
            raise SourceError(problem)
        state = self.collector.register(
            source.stream_id, source.display_url, "live" if source.is_live else "file"
        )
        self.hub.add(source, stride or self.config.sampling.stride, nonce=state.nonce)
        return state

    def remove_stream(self, stream_id: str) -> bool:
        """Stop reading a stream (it stays listed as ``stopped``). False if it is not read."""
        return self.hub.remove(stream_id)

    def detach_stream(self, stream_id: str) -> bool:
        """Stop reading a stream and take it off the stream list (its history stays in Redis
        for ``redis.finished_ttl_s``). False if the stream is unknown."""
        if self.collector.stream(stream_id) is None:
            return False
        self.hub.remove(stream_id)
        self.collector.forget(stream_id)
        return True

    def wait_ready(self, timeout_s: float = 120.0) -> bool:
        """Wait until at least one worker has loaded its model."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.workers_ready() > 0:
                return True
            if self.fatal_error:
                return False
            time.sleep(0.1)
        return False

    def wait_streams(self, stream_ids: list[str], stop: threading.Event | None = None,
                     on_progress=None, poll_s: float = 0.1) -> bool:
        """Wait until every stream is finished or failed (or ``stop`` is set)."""
        while True:
            states = [self.collector.stream(sid) for sid in stream_ids]
            if on_progress is not None:
                on_progress(states)
            if all(s is not None and s.done.is_set() for s in states):
                return True
            if stop is not None and stop.is_set():
                return False
            time.sleep(poll_s)


def _connectable(socket: zmq.Socket, endpoint: str) -> str:
    """The address a worker connects to: a wildcard bind is reached on loopback here."""
    last = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    address = last or endpoint
    return address.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace("tcp://*:", "tcp://127.0.0.1:")
