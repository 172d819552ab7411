"""The Source protocol every video source implements, and the frame it yields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from detector.video import picture_to_bgr


class DecodedPicture(Protocol):
    """A decoded picture that converts itself on request (``av.VideoFrame``)."""

    width: int
    height: int

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

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, 3)``, known without converting."""
        if isinstance(self.pixels, np.ndarray):
            return self.pixels.shape
        return (self.pixels.height, self.pixels.width, 3)

    @property
    def image_bgr(self) -> np.ndarray:
        """``(height, width, 3)`` uint8 BGR pixels (converted once, on first access)."""
        if isinstance(self.pixels, np.ndarray):
            return self.pixels
        # Not functools.cached_property: on Python 3.11 it takes one lock shared by every
        # instance, which made the reader threads of all streams convert one at a time. Two
        # threads reading one frame at once would both convert it, harmlessly.
        image = self.__dict__.get("_image_bgr")
        if image is None:
            image = _check_bgr(picture_to_bgr(self.pixels))
            self.__dict__["_image_bgr"] = image
        return image

    def bgr_into(self, out: np.ndarray) -> np.ndarray:
        """Write the BGR pixels into ``out`` (``shape``, uint8): converted straight into it when
        not converted yet (a frame-ring slot, without an intermediate copy)."""
        if out.shape != self.shape or out.dtype != np.uint8:
            raise ValueError(f"expected a {self.shape} uint8 array, got {out.shape} {out.dtype}")
        if self.is_converted:
            np.copyto(out, self.image_bgr)
            return out
        return picture_to_bgr(self.pixels, out)

    @property
    def is_converted(self) -> bool:
        """Whether the BGR pixels exist yet (they do once :attr:`image_bgr` was read)."""
        return isinstance(self.pixels, np.ndarray) or "_image_bgr" in self.__dict__


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
