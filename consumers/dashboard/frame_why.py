""""Why" for one frame of a stream: which frame was clicked, and the kept live frame's image.

A file stream's frame is decoded again from its file by the frame reader that app/ hands the
dashboard (``app/frame_reader.py``). A live stream's frames are gone; the service keeps only its
latest thumbnail frame (``deepfake:frame:<id>``), so that is the one explained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
