"""The Source protocol every video source implements, and the frame it yields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class SourceFrame:
    """One decoded frame, before sampling.

    Attributes:
        frame_index: 0-based index of the frame in its stream, counting every decoded frame.
        pts_s: presentation time in seconds from the stream start, or None when unknown.
        capture_time_s: wall-clock Unix time at which the frame was read (latency origin).
        image_bgr: ``(height, width, 3)`` uint8 BGR pixels.
    """

    frame_index: int
    pts_s: float | None
    capture_time_s: float
    image_bgr: np.ndarray

    def __post_init__(self) -> None:
        if self.frame_index < 0:
            raise ValueError(f"expected frame_index >= 0, got {self.frame_index}")
        shape = self.image_bgr.shape
        if self.image_bgr.dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
            raise ValueError(
                f"expected a (height, width, 3) uint8 image, got {shape} {self.image_bgr.dtype}"
            )


class Source(Protocol):
    """A stream of frames. ``open`` raises ``SourceError`` with a plain sentence on failure.

    Attributes:
        stream_id: the id scores are published under.
        is_live: True for cameras (drop-oldest backpressure), False for files (lossless).
        display_url: where the frames come from, with any credentials masked.
    """

    stream_id: str
    is_live: bool
    display_url: str

    def open(self) -> None:
        """Open the underlying file or device; raise ``SourceError`` if it cannot be read."""
        ...

    def frames(self) -> Iterator[SourceFrame]:
        """Yield every decoded frame in order; return at end of stream.

        Raises ``SourceError`` when reading fails part-way (truncated file, camera lost).
        """
        ...

    def close(self) -> None:
        """Release the file or device; safe to call twice."""
        ...
