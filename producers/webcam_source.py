"""Webcams (``webcam:N`` or ``/dev/videoN``) read with OpenCV's ``cv2.VideoCapture``."""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import cv2
import numpy as np

from detector.config import SourcesConfig
from detector.errors import SourceError
from producers.base import SourceFrame

log = logging.getLogger(__name__)

_WEBCAM_RE = re.compile(r"^webcam:(\d{1,3})$")
_DEVICE_RE = re.compile(r"^/dev/video(\d{1,3})$")


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a webcam source uses (tests fake it here)."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def set(self, prop_id: int, value: float) -> bool: ...

    def release(self) -> None: ...


CaptureFactory = Callable[[int | str], Capture]


def parse_webcam_url(url: str) -> int | str:
    """``webcam:N`` → ``N``; ``/dev/videoN`` → the path.

    Raises:
        SourceError: anything else (e.g. ``webcam:abc``), which can never work.
    """
    match = _WEBCAM_RE.match(url)
    if match:
        return int(match.group(1))
    if _DEVICE_RE.match(url):
        return url
    raise SourceError(f"{url!r}: expected webcam:N or /dev/videoN")


class _TimedReader:
    """Runs ``capture.read()`` on a daemon thread so a hung driver cannot hang the caller.

    After a timeout the reader (and its capture) is abandoned: the thread releases the capture
    itself if the stuck read ever returns, so nothing calls into the driver from two threads.
    """

    def __init__(self, capture: Capture, name: str):
        self._capture = capture
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while self._requests.get() is not None and not self._closed.is_set():
            try:
                result = ("ok", self._capture.read())
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
                result = ("error", exc)
            if self._closed.is_set():
                break
            self._results.put(result)
        self._capture.release()

    def read(self, timeout_s: float) -> tuple[bool, np.ndarray | None]:
        """The next ``capture.read()``.

        Raises:
            TimeoutError: no answer within ``timeout_s`` (the reader is then closed).
        """
        self._requests.put(True)
        try:
            kind, value = self._results.get(timeout=timeout_s)
        except queue.Empty:
            self.close(wait_s=0.0)
            raise TimeoutError from None
        if kind == "error":
            raise value
        return value

    def close(self, wait_s: float = 1.0) -> None:
        """Stop the thread; it releases the capture (now, or when a stuck read returns)."""
        self._closed.set()
        self._requests.put(None)
        self._thread.join(wait_s)


class _CameraPicture:
    """A grey or BGRA camera image, converted to BGR only if the hub samples it."""

    def __init__(self, image: np.ndarray):
        self._image = image
        self.height, self.width = image.shape[:2]

    def to_ndarray(self, format: str) -> np.ndarray:
        if format != "bgr24":
            raise ValueError(f"expected format 'bgr24', got {format!r}")
        code = cv2.COLOR_GRAY2BGR if self._image.ndim == 2 else cv2.COLOR_BGRA2BGR
        return cv2.cvtColor(self._image, code)


class WebcamSource:
    """A local camera at its native rate.

    Args:
        url: ``webcam:N`` or ``/dev/videoN``.
        stream_id: id to publish under.
        open_capture: makes the capture object (default ``cv2.VideoCapture``).
        open_timeout_s: asked of the backend where it supports it.
        read_timeout_s: asked of the backend where it supports it, and enforced here: a read
            that takes longer raises ``SourceError`` so the live loop can reconnect.

    Raises:
        SourceError: a malformed URL.
    """

    is_live = True

    def __init__(self, url: str, stream_id: str, open_capture: CaptureFactory | None = None,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 20.0):
        self.device = parse_webcam_url(url)
        self.stream_id = stream_id
        self.display_url = url
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self._open_capture = open_capture or cv2.VideoCapture
        self._reader: _TimedReader | None = None

    def open(self) -> None:
        self.close()
        try:
            capture = self._open_capture(self.device)
        except (cv2.error, OSError) as exc:
            raise SourceError(f"{self.display_url}: cannot open camera ({exc})") from None
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"{self.display_url}: cannot open camera (missing or busy)")
        for prop, value_s in (("CAP_PROP_OPEN_TIMEOUT_MSEC", self.open_timeout_s),
                              ("CAP_PROP_READ_TIMEOUT_MSEC", self.read_timeout_s)):
            if hasattr(cv2, prop):
                capture.set(getattr(cv2, prop), value_s * 1000.0)
        self._reader = _TimedReader(capture, f"webcam-{self.stream_id}")
        log.info("stream %s: opened camera %s", self.stream_id, self.display_url)

    def frames(self) -> Iterator[SourceFrame]:
        """Yield frames until the camera stops delivering them.

        Raises:
            SourceError: a read failed (camera unplugged, busy or stalled).
        """
        if self._reader is None:
            self.open()
        index = 0
        start_s = time.monotonic()
        while self._reader is not None:
            try:
                ok, image = self._reader.read(self.read_timeout_s)
            except TimeoutError:
                self._reader = None
                raise SourceError(f"{self.display_url}: no frame within {self.read_timeout_s:g} s "
                                  f"after {index} frames (camera stalled)") from None
            except cv2.error as exc:
                raise SourceError(f"{self.display_url}: read failed after {index} frames ({exc})") from None
            if not ok or image is None:
                raise SourceError(f"{self.display_url}: camera delivered no frame after {index} frames")
            pixels = image if image.ndim == 3 and image.shape[2] == 3 else _CameraPicture(image)
            yield SourceFrame(index, time.monotonic() - start_s, time.time(), pixels)
            index += 1

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()


def make_webcam_source(url: str, stream_id: str, sources: SourcesConfig) -> WebcamSource:
    """``LIVE_KINDS`` factory: a webcam with the ``[sources]`` timeouts."""
    return WebcamSource(url, stream_id, open_timeout_s=sources.open_timeout_s,
                        read_timeout_s=sources.stall_timeout_s)
