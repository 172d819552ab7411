"""PipelineMetrics: snapshot counters and histograms, rendered in the Prometheus text format."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detector.metrics import PipelineMetrics, ServiceCounts, StreamCounts


def samples(metrics: PipelineMetrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def metrics():
    streams = [StreamCounts("door", "running", 120, 30, 4, 26, 2),
               StreamCounts("desk", "reconnecting", 0, 0, 0, 0, 7)]
    return PipelineMetrics(lambda: streams, lambda: ServiceCounts(workers_alive=2, worker_restarts=1))


@pytest.mark.parametrize("name, stream, value", [
    ("deepfake_frames_read_total", "door", 120),
    ("deepfake_frames_sampled_total", "door", 30),
    ("deepfake_frames_dropped_total", "door", 4),
    ("deepfake_frames_scored_total", "door", 26),
    ("deepfake_reconnects_total", "door", 2),
    ("deepfake_reconnects_total", "desk", 7),
    ("deepfake_frames_read_total", "desk", 0),
])
def test_stream_counters_are_read_at_scrape_time(metrics, name, stream, value):
    assert samples(metrics)[(name, (("stream", stream),))] == value


def test_service_numbers_and_status(metrics):
    values = samples(metrics)
    assert values[("deepfake_worker_restarts_total", ())] == 1
    assert values[("deepfake_workers_alive", ())] == 2
    assert values[("deepfake_stream_status", (("status", "reconnecting"), ("stream", "desk")))] == 1


def test_no_streams_no_stream_samples():
    empty = PipelineMetrics(lambda: [], lambda: ServiceCounts(0, 0))
    assert not [k for k in samples(empty) if k[0].startswith("deepfake_frames")]


def test_results_feed_the_histograms(metrics):
    metrics.observe_result(8, {"queue": 12.0, "detect": 5.0, "classify": 30.0}, 80.0)
    metrics.observe_result(1, {"queue": 1.0, "detect": -1.0}, None)
    values = samples(metrics)
    assert values[("deepfake_batch_size_frames_count", ())] == 2
    assert values[("deepfake_batch_size_frames_sum", ())] == 9
    assert values[("deepfake_stage_latency_seconds_count", (("stage", "queue"),))] == 2
    assert values[("deepfake_stage_latency_seconds_count", (("stage", "detect"),))] == 1
    assert values[("deepfake_stage_latency_seconds_sum", (("stage", "classify"),))] == pytest.approx(0.03)
    assert values[("deepfake_capture_to_publish_seconds_count", ())] == 1
