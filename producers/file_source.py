"""Video files read with PyAV: lossless, every decoded frame in order."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import av

from detector.errors import SourceError
from detector.stream_urls import default_stream_id
from detector.video import error_reason, open_video
from producers.base import SourceFrame

log = logging.getLogger(__name__)


def check_video_file(path: Path | str) -> None:
    """Open ``path`` as a video and close it again: refuse a missing or unreadable file at once
    (when it is attached) instead of as a failed stream later.

    Raises:
        SourceError: the file is missing, a folder, empty or not a video (the reason says which).
    """
    source = FileSource(path)
    try:
        source.open()
    finally:
        source.close()


class FileSource:
    """Decode a video file frame by frame.

    Args:
        path: the video file.
        stream_id: id to publish under; defaults to :func:`detector.stream_urls.default_stream_id`.
    """

    is_live = False

    def __init__(self, path: Path | str, stream_id: str | None = None):
        self.path = Path(path)
        self.stream_id = stream_id or default_stream_id(str(self.path))
        self.display_url = str(self.path)
        self._container = None
        self._stream = None
        self.frame_count_hint: int | None = None

    def open(self) -> None:
        name = self.path.name or str(self.path)
        if not self.path.exists():
            raise SourceError(f"{self.path}: file not found")
        if self.path.is_dir():
            raise SourceError(f"{self.path}: is a folder, not a video file")
        if self.path.stat().st_size == 0:
            raise SourceError(f"{self.path}: file is empty")
        self._container, self._stream = open_video(self.path, str(self.path), failure="not a video file")
        self.frame_count_hint = self._stream.frames or None
        log.debug("opened %s (%s)", name, self._stream.codec_context.name)

    def frames(self) -> Iterator[SourceFrame]:
        if self._container is None:
            self.open()
        index = 0
        try:
            for frame in self._container.decode(self._stream):
                # converted to BGR only if the hub samples it (SourceFrame.image_bgr)
                yield SourceFrame(index, frame.time, time.time(), frame)
                index += 1
        except av.error.FFmpegError as exc:
            raise SourceError(
                f"{self.path}: decoding failed after {index} frames ({error_reason(exc)})"
            ) from None
        if index == 0:
            raise SourceError(f"{self.path}: not a video file (no decodable frame)")

    def close(self) -> None:
        """Close the file and drop the stream too: its codec context owns FFmpeg's decoder
        threads, which live as long as anything holds it."""
        if self._container is not None:
            container, self._container, self._stream = self._container, None, None
            container.close()

