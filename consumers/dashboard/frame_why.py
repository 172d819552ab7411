""""Why" for one frame of a stream: get the frame again, score it, explain it.

A file stream's frame is decoded again from its file (when the dashboard can read it). A live
stream's frames are gone; the service keeps only its latest thumbnail frame
(``deepfake:frame:<id>``), so that is the one explained.
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


def decode_kept_frame(jpeg: bytes) -> np.ndarray:
    """The BGR image of a kept live frame.

    Raises:
        SourceError: the bytes are not a JPEG OpenCV can decode.
    """
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError("the kept live frame is not a readable JPEG")
    return image


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
