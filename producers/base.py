"""The Source protocol every video source implements, and the frame it yields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np


class DecodedPicture(Protocol):
    """A decoded picture that converts itself on request (``av.VideoFrame``)."""

    def to_ndarray(self, format: str) -> np.ndarray: ...


@dataclass(frozen=True)
class SourceFrame:
    """One decoded frame, before sampling.

    Attributes:
        frame_index: 0-based index of the frame in its stream, counting every decoded frame.
        pts_s: presentation time in seconds from the stream start, or None when unknown.
        capture_time_s: wall-clock Unix time at which the frame was read (latency origin).
        pixels: ``(height, width, 3)`` uint8 BGR pixels, or the decoder's picture
            (``av.VideoFrame``), converted to BGR only when :attr:`image_bgr` is first read.
            Only sampled frames are read, so the other ``stride - 1`` in ``stride`` frames are
            never converted (at 720p the conversion costs more than decoding: bench/frames.py).
    """

    frame_index: int
    pts_s: float | None
    capture_time_s: float
    pixels: np.ndarray | DecodedPicture = field(repr=False)

    def __post_init__(self) -> None:
        if self.frame_index < 0:
            raise ValueError(f"expected frame_index >= 0, got {self.frame_index}")
        if isinstance(self.pixels, np.ndarray):
            _check_bgr(self.pixels)

    @cached_property
    def image_bgr(self) -> np.ndarray:
        """``(height, width, 3)`` uint8 BGR pixels (converted once, on first access)."""
        if isinstance(self.pixels, np.ndarray):
            return self.pixels
        return _check_bgr(self.pixels.to_ndarray(format="bgr24"))

    @property
    def is_converted(self) -> bool:
        """Whether the BGR pixels exist yet (they do once :attr:`image_bgr` was read)."""
        return isinstance(self.pixels, np.ndarray) or "image_bgr" in self.__dict__


def _check_bgr(image: np.ndarray) -> np.ndarray:
    shape = image.shape
    if image.dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"expected a (height, width, 3) uint8 image, got {shape} {image.dtype}")
    return image


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
        """Yield every decoded frame in order; return at end of stream. A frame's pixels may
        be converted lazily (:attr:`SourceFrame.image_bgr`), so read them before the next one
        is asked for only if they are needed.

        Raises ``SourceError`` when reading fails part-way (truncated file, camera lost).
        """
        ...

    def close(self) -> None:
        """Release the file or device; safe to call twice."""
        ...
