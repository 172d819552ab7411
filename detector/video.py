"""Opening a video with PyAV: a file or a camera URL, its first video stream, one plain sentence on failure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import av
import av.container
import av.video.stream
import cv2
import numpy as np

from detector.errors import SourceError


def error_reason(exc: BaseException) -> str:
    """A short reason for a failed open: the OS/FFmpeg message without what follows its first colon
    (FFmpeg appends the file name or URL there), else the exception's class name."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip() if text else exc.__class__.__name__


def open_video(
    target: Path | str,
    label: str,
    *,
    failure: str = "not a readable video",
    no_stream: str | None = None,
    options: Mapping[str, str] | None = None,
    timeout: tuple[float, float] | None = None,
    reason: Callable[[BaseException], str] = error_reason,
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``target`` for reading and return the container and its first video stream (decoded
    with FFmpeg's own threads); the caller closes the container.

    Args:
        target: a file path or a URL (``rtsp://…``).
        label: how the video is named in the error (a file name, a masked URL).
        failure: what went wrong, as the message says it: ``"not a video file"``, ``"cannot connect"``.
        no_stream: the message's words when it opens but has no video stream; default
            ``"<failure> (no video stream)"``.
        options: FFmpeg demuxer options, e.g. ``{"rtsp_transport": "tcp", "timeout": "<µs>"}``.
        timeout: PyAV's ``(open_s, read_s)`` timeouts.
        reason: turns the exception into the short reason in brackets (strip credentials here).

    Raises:
        SourceError: ``"<label>: <failure> (<reason>)"`` when it cannot be opened,
            ``"<label>: <no_stream>"`` when it has no video stream.
    """
    try:
        container = av.open(str(target), mode="r", options=dict(options or {}), timeout=timeout)
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise SourceError(f"{label}: {failure} ({reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"{label}: {no_stream or f'{failure} (no video stream)'}")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


# FFmpeg's AVColorSpace and AVColorRange codes for which OpenCV's I420 → BGR conversion (BT.601,
# limited range) is the conversion FFmpeg's own swscale does: unspecified, BT.470BG, SMPTE 170M;
# unspecified or limited ("MPEG") range. swscale reads these tags (PyAV ≥ 13), so a BT.709 or
# full-range picture keeps going through it.
_BT601_COLORSPACES = frozenset({2, 5, 6})
_LIMITED_RANGES = frozenset({0, 1})


def picture_to_bgr(picture, out: np.ndarray | None = None) -> np.ndarray:
    """The ``(height, width, 3)`` uint8 BGR pixels of a decoded picture (an ``av.VideoFrame``,
    or anything with ``to_ndarray(format="bgr24")``), written into ``out`` when given.

    Every path that turns decoded video into pixels (sources, uploads, training media) calls
    this, so that the model sees frames converted one way. A plain BT.601 ``yuv420p`` picture
    (what H.264 cameras send when they tag nothing) is converted by OpenCV: about half the CPU
    of ``to_ndarray(format="bgr24")`` at 720p (0.23 vs 0.47 ms, one core, 2026-12-02), within a
    few grey levels of it (their fixed-point rounding differs), and straight into ``out`` (a
    frame-ring slot) without an intermediate copy. Any other picture goes through swscale.
    """
    if _is_plain_i420(picture):
        i420 = picture.to_ndarray(format="yuv420p")  # (height * 3 / 2, width)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420, dst=out)
    image = picture.to_ndarray(format="bgr24")
    if out is None:
        return image
    np.copyto(out, image)
    return out


def _is_plain_i420(picture) -> bool:
    pixel_format = getattr(picture, "format", None)
    return (getattr(pixel_format, "name", None) == "yuv420p"
            and picture.width % 2 == 0 and picture.height % 2 == 0
            and getattr(picture, "colorspace", None) in _BT601_COLORSPACES
            and getattr(picture, "color_range", None) in _LIMITED_RANGES)
