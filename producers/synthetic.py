"""Synthetic videos made with PyAV: for the demo, the tests and the benchmarks.

Each frame carries its own index as a row of black/white blocks along the top edge, so a test
can check which frame arrived where; optionally a real (public-domain) face moves across it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
FACE_IMAGE = ASSETS_DIR / "astronaut.jpg"
INDEX_BITS = 16
INDEX_BLOCK_PX = 16


def load_face_bgr() -> np.ndarray:
    """The shipped public-domain face (256×256 BGR)."""
    image = cv2.imread(str(FACE_IMAGE), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{FACE_IMAGE} is missing from the installation")
    return image


def draw_index(image_bgr: np.ndarray, index: int) -> None:
    """Write ``index`` as 16 blocks (white = 1) along the top edge, in place."""
    for bit in range(INDEX_BITS):
        value = 255 if (index >> bit) & 1 else 0
        x = bit * INDEX_BLOCK_PX
        image_bgr[0:INDEX_BLOCK_PX, x:x + INDEX_BLOCK_PX] = value


def read_index(image_bgr: np.ndarray) -> int:
    """Inverse of :func:`draw_index` (robust to compression: thresholds block means)."""
    index = 0
    for bit in range(INDEX_BITS):
        x = bit * INDEX_BLOCK_PX
        block = image_bgr[2:INDEX_BLOCK_PX - 2, x + 2:x + INDEX_BLOCK_PX - 2]
        if block.mean() > 127:
            index |= 1 << bit
    return index


def make_frame(index: int, width: int, height: int, face: np.ndarray | None,
               face_px: int = 220) -> np.ndarray:
    """One frame: a gradient background, the face drifting across it, the index on top."""
    x = np.linspace(0, 1, width, dtype=np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    phase = (index % 120) / 120.0
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = (80 + 60 * np.sin(2 * np.pi * (x + phase)) * np.ones_like(y)).astype(np.uint8)
    frame[..., 1] = (90 + 50 * y * np.ones_like(x)).astype(np.uint8)
    frame[..., 2] = 110
    if face is not None:
        side = min(face_px, height - 2 * INDEX_BLOCK_PX, width)
        patch = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        travel = max(0, width - side)
        left = int(travel * (0.5 + 0.4 * np.sin(2 * np.pi * index / 200.0)))
        top = max(INDEX_BLOCK_PX, (height - side) // 2)
        frame[top:top + side, left:left + side] = patch
    draw_index(frame, index)
    return frame


@dataclass(frozen=True)
class FacePath:
    """A face in a many-face clip: visible from ``first_frame`` to ``last_frame`` (inclusive),
    its top-left corner moving linearly from ``start_xy`` to ``end_xy``, ``side_px`` wide."""

    first_frame: int
    last_frame: int
    start_xy: tuple[int, int]
    end_xy: tuple[int, int]
    side_px: int

    def box_at(self, index: int) -> tuple[int, int, int, int] | None:
        """The face's ``(x1, y1, x2, y2)`` in frame ``index``, or None when it is not there."""
        if not self.first_frame <= index <= self.last_frame:
            return None
        span = max(1, self.last_frame - self.first_frame)
        t = (index - self.first_frame) / span
        x = int(round(self.start_xy[0] + t * (self.end_xy[0] - self.start_xy[0])))
        y = int(round(self.start_xy[1] + t * (self.end_xy[1] - self.start_xy[1])))
        return x, y, x + self.side_px, y + self.side_px


def make_faces_frame(index: int, width: int, height: int, face: np.ndarray,
                     paths: tuple[FacePath, ...]) -> np.ndarray:
    """One frame of a many-face clip: the background of :func:`make_frame`, each face of
    ``paths`` that is visible at ``index`` (clipped to the frame), the index on top."""
    frame = make_frame(index, width, height, None)
    for path in paths:
        box = path.box_at(index)
        if box is None:
            continue
        x1, y1, x2, y2 = box
        patch = cv2.resize(face, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
        cx1, cy1 = max(0, x1), max(INDEX_BLOCK_PX, y1)
        cx2, cy2 = min(width, x2), min(height, y2)
        if cx2 > cx1 and cy2 > cy1:
            frame[cy1:cy2, cx1:cx2] = patch[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]
    draw_index(frame, index)
    return frame


def write_faces_video(path: Path | str, n_frames: int, paths: tuple[FacePath, ...],
                      width: int = 640, height: int = 360, fps: int = 30) -> Path:
    """Write an index-stamped H.264 clip with several faces that come and go (``paths``).

    Returns:
        the path written.
    """
    path = Path(path)
    face = load_face_bgr()
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast", "crf": "18"}
        _encode_frames(container, stream, n_frames,
                       lambda index: make_faces_frame(index, width, height, face, paths))
    return path


def write_video(path: Path | str, n_frames: int, width: int = 640, height: int = 360,
                fps: int = 30, with_face: bool = True, codec: str = "libx264",
                face_px: int | None = None) -> Path:
    """Write an index-stamped test video.

    Args:
        path: output file (.mp4, .webm, .avi, .mkv, .mov).
        n_frames: number of frames.
        width, height: frame size in pixels (even numbers for yuv420p).
        codec: ``libx264``, ``mpeg4``, ``libvpx`` (webm) …
        face_px: side of the face; default ~60% of the frame height.
    Returns:
        the path written.
    """
    path = Path(path)
    face = load_face_bgr() if with_face else None
    face_px = face_px or int(height * 0.6)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        _encode_frames(container, stream, n_frames,
                       lambda index: make_frame(index, width, height, face, face_px))
    return path


def write_h264_clip(path: Path | str, n_frames: int, width: int = 1280, height: int = 720,
                    fps: int = 30, keyframe_interval: int = 30, with_face: bool = True) -> Path:
    """Write a raw H.264 Annex-B clip for a test RTSP server (tests/rtsp_server.py).

    One slice per picture and no B-frames, so each picture is one access unit and can be
    streamed as-is; a keyframe every ``keyframe_interval`` frames lets clients join quickly.

    Returns:
        the path written.
    """
    path = Path(path)
    face = load_face_bgr() if with_face else None
    with av.open(str(path), mode="w", format="h264") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.thread_type = "FRAME"  # PyAV's default (slice threads) splits pictures into slices
        stream.options = {"preset": "ultrafast", "crf": "23", "bf": "0",
                          "g": str(keyframe_interval), "x264-params": "slices=1"}
        _encode_frames(container, stream, n_frames,
                       lambda index: make_frame(index, width, height, face, int(height * 0.6)))
    return path


def _encode_frames(container, stream, n_frames: int, image_at: Callable[[int], np.ndarray]) -> None:
    """Encode the BGR images ``image_at(0 … n_frames - 1)`` as frames 0, 1, …, then flush."""
    for index in range(n_frames):
        image = image_at(index)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = index
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
