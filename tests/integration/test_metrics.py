"""The service's Prometheus endpoint, scraped over real HTTP while a real file is scored."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.service import Service
from producers.file_source import FileSource
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_service_serves_stream_worker_and_latency_metrics(make_config, redis_server, face_video):
    # given a service with metrics on a free loopback port
    config = make_config(metrics={"enabled": True, "host": "127.0.0.1", "port": 0},
                         sampling={"stride": 2})
    service = Service(config, redis_url=redis_server.url).start()
    try:
        assert service.metrics is not None and service.metrics.port > 0
        assert service.wait_ready(180)
        # when a 42-frame file is scored
        service.add_source(FileSource(face_video, "clip"))
        wait_until(lambda: service.collector.stream("clip").done.is_set(), 120, message="clip done")
        values = scrape(service.metrics.port)
    finally:
        service.stop(drain=False)
    # then the endpoint reports its counters, batches, stage latencies and workers
    clip = (("stream", "clip"),)
    assert values[("deepfake_frames_read_total", clip)] == 42
    assert values[("deepfake_frames_sampled_total", clip)] == 21
    assert values[("deepfake_frames_scored_total", clip)] == 21
    assert values[("deepfake_frames_dropped_total", clip)] == 0
    assert values[("deepfake_reconnects_total", clip)] == 0
    assert values[("deepfake_stream_status", (("status", "finished"), ("stream", "clip")))] == 1
    assert values[("deepfake_batch_size_frames_count", ())] == 21
    for stage in ("queue", "detect", "classify"):
        assert values[("deepfake_stage_latency_seconds_count", (("stage", stage),))] == 21
    assert values[("deepfake_capture_to_publish_seconds_count", ())] == 21
    assert values[("deepfake_worker_restarts_total", ())] == 0
    assert values[("deepfake_workers_alive", ())] == 1


def test_a_taken_metrics_port_leaves_the_service_running(make_config, redis_server, caplog):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config(metrics={"enabled": True, "port": port}, workers={"count": 1})
        service = Service(config, redis_url=redis_server.url).start()
        try:
            assert service.metrics is None
            assert "metrics disabled" in caplog.text
        finally:
            service.stop(drain=False)
