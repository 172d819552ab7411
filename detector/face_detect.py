"""Face detectors behind one Protocol: OpenCV's Haar cascade and YuNet (``cv2.FaceDetectorYN``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from detector.errors import ModelError
from detector.face_crop import scale_to_width
from detector.face_detector_kinds import HAAR, YUNET

log = logging.getLogger(__name__)

YUNET_FILENAME = "face_detection_yunet.onnx"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
    "face_detection_yunet_2023mar.onnx"
)


@dataclass(frozen=True)
class FaceBox:
    """One detected face: box in original-frame pixels and the detector's confidence."""

    box_xyxy: tuple[float, float, float, float]
    confidence: float

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.box_xyxy
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"expected a box with x2 > x1 and y2 > y1, got {self.box_xyxy}")


class FaceDetector(Protocol):
    """Finds faces in a BGR frame."""

    name: str

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        """Return the faces in ``frame_bgr`` (``(h, w, 3)`` uint8), largest first."""
        ...


def _largest_first(faces: list[FaceBox], max_faces: int) -> list[FaceBox]:
    def area(face: FaceBox) -> float:
        x1, y1, x2, y2 = face.box_xyxy
        return (x2 - x1) * (y2 - y1)

    return sorted(faces, key=area, reverse=True)[:max_faces]


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade, as the original project used, on a downscaled copy."""

    name = HAAR

    def __init__(self, detect_width_px: int = 640, min_face_px: int = 32, max_faces: int = 5):
        cascade_path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(cascade_path))
        if self._cascade.empty():
            raise ModelError(
                f"OpenCV's Haar cascade {cascade_path} could not be loaded "
                "(opencv-python 5 wheels ship none: install opencv-python-headless<5)"
            )
        self._detect_width_px = detect_width_px
        self._min_face_px = min_face_px
        self._max_faces = max_faces

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        small, factor = scale_to_width(frame_bgr, self._detect_width_px)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        min_side = max(8, int(self._min_face_px / factor))
        rects = self._cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
        )
        faces = [
            FaceBox((float(x * factor), float(y * factor), float((x + w) * factor), float((y + h) * factor)), 1.0)
            for (x, y, w, h) in np.asarray(rects).reshape(-1, 4)
        ]
        return _largest_first(faces, self._max_faces)


class YuNetFaceDetector:
    """YuNet (OpenCV model zoo, MIT) through ``cv2.FaceDetectorYN``: faster and more accurate."""

    name = YUNET

    def __init__(
        self,
        model_path: Path,
        detect_width_px: int = 640,
        min_face_px: int = 32,
        max_faces: int = 5,
        score_threshold: float = 0.7,
    ):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelError(
                f"YuNet model {model_path} not found: run `deepfake-detector fetch-yunet` "
                f"or download {YUNET_URL} to that path, or set faces.detector = \"haar\""
            )
        self._detector = cv2.FaceDetectorYN.create(
            str(model_path), "", (320, 320), score_threshold, 0.3, 50
        )
        self._input_size: tuple[int, int] | None = None
        self._detect_width_px = detect_width_px
        self._min_face_px = min_face_px
        self._max_faces = max_faces

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        small, factor = scale_to_width(frame_bgr, self._detect_width_px)
        height, width = small.shape[:2]
        if self._input_size != (width, height):
            self._detector.setInputSize((width, height))
            self._input_size = (width, height)
        _, rows = self._detector.detect(small)
        faces = []
        for row in [] if rows is None else rows:
            x, y, w, h = (float(v) for v in row[:4])
            x1, y1 = max(0.0, x) * factor, max(0.0, y) * factor
            x2 = min(float(width), x + w) * factor
            y2 = min(float(height), y + h) * factor
            if x2 - x1 < self._min_face_px or y2 - y1 < self._min_face_px:
                continue
            faces.append(FaceBox((x1, y1, x2, y2), float(row[-1])))
        return _largest_first(faces, self._max_faces)


def make_face_detector(
    kind: str,
    *,
    yunet_model: Path,
    detect_width_px: int = 640,
    min_face_px: int = 32,
    max_faces: int = 5,
) -> FaceDetector:
    """Build the detector named ``kind`` (one of ``detector.face_detector_kinds.FACE_DETECTORS``)."""
    factories: dict[str, Callable[[], FaceDetector]] = {
        HAAR: lambda: HaarFaceDetector(detect_width_px, min_face_px, max_faces),
        YUNET: lambda: YuNetFaceDetector(yunet_model, detect_width_px, min_face_px, max_faces),
    }
    if kind not in factories:
        raise ModelError(f"face detector must be one of {sorted(factories)}, got {kind!r}")
    return factories[kind]()
