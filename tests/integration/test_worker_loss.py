"""A replay stays lossless and exactly-once when a worker dies or hangs (issue 13, item 5):
real worker processes, one SIGKILLed or SIGSTOPped mid-run; the frames it held are sent
again to the healthy one and every sampled frame is scored exactly once, in the report's
records and in Redis history; the shared-memory slots they held are all released (issue 11)."""

from __future__ import annotations

import os
import signal

import pytest

from app.service import Service
from producers.file_source import FileSource
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

FRAMES_PER_FILE = 96
STRIDE = 4


@pytest.fixture(scope="module")
def three_files(tmp_path_factory):
    from producers.synthetic import write_video

    folder = tmp_path_factory.mktemp("loss")
    return [write_video(folder / f"clip{i}.mp4", FRAMES_PER_FILE, 320, 240) for i in range(3)]


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_a_lost_worker_costs_no_frame_and_scores_none_twice(
        fault, three_files, make_config, redis_server, redis_client):
    config = make_config(workers={"count": 2, "max_batch": 4, "max_wait_ms": 10,
                                  "result_timeout_s": 3.0},
                         sampling={"stride": STRIDE})
    service = Service(config, redis_url=redis_server.url, keep_frames=True).start()
    victim = None
    try:
        wait_until(lambda: service.workers_ready() >= 2, 180, message="two workers ready")
        states = [service.add_source(FileSource(path, path.stem)) for path in three_files]
        # given scoring is under way, when one worker is killed or hangs
        wait_until(lambda: sum(s.frames_scored for s in states) >= 6, 60, message="scoring started")
        victim = service.worker_pids()["w0"]
        os.kill(victim, fault)
        # then every file finishes with each sampled frame scored exactly once
        for state in states:
            assert state.done.wait(180), f"{state.stream_id} did not finish: {state.status}"
        assert service.sink.flush(10)  # Redis writes are queued (detector/publish_queue.py)
        expected = set(range(0, FRAMES_PER_FILE, STRIDE))
        for state in states:
            assert state.status == "finished", (state.stream_id, state.error)
            indices = [record.frame_index for record in state.frames]
            assert sorted(indices) == sorted(expected), state.stream_id
            history = redis_client.xrange(f"deepfake:history:{state.stream_id}")
            assert sorted(int(e[b"frame_index"]) for _, e in history) == sorted(expected)
        assert service.ledger.resent > 0  # the lost worker's frames were sent again
        # and the frames went through shared memory, whose every slot is free again: each ring
        # file is removed once its stream has ended and its last slot was released
        assert service.rings is not None
        wait_until(lambda: service.rings.rings() == [], 10, message="every ring removed")
        claimed, released = service.rings.slot_counts()
        assert claimed == released >= len(three_files) * len(expected)
        assert list(service.rings.folder.iterdir()) == []
    finally:
        if fault == signal.SIGSTOP and victim is not None:
            os.kill(victim, signal.SIGCONT)
        service.stop()
