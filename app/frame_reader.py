"""Read one frame of a file stream again, for the dashboard's "why" of a clicked chart point."""

from __future__ import annotations

import numpy as np

from detector.errors import SourceError
from producers.file_source import FileSource


def read_frame(path: str, frame_index: int) -> np.ndarray:
    """Decode ``path`` up to ``frame_index`` (indices count every decoded frame, as the
    producers do).

    Returns:
        ``(h, w, 3)`` uint8 BGR.
    Raises:
        SourceError: the file cannot be read here or is shorter than that.
    """
    source = FileSource(path)
    try:
        for frame in source.frames():
            if frame.frame_index == frame_index:
                return frame.image_bgr
    finally:
        source.close()
    raise SourceError(f"{path}: has no frame {frame_index}")
