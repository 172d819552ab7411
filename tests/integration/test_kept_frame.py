"""A live stream's latest thumbnail frame is kept, unannotated, in Redis for the dashboard."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from consumers.dashboard.frame_why import decode_kept_frame
from consumers.dashboard.redis_reader import DashboardReader
from detector.collector import Collector
from detector.redis_keys import RedisKeys
from detector.redis_sink import RedisSink
from detector.wire import FaceResult, FrameMessage, ResultMessage


def _frame(index: int) -> FrameMessage:
    image = np.zeros((720, 1280, 3), np.uint8)
    cv2.circle(image, (640, 360), 200, (40, 160, 220), -1)
    return FrameMessage(stream_id="cam", frame_index=index, pts_s=None,
                        capture_time_s=time.time(), image_bgr=image, want_thumbnail=True)


def _answer(collector: Collector, index: int, thumbnail: bytes | None = b"thumb") -> None:
    """Send frame ``index`` (into the collector's ledger) and hand it its result."""
    nonce = collector.stream("cam").nonce
    collector.ledger.sent(FrameMessage("cam", index, None, time.time(),
                                       np.zeros((2, 2, 3), np.uint8), nonce=nonce), keep=False)
    collector.handle_result(ResultMessage(stream_id="cam", frame_index=index, pts_s=None,
                                          capture_time_s=time.time(), worker_id="w0",
                                          faces=(FaceResult((500.0, 200.0, 780.0, 520.0), 0.9, 0.7),),
                                          batch_size=1, timings_ms={}, thumbnail_jpeg=thumbnail,
                                          nonce=nonce))


@pytest.fixture()
def collector(redis_client):
    keys = RedisKeys("deepfake")
    collector = Collector(RedisSink(redis_client, keys, 100), threshold=0.5, window=4, model_id="m@1")
    collector.register("cam", "rtsp://127.0.0.1:8554/cam", "live")
    return collector


def test_the_kept_frame_is_the_thumbnail_frame_and_reads_back(collector, redis_server):
    collector.keep_frame(_frame(8))
    _answer(collector, 4)  # an older frame's result: nothing to keep yet
    reader = DashboardReader(redis_server.url, "deepfake")
    assert reader.kept_frame("cam") is None
    _answer(collector, 8)
    index, jpeg = reader.kept_frame("cam")
    assert index == 8
    image = decode_kept_frame(jpeg)
    assert image.shape == (720, 1280, 3)
    assert np.abs(image.astype(int) - _frame(8).image_bgr.astype(int)).mean() < 3  # unannotated
    collector.keep_frame(_frame(12))
    _answer(collector, 12, thumbnail=None)  # no thumbnail: the kept frame stays
    assert reader.kept_frame("cam")[0] == 8


def test_a_new_run_of_the_stream_forgets_the_kept_frame(collector, redis_server):
    collector.keep_frame(_frame(8))
    _answer(collector, 8)
    collector.register("cam", "rtsp://127.0.0.1:8554/cam", "live")
    assert DashboardReader(redis_server.url, "deepfake").kept_frame("cam") is None


def test_a_broken_kept_frame_is_a_plain_error():
    from detector.errors import SourceError

    with pytest.raises(SourceError, match="not a readable JPEG"):
        decode_kept_frame(b"\xff\xd8 nope")
