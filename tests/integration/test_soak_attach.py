"""Attach, finish and detach 100 file streams (issue 13, item 6): the service's threads
(FFmpeg decoder threads included) and memory come back near where they started."""

from __future__ import annotations

import gc
import os

import pytest

from app.service import Service
from producers.file_source import FileSource
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CYCLES = 100


def native_threads() -> int:
    """Threads of this process as the kernel sees them (FFmpeg's are invisible to Python)."""
    return len(os.listdir("/proc/self/task"))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def run_cycles(service: Service, video, first: int, count: int) -> None:
    for i in range(first, first + count):
        state = service.add_source(FileSource(video, f"soak{i}"))
        assert state.done.wait(60) and state.status == "finished", (i, state.status, state.error)
        assert service.remove_stream(f"soak{i}") or True


def test_attach_finish_detach_cycles_leave_no_threads_or_memory_behind(make_config, redis_server, tmp_path):
    from producers.synthetic import write_video

    # given a short H.264 file (FFmpeg decodes it with several threads)
    video = write_video(tmp_path / "short.mp4", 12, 640, 360)
    service = Service(make_config(workers={"count": 1, "max_batch": 4, "max_wait_ms": 5}),
                      redis_url=redis_server.url).start()
    try:
        assert service.wait_ready(120)
        run_cycles(service, video, 0, 10)  # warm up: caches, pools, lazily started threads
        gc.collect()
        threads_before, rss_before = native_threads(), rss_mb()
        # when 100 more streams are attached, finish and are detached
        run_cycles(service, video, 10, CYCLES)
        gc.collect()
        # then threads and memory are back near the baseline
        wait_until(lambda: native_threads() <= threads_before + 4, 10,
                   message=f"threads back near {threads_before} (now {native_threads()})")
        grown_mb = rss_mb() - rss_before
        print(f"{CYCLES} cycles: threads {threads_before} → {native_threads()}, "
              f"RSS {rss_before:.0f} MB → {rss_mb():.0f} MB")
        assert grown_mb < 100, f"RSS grew {grown_mb:.0f} MB over {CYCLES} cycles"
        assert len(service.hub.handles()) == 0
    finally:
        service.stop()
