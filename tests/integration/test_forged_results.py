"""Results nobody asked for are dropped (issue 13, item 1): a plain PUSH socket on the results
endpoint of a running service injects results for a real stream, for frames never sent, with
no or a wrong nonce, and for phantom streams; Redis shows none of them."""

from __future__ import annotations

import json
import time

import pytest
import zmq

from app.service import Service
from detector.embedded_redis import free_port
from detector.wire import FaceResult, ResultMessage
from producers.file_source import FileSource
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def forged(stream_id: str, frame_index: int, nonce: str = "") -> list[bytes]:
    return ResultMessage(
        stream_id=stream_id, frame_index=frame_index, pts_s=None, capture_time_s=time.time(),
        faces=(FaceResult((0, 0, 10, 10), 0.99, 0.999),), worker_id="FORGED", batch_size=1,
        timings_ms={}, nonce=nonce).encode()


def test_injected_results_are_dropped_and_counted(make_config, redis_server, redis_client, tmp_path):
    from producers.synthetic import write_video

    video = write_video(tmp_path / "long.mp4", 160, 320, 240)
    frames_port, results_port = free_port(), free_port()
    config = make_config(pool={"frames_endpoint": f"tcp://127.0.0.1:{frames_port}",
                               "results_endpoint": f"tcp://127.0.0.1:{results_port}"})
    service = Service(config, redis_url=redis_server.url).start()
    context = zmq.Context()
    attacker = context.socket(zmq.PUSH)
    attacker.setsockopt(zmq.LINGER, 1000)
    attacker.connect(f"tcp://127.0.0.1:{results_port}")
    try:
        assert service.wait_ready(120)
        # given a real stream being scored
        state = service.add_source(FileSource(video, "long"))
        # when forged results arrive for it and for phantom streams
        n_forged = 0
        for index in range(0, 160, 4):
            for parts in (forged("long", index), forged("long", index, "0" * 16),
                          forged("long", index + 1, state.nonce), forged(f"ghost-{index}", index)):
                attacker.send_multipart(parts)
                n_forged += 1
        assert state.done.wait(120)
        wait_until(lambda: service.collector.results_rejected >= n_forged, 10,
                   message="every forged result counted")
        assert service.sink.flush(10)  # Redis writes are queued (detector/publish_queue.py)
        # then only the real results were scored, once each
        assert state.status == "finished" and state.frames_scored == 40
        assert set(redis_client.hkeys("deepfake:streams")) == {b"long"}
        history = redis_client.xrange("deepfake:history:long")
        assert len(history) == 40
        assert len({entry[b"frame_index"] for _, entry in history}) == 40
        latest = json.loads(redis_client.get("deepfake:latest:long"))
        assert latest["worker"] != "FORGED"
        assert not [s for s in service.collector.streams() if s.stream_id.startswith("ghost")]
    finally:
        attacker.close(0)
        context.term()
        service.stop()
