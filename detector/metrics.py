"""Prometheus metrics of a running service, served over HTTP (loopback by default).

Per-stream counters (frames read / sampled / dropped / scored, reconnects) and worker restarts
are read from the service at scrape time; batch sizes and stage latencies are histograms fed
by the collector from each result's ``timings_ms``. Labels carry stream ids, never URLs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class StreamCounts:
    """One stream's counters at scrape time."""

    stream_id: str
    status: str
    frames_read: int
    frames_sampled: int
    frames_dropped: int
    frames_scored: int
    reconnects: int


@dataclass(frozen=True)
class ServiceCounts:
    """Service-wide numbers at scrape time."""

    workers_alive: int
    worker_restarts: int


class _SnapshotCollector:
    """Turns the service's live counters into metric families on every scrape."""

    def __init__(self, streams: Callable[[], Iterable[StreamCounts]],
                 service: Callable[[], ServiceCounts]):
        self._streams = streams
        self._service = service

    def describe(self) -> list[Metric]:
        return []  # values only exist at scrape time; skip registration-time collection

    def collect(self) -> Iterable[Metric]:
        families = {
            name: CounterMetricFamily(f"deepfake_{name}", help_text, labels=["stream"])
            for name, help_text in (
                ("frames_read", "Frames decoded from the source"),
                ("frames_sampled", "Frames selected for scoring (every stride-th)"),
                ("frames_dropped", "Sampled frames dropped by live backpressure (oldest first)"),
                ("frames_scored", "Frames scored by the worker pool"),
                ("reconnects", "Times a live source was closed and reopened"),
            )
        }
        status = GaugeMetricFamily("deepfake_stream_status",
                                   "1 for the stream's current status", labels=["stream", "status"])
        for counts in self._streams():
            for name, family in families.items():
                family.add_metric([counts.stream_id], getattr(counts, name))
            status.add_metric([counts.stream_id, counts.status], 1)
        yield from families.values()
        yield status
        service = self._service()
        workers = GaugeMetricFamily("deepfake_workers_alive", "Worker processes alive")
        workers.add_metric([], service.workers_alive)
        yield workers
        restarts = CounterMetricFamily("deepfake_worker_restarts",
                                       "Worker processes restarted after dying")
        restarts.add_metric([], service.worker_restarts)
        yield restarts


class PipelineMetrics:
    """The service's metrics registry and, once ``serve`` is called, its HTTP endpoint.

    Args:
        streams: returns every stream's counters (called on each scrape).
        service: returns worker numbers (called on each scrape).
    """

    def __init__(self, streams: Callable[[], Iterable[StreamCounts]],
                 service: Callable[[], ServiceCounts]):
        self.registry = CollectorRegistry(auto_describe=False)
        self.batch_size = Histogram(
            "deepfake_batch_size_frames", "Size of the batch each scored frame was part of",
            buckets=BATCH_BUCKETS, registry=self.registry)
        self.stage_latency = Histogram(
            "deepfake_stage_latency_seconds",
            "Per-frame time in each pipeline stage (queue, detect, crop, classify)",
            labelnames=["stage"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.end_to_end = Histogram(
            "deepfake_capture_to_publish_seconds", "From frame capture to its score in Redis",
            buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.registry.register(_SnapshotCollector(streams, service))
        self._server = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def observe_result(self, batch_size: int, timings_ms: dict[str, float],
                       latency_ms: float | None) -> None:
        """Record one scored frame: its batch size, stage times and end-to-end latency (ms)."""
        self.batch_size.observe(batch_size)
        for stage, value_ms in timings_ms.items():
            if value_ms >= 0:
                self.stage_latency.labels(stage=stage).observe(value_ms / 1000.0)
        if latency_ms is not None and latency_ms >= 0:
            self.end_to_end.observe(latency_ms / 1000.0)

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint (``/metrics``) in a daemon thread; ``port`` 0 = a free one.

        Returns:
            the port it listens on.
        Raises:
            OSError: the address cannot be bound.
        """
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = self._server.server_port
        log.info("metrics at http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
