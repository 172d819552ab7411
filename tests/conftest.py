"""Shared fixtures: a real redis-server, a tiny random-weight model, small PyAV videos, and a
real worker serving a test's own pool sockets."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import zmq

    from detector.config import Config
    from detector.frame_ring import FrameRings
    from detector.worker import Worker

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
YUNET_SHARED = SHARED_DIR / "models" / "face_detection_yunet.onnx"


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.05,
               message: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {message}")


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port for the whole session."""
    from detector.embedded_redis import EmbeddedRedis, find_redis_server
    from detector.errors import RedisUnavailableError

    try:
        find_redis_server()
    except RedisUnavailableError as exc:
        pytest.skip(str(exc))
    server = EmbeddedRedis(port=0).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.flushdb()
    yield client
    client.close()


TINY_CARD = """\
name = "tiny_b0"
version = "0.0.0-test"
architecture = "efficientnet_b0"
weights = "tiny_b0.weights.h5"
input_size_px = 64
mean_rgb = [0.485, 0.456, 0.406]
std_rgb = [0.229, 0.224, 0.225]
face_detector = "haar"
face_margin = 0.25
threshold = 0.5
trained = false  # RANDOM WEIGHTS: a test fixture, not a detector
"""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 64-px EfficientNet-B0 with random weights and its card (trained = false)."""
    import keras

    from detector.efficientnet import EfficientNetB0Classifier

    folder = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    model = EfficientNetB0Classifier(64)
    model.save_weights(str(folder / "tiny_b0.weights.h5"))
    (folder / "tiny_b0.toml").write_text(TINY_CARD, encoding="utf-8")
    return folder


@pytest.fixture
def make_config(tiny_model_dir):
    """Build a validated Config pointing at the tiny model; sections override defaults."""
    from detector.config import config_from_dict

    def make(**sections) -> Config:
        raw = {
            "model": {"name": "tiny_b0", "dir": str(tiny_model_dir)},
            "workers": {"count": 1, "max_batch": 8, "max_wait_ms": 20},
            "faces": {"detector": "haar"},
            "redis": {"embedded_port": 0},
            "metrics": {"enabled": False},
        }
        for name, values in sections.items():
            raw[name] = {**raw.get(name, {}), **values} if isinstance(values, dict) else values
        return config_from_dict(raw)

    return make


@dataclass
class WorkerHarness:
    """A worker thread and the pool sockets it serves (see :func:`serve_worker`)."""

    push: zmq.Socket  # the pool's frames socket: frames sent here reach the worker
    pull: zmq.Socket  # the pool's results socket: the worker's results and stats arrive here
    worker: Worker
    thread: threading.Thread
    crashed: list[BaseException]  # what ``worker.run`` raised, if it raised


@contextlib.contextmanager
def serve_worker(config: Config, worker_id: str,
                 rings: FrameRings | None = None) -> Iterator[WorkerHarness]:
    """A real :class:`~detector.worker.Worker` on a thread, over real ZeroMQ: the test plays the
    pool with a PUSH (frames) and a PULL (results) socket bound on free loopback ports.

    ``rings``: the frame rings whose folder the worker reads slots from; closed last.
    Teardown, in this order: stop the worker, join its thread (10 s), close the worker's
    handshake monitor and sockets, then the pool's, terminate the context, close ``rings``.
    """
    import zmq

    from detector.worker import Worker, WorkerEndpoints, build_frame_scorer

    context = zmq.Context()
    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    for sock in (push, pull):
        sock.setsockopt(zmq.LINGER, 0)
    frames_port = push.bind_to_random_port("tcp://127.0.0.1")
    results_port = pull.bind_to_random_port("tcp://127.0.0.1")
    endpoints = WorkerEndpoints(f"tcp://127.0.0.1:{frames_port}", f"tcp://127.0.0.1:{results_port}",
                                frame_rings=str(rings.folder) if rings is not None else None)
    worker = Worker.for_config(config, endpoints, worker_id, build_frame_scorer(config), context)
    stop = threading.Event()
    crashed: list[BaseException] = []

    def serve() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # recorded for the test's assertions
            crashed.append(exc)
            raise

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield WorkerHarness(push, pull, worker, thread, crashed)
    finally:
        stop.set()
        thread.join(10)
        worker._close_monitor()  # open if the test ended before the handshake: term() would hang
        worker._pull.close(0)
        worker._push.close(0)
        push.close(0)
        pull.close(0)
        context.term()
        if rings is not None:
            rings.close()


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def face_video(video_dir) -> Path:
    """42 frames, 320×240, a real face drifting across; frames stamp their own index."""
    from producers.synthetic import write_video

    return write_video(video_dir / "driving.mp4", 42, width=320, height=240)


@pytest.fixture(scope="session")
def second_video(video_dir) -> Path:
    """A WebM (VP8) of 30 frames without a face."""
    from producers.synthetic import write_video

    return write_video(video_dir / "other.webm", 30, width=320, height=240, codec="libvpx",
                       with_face=False)
