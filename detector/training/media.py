"""Reading training media: images with OpenCV, chosen video frames with PyAV (BGR uint8)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from detector.errors import SourceError
from detector.video import open_video, picture_to_bgr

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov")


def is_video_path(path: Path | str) -> bool:
    return str(path).lower().endswith(VIDEO_SUFFIXES)


def is_image_path(path: Path | str) -> bool:
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def read_image_bgr(path: Path) -> np.ndarray:
    """Read an image as ``(h, w, 3)`` uint8 BGR.

    Raises:
        SourceError: missing or not decodable.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"{path}: not a readable image")
    return image


def count_video_frames(path: Path) -> int:
    """Number of decodable frames (container metadata, or a decode pass when it has none)."""
    container, stream = open_video(path, str(path), no_stream="no video stream")
    try:
        with container:
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.decode(stream))
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"{path}: not a readable video ({exc})") from None


def read_video_frames(path: Path, indices: list[int]) -> list[tuple[int, np.ndarray]]:
    """Decode a video and keep the frames at ``indices`` (ascending), as BGR uint8.

    A container whose frame count was overstated simply yields fewer frames.

    Raises:
        SourceError: missing, not a video, or no frame decodable.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    wanted = set(indices)
    last = max(indices) if indices else -1
    frames: list[tuple[int, np.ndarray]] = []
    container, stream = open_video(path, str(path), no_stream="no video stream")
    try:
        with container:
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    frames.append((index, picture_to_bgr(frame)))
                if index >= last:
                    break
    except av.error.FFmpegError as exc:
        if not frames:
            raise SourceError(f"{path}: not a readable video ({exc})") from None
    except OSError as exc:
        raise SourceError(f"{path}: not a readable video ({exc})") from None
    if indices and not frames:
        raise SourceError(f"{path}: no decodable frame")
    return frames
