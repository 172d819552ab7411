"""Shared fixtures: a real redis-server, a tiny random-weight model, small PyAV videos."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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

    def make(**sections) -> Config:  # noqa: F821
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
