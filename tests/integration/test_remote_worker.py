"""A worker on "another host" joins the pool over tcp:// with `deepfake-detector worker --connect`."""

import os
import socket
import subprocess
import sys

import pytest

from app.service import Service
from detector.config import config_from_dict
from detector.embedded_redis import free_port
from producers.file_source import FileSource
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def free_port_pair() -> int:
    """A free port whose successor is free too (the worker's default results endpoint)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_remote_worker_takes_a_share_of_the_frames(tiny_model_dir, redis_server, tmp_path):
    from producers.synthetic import write_video

    video = write_video(tmp_path / "long.mp4", 240, 320, 240)
    port = free_port_pair()
    raw = {
        "model": {"name": "tiny_b0", "dir": str(tiny_model_dir)},
        "faces": {"detector": "haar"},
        "workers": {"count": 1, "max_batch": 4, "max_wait_ms": 10},
        "pool": {"frames_endpoint": f"tcp://127.0.0.1:{port}",
                 "results_endpoint": f"tcp://127.0.0.1:{port + 1}"},
        "metrics": {"enabled": False},
    }
    config_path = tmp_path / "config.toml"
    config_path.write_text(f'[model]\nname = "tiny_b0"\ndir = "{tiny_model_dir}"\n'
                           '[faces]\ndetector = "haar"\n[workers]\ncount = 1\nmax_batch = 4\n')
    service = Service(config_from_dict(raw), redis_url=redis_server.url).start()
    remote = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--config", str(config_path),
         "--connect", f"tcp://127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_until(lambda: len(service.collector.workers) >= 2 and service.workers_ready() >= 2,
                   120, message="local and remote workers ready")
        remote_id = next(w for w in service.collector.workers if not w.startswith("w"))
        state = service.add_source(FileSource(video, "long"))
        assert state.done.wait(120)
        assert state.status == "finished" and state.frames_scored == 60
        wait_until(lambda: service.collector.workers[remote_id].frames_scored > 0, 10,
                   message="the remote worker scored frames")
        # a tcp:// pool sends pixels inline, even with shared memory on (the default): the
        # remote worker maps no rings, and it found no frame malformed
        assert config_from_dict(raw).pool.shared_memory and service.rings is None
        assert service.collector.workers[remote_id].malformed_messages == 0
    finally:
        remote.terminate()
        output, _ = remote.communicate(timeout=30)
        service.stop()
    assert remote.returncode == 0, output
    assert "Traceback" not in output
