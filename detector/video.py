"""Opening a video with PyAV: a file or a camera URL, its first video stream, one plain sentence on failure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import av
import av.container
import av.video.stream

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
