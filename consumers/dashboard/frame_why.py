""""Why" for one frame of a file stream: decode it again from the file, score it, explain it.

Live frames are not kept anywhere (only a small annotated thumbnail is), so this works for
file streams whose file the dashboard can read, and says so otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from detector.errors import SourceError


def clicked_frame_index(click_data: Mapping[str, Any] | None) -> int | None:
    """The frame index of the clicked chart point, None when nothing usable was clicked."""
    try:
        x = (click_data or {})["points"][0]["x"]
    except (KeyError, IndexError, TypeError):
        return None
    try:
        index = int(x)
    except (TypeError, ValueError):
        return None
    return index if index >= 0 and index == x else None


def read_frame(path: str, frame_index: int) -> np.ndarray:
    """Decode ``path`` up to ``frame_index`` (indices count every decoded frame, as the
    producers do).

    Returns:
        ``(h, w, 3)`` uint8 BGR.
    Raises:
        SourceError: the file cannot be read here or is shorter than that.
    """
    from producers.file_source import FileSource

    source = FileSource(path)
    try:
        for frame in source.frames():
            if frame.frame_index == frame_index:
                return frame.image_bgr
    finally:
        source.close()
    raise SourceError(f"{path}: has no frame {frame_index}")
