"""A stalled Redis does not hold up scoring (issue 13, item 7): the real redis-server is
SIGSTOPped (connections hang until the socket timeout) while a stream is scored; scoring goes
on at full pace, what the bounded publish queue sheds is counted, and once Redis answers again
the final status lands."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from app.service import Service
from detector.embedded_redis import EmbeddedRedis
from producers.file_source import FileSource
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_scoring_goes_on_while_redis_stalls(make_config, tmp_path):
    import redis

    from producers.synthetic import write_video

    video = write_video(tmp_path / "clip.mp4", 160, 320, 240)
    server = EmbeddedRedis(port=0).start()
    config = make_config(redis={"socket_timeout_s": 30.0, "publish_queue": 8},
                         workers={"count": 1, "max_batch": 4, "max_wait_ms": 10})
    service = Service(config, redis_url=server.url).start()
    stalled = False
    try:
        assert service.wait_ready(120)
        # given Redis stops answering (a stall, not a refused connection)
        os.kill(server._process.pid, signal.SIGSTOP)
        stalled = True
        started = time.monotonic()
        # when a file is scored meanwhile
        state = service.add_source(FileSource(video, "clip"))
        # then all 40 sampled frames are scored before Redis' 30 s socket timeout could have
        # expired even once: neither attaching nor result intake ever waited on a write
        assert state.done.wait(max(0.0, started + 25 - time.monotonic())), \
            f"scoring waited on Redis: {state.frames_scored} scored, {state.status}"
        elapsed_s = time.monotonic() - started
        assert state.status == "finished" and state.frames_scored == 40
        assert service.sink.shed >= 40 - 8 - 1  # the queue kept at most 8 score messages
        print(f"40 frames scored in {elapsed_s:.1f} s with Redis stalled; {service.sink.shed} "
              "score messages shed")
        # and when Redis answers again, the final status is published
        os.kill(server._process.pid, signal.SIGCONT)
        stalled = False
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        wait_until(lambda: (raw := client.hget("deepfake:streams", "clip")) and
                   json.loads(raw)["status"] == "finished", 30, message="final status published")
        assert 1 <= client.xlen("deepfake:history:clip") <= 9  # the newest queued scores
        client.close()
    finally:
        if stalled:
            os.kill(server._process.pid, signal.SIGCONT)
        service.stop()
        server.stop()
