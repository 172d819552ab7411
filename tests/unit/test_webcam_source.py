"""Webcam source with the device faked at the cv2.VideoCapture boundary."""

from __future__ import annotations

import numpy as np
import pytest

from detector.config import config_from_dict
from detector.errors import SourceError
from detector.stream_urls import url_kind
from producers.factory import make_source
from producers.webcam_source import WebcamSource, parse_webcam_url


class FakeCapture:
    """Stands in for cv2.VideoCapture: ``frames`` good reads, then read() fails."""

    def __init__(self, device, frames: int = 3, is_opened: bool = True, shape=(48, 64, 3)):
        self.device = device
        self.remaining = frames
        self.is_opened = is_opened
        self.shape = shape
        self.released = False
        self.props: dict[int, float] = {}

    def isOpened(self) -> bool:
        return self.is_opened

    def read(self):
        if self.remaining <= 0:
            return False, None
        self.remaining -= 1
        return True, np.full(self.shape, 7, dtype=np.uint8)

    def set(self, prop_id, value) -> bool:
        self.props[prop_id] = value
        return True

    def release(self) -> None:
        self.released = True


@pytest.mark.parametrize("url, expected", [
    ("webcam:0", 0),
    ("webcam:12", 12),
    ("/dev/video2", "/dev/video2"),
])
def test_parse_webcam_url(url, expected):
    assert parse_webcam_url(url) == expected


@pytest.mark.parametrize("url", ["webcam:", "webcam:abc", "webcam:-1", "/dev/videoX", "/dev/sda"])
def test_parse_webcam_url_refuses_malformed(url):
    with pytest.raises(SourceError, match="expected webcam:N"):
        parse_webcam_url(url)


def test_frames_then_source_error_when_the_camera_stops():
    captures = []

    def open_capture(device):
        captures.append(FakeCapture(device, frames=3))
        return captures[-1]

    source = WebcamSource("webcam:1", "desk", open_capture=open_capture)
    source.open()
    frames = []
    with pytest.raises(SourceError, match="no frame after 3 frames"):
        for frame in source.frames():
            frames.append(frame)
    source.close()
    assert [f.frame_index for f in frames] == [0, 1, 2]
    assert frames[0].image_bgr.shape == (48, 64, 3)
    assert captures[0].device == 1 and captures[0].released


@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 4)])
def test_gray_and_bgra_frames_become_bgr(shape):
    source = WebcamSource("webcam:0", "desk", open_capture=lambda d: FakeCapture(d, 1, shape=shape))
    source.open()
    frame = next(source.frames())
    assert frame.image_bgr.shape == (48, 64, 3)


def test_open_fails_when_the_device_is_missing():
    capture = FakeCapture(0, is_opened=False)
    source = WebcamSource("/dev/video9", "desk", open_capture=lambda d: capture)
    with pytest.raises(SourceError, match="cannot open camera"):
        source.open()
    assert capture.released


def test_factory_builds_a_live_webcam_source():
    source = make_source("/dev/video0", "desk", config_from_dict({}).sources)
    assert isinstance(source, WebcamSource) and source.is_live
    assert url_kind("webcam:0") == "webcam"


class HangingCapture(FakeCapture):
    """A driver whose read() blocks until ``unblock`` is set (a stalled USB camera)."""

    def __init__(self, device, frames: int = 2):
        super().__init__(device, frames)
        import threading

        self.unblock = threading.Event()

    def read(self):
        if self.remaining <= 0:
            self.unblock.wait(30)
            return False, None
        return super().read()


@pytest.mark.timeout(20)
def test_a_hung_read_becomes_a_source_error_and_the_capture_is_released_when_it_returns():
    import time

    capture = HangingCapture(0, frames=2)
    source = WebcamSource("webcam:0", "desk", open_capture=lambda d: capture, read_timeout_s=0.3)
    frames = []
    started = time.monotonic()
    with pytest.raises(SourceError, match="no frame within 0.3 s after 2 frames"):
        for frame in source.frames():
            frames.append(frame.frame_index)
    assert frames == [0, 1]
    assert time.monotonic() - started < 5
    assert not capture.released  # still inside the driver: nobody else touches it
    source.close()  # nothing left to close; must not block on the stuck thread
    capture.unblock.set()
    deadline = time.monotonic() + 5
    while not capture.released and time.monotonic() < deadline:
        time.sleep(0.01)
    assert capture.released


def test_a_driver_exception_during_read_reaches_the_caller_as_a_source_error():
    import cv2

    class Broken(FakeCapture):
        def read(self):
            raise cv2.error("driver fell over")

    source = WebcamSource("webcam:0", "desk", open_capture=lambda d: Broken(d))
    with pytest.raises(SourceError, match="read failed after 0 frames"):
        next(iter(source.frames()))
    source.close()
