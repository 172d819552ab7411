"""Face detectors behind one Protocol: OpenCV's Haar cascade and YuNet (its network run by
``cv2.FaceDetectorYN`` or by OpenVINO with the same decoding)."""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from detector.boxes import box_iou
from detector.errors import ModelError
from detector.face_crop import scale_to_width
from detector.face_detector_kinds import AUTO, HAAR, YUNET, YUNET_OPENCV, YUNET_OPENVINO, YUNET_RUNTIMES

log = logging.getLogger(__name__)

YUNET_FILENAME = "face_detection_yunet.onnx"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
    "face_detection_yunet_2023mar.onnx"
)


@dataclass(frozen=True)
class FaceBox:
    """One detected face: box in original-frame pixels and the detector's confidence;
    ``track_id``: the track hint it was found for (region search), else None."""

    box_xyxy: tuple[float, float, float, float]
    confidence: float
    track_id: int | None = None

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.box_xyxy
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"expected a box with x2 > x1 and y2 > y1, got {self.box_xyxy}")


class FaceDetector(Protocol):
    """Finds faces in a BGR frame."""

    name: str

    def detect(self, frame_bgr: np.ndarray, detect_width_px: int | None = None) -> list[FaceBox]:
        """Return the faces in ``frame_bgr`` (``(h, w, 3)`` uint8), largest first, searched on
        a copy at most ``detect_width_px`` wide (None: the detector's own setting)."""
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

    def detect(self, frame_bgr: np.ndarray, detect_width_px: int | None = None) -> list[FaceBox]:
        small, factor = scale_to_width(frame_bgr, detect_width_px or self._detect_width_px)
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


YUNET_STRIDES = (8, 16, 32)
YUNET_NMS_THRESHOLD = 0.3
YUNET_TOP_K = 50


class OpenVINOYuNet:
    """YuNet's network for one input size, run by OpenVINO in float32, decoded as
    ``cv2.FaceDetectorYN`` decodes it: the image padded right and bottom to a multiple of 32
    (BGR, 0–255, no normalisation); per stride s of 8, 16 and 32 and grid cell (row r,
    column c), score = sqrt(clip(cls) · clip(obj)), box centre ((c + dx) s, (r + dy) s), size
    (exp(dw) s, exp(dh) s), landmarks ((c + lx) s, (r + ly) s); then non-maximum suppression.
    Same rows as ``FaceDetectorYN.detect``: ``x, y, w, h``, five landmark points, score.
    Here it runs about 2.5× faster than OpenCV's DNN module on the same file (one thread:
    4.8 vs 14.8 ms on a 640 × 360 frame, 1.1 vs 2.6 ms on a 192 × 192 region).
    """

    def __init__(self, model, size: tuple[int, int], score_threshold: float, threads: int = 0):
        from detector.openvino_cpu import compile_static

        width, height = size
        self._size = size
        self._padded = (-(-width // 32) * 32, -(-height // 32) * 32)
        self._score_threshold = score_threshold
        compiled = compile_static(model, [1, 3, self._padded[1], self._padded[0]], "f32", threads)
        self._request = compiled.create_infer_request()
        wanted = {f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in YUNET_STRIDES}
        self._outputs = {name: i for i, o in enumerate(compiled.outputs)
                         for name in o.get_names() & wanted}
        self._grids = {}
        for stride in YUNET_STRIDES:
            rows, cols = self._padded[1] // stride, self._padded[0] // stride
            r, c = np.divmod(np.arange(rows * cols, dtype=np.float32), np.float32(cols))
            self._grids[stride] = (c, r)
        self._input = np.zeros((1, 3, self._padded[1], self._padded[0]), np.float32)

    def detect(self, image_bgr: np.ndarray) -> tuple[int, np.ndarray | None]:
        height, width = image_bgr.shape[:2]
        if (width, height) != self._size:
            raise ValueError(f"expected a {self._size[0]}×{self._size[1]} image, got "
                             f"{width}×{height}")
        self._input[0, :, :height, :width] = np.moveaxis(image_bgr, -1, 0)
        self._request.infer({0: self._input})
        out = {name: self._request.get_output_tensor(i).data for name, i in self._outputs.items()}
        boxes, scores, points = [], [], []
        for stride in YUNET_STRIDES:
            score = np.sqrt(np.clip(out[f"cls_{stride}"].reshape(-1), 0, 1)
                            * np.clip(out[f"obj_{stride}"].reshape(-1), 0, 1))
            keep = np.flatnonzero(score >= self._score_threshold)
            if not len(keep):
                continue
            c, r = self._grids[stride][0][keep], self._grids[stride][1][keep]
            bbox = out[f"bbox_{stride}"].reshape(-1, 4)[keep]
            kps = out[f"kps_{stride}"].reshape(-1, 10)[keep]
            w, h = np.exp(bbox[:, 2]) * stride, np.exp(bbox[:, 3]) * stride
            cx, cy = (c + bbox[:, 0]) * stride, (r + bbox[:, 1]) * stride
            boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], axis=1))
            scores.append(score[keep])
            xs, ys = (c[:, None] + kps[:, 0::2]) * stride, (r[:, None] + kps[:, 1::2]) * stride
            points.append(np.stack([xs, ys], axis=2).reshape(-1, 10))
        if not boxes:
            return 1, None
        boxes_all, scores_all = np.concatenate(boxes), np.concatenate(scores)
        kept = cv2.dnn.NMSBoxes(boxes_all.tolist(), scores_all.tolist(), self._score_threshold,
                                YUNET_NMS_THRESHOLD, top_k=YUNET_TOP_K)
        kept = np.asarray(kept, np.int64).reshape(-1)
        if not len(kept):
            return 1, None
        rows = np.concatenate([boxes_all[kept], np.concatenate(points)[kept],
                               scores_all[kept, None]], axis=1)
        return 1, rows.astype(np.float32)


def resolve_yunet_runtime(runtime: str = AUTO) -> str:
    """``faces.yunet_runtime`` → ``"opencv"`` or ``"openvino"`` (auto: OpenVINO when installed).

    Raises:
        ModelError: an unknown name, or ``"openvino"`` without the package.
    """
    if runtime not in YUNET_RUNTIMES:
        raise ModelError(f"faces.yunet_runtime must be one of {YUNET_RUNTIMES}, got {runtime!r}")
    if runtime == YUNET_OPENCV:
        return runtime
    try:
        import openvino  # noqa: F401
    except ImportError:
        if runtime == YUNET_OPENVINO:
            raise ModelError("faces.yunet_runtime = \"openvino\" needs the openvino package "
                             "(pip install 'deepfake-detector[openvino]')") from None
        return YUNET_OPENCV
    return YUNET_OPENVINO


class YuNetFaceDetector:
    """YuNet (OpenCV model zoo, MIT): faster and more accurate than Haar. Its network runs in
    OpenVINO where installed (:class:`OpenVINOYuNet`), else in ``cv2.FaceDetectorYN``."""

    name = YUNET

    def __init__(
        self,
        model_path: Path,
        detect_width_px: int = 640,
        min_face_px: int = 32,
        max_faces: int = 5,
        score_threshold: float = 0.7,
        runtime: str = AUTO,
        threads: int = 0,
    ):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelError(
                f"YuNet model {model_path} not found: run `deepfake-detector fetch-yunet` "
                f"or download {YUNET_URL} to that path, or set faces.detector = \"haar\""
            )
        self._model_path = str(model_path)
        self._score_threshold = score_threshold
        self.runtime = resolve_yunet_runtime(runtime)
        self._threads = threads
        self._openvino_model = None
        if self.runtime == YUNET_OPENVINO:
            from detector.openvino_cpu import core

            try:
                self._openvino_model = core().read_model(self._model_path)
            except RuntimeError as exc:
                raise ModelError(f"YuNet model {model_path} does not load: "
                                 f"{str(exc).splitlines()[0]}") from None
        # One network per input size: OpenCV re-plans a network whenever its input size changes
        # (≈ 15 ms here, more than a detection; OpenVINO compiles one in ≈ 0.15 s, and a static
        # shape runs 1.5–2× faster than a dynamic one), and a worker alternates between full frames and
        # regions of every size. Region sizes are padded up to a multiple of SIZE_STEP_PX so few
        # sizes occur; the least recently used network goes beyond MAX_NETWORKS.
        self._networks: collections.OrderedDict[tuple[int, int], object] = \
            collections.OrderedDict()
        self._network((320, 320))  # fails here, not on the first frame, if the file is unreadable
        self._detect_width_px = detect_width_px
        self._min_face_px = min_face_px
        self._max_faces = max_faces

    MAX_NETWORKS = 16
    SIZE_STEP_PX = 32

    def _network(self, size: tuple[int, int]):
        network = self._networks.get(size)
        if network is None:
            if self._openvino_model is not None:
                network = OpenVINOYuNet(self._openvino_model, size, self._score_threshold,
                                        self._threads)
            else:
                network = cv2.FaceDetectorYN.create(self._model_path, "", size,
                                                    self._score_threshold, YUNET_NMS_THRESHOLD,
                                                    YUNET_TOP_K)
            self._networks[size] = network
            while len(self._networks) > self.MAX_NETWORKS:
                self._networks.popitem(last=False)
        else:
            self._networks.move_to_end(size)
        return network

    def detect(self, frame_bgr: np.ndarray, detect_width_px: int | None = None) -> list[FaceBox]:
        small, factor = scale_to_width(frame_bgr, detect_width_px or self._detect_width_px)
        height, width = small.shape[:2]
        if detect_width_px is not None:  # a region: pad right and bottom up to the size grid
            step = self.SIZE_STEP_PX
            padded_w, padded_h = -(-width // step) * step, -(-height // step) * step
            if (padded_w, padded_h) != (width, height):
                small = cv2.copyMakeBorder(small, 0, padded_h - height, 0, padded_w - width,
                                           cv2.BORDER_CONSTANT, value=(0, 0, 0))
        _, rows = self._network((small.shape[1], small.shape[0])).detect(small)
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


def search_region(box_xyxy: tuple[float, float, float, float], frame_hw: tuple[int, int],
                  scale: float) -> tuple[int, int, int, int]:
    """The integer region ``(x1, y1, x2, y2)`` to search for a face last seen at ``box_xyxy``:
    a square ``scale`` times the box's longer side, on the box's centre, clipped to the frame
    of size ``frame_hw`` = ``(height, width)`` (never empty)."""
    height, width = frame_hw
    x1, y1, x2, y2 = box_xyxy
    half = max(x2 - x1, y2 - y1) * scale / 2.0
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    rx1 = int(max(0, min(width - 1, np.floor(cx - half))))
    ry1 = int(max(0, min(height - 1, np.floor(cy - half))))
    rx2 = int(min(width, max(rx1 + 1, np.ceil(cx + half))))
    ry2 = int(min(height, max(ry1 + 1, np.ceil(cy + half))))
    return rx1, ry1, rx2, ry2


def detect_near(detector: FaceDetector, frame_bgr: np.ndarray, track_id: int,
                box_xyxy: tuple[float, float, float, float], scale: float,
                face_px: int, full_width_px: int | None = None) -> FaceBox | None:
    """Look for the face of track ``track_id`` only near its last box.

    Searches :func:`search_region` on a copy downscaled so the face is at most ``face_px``
    wide, and never finer than a full detection on a ``full_width_px``-wide copy of the frame
    would see it (so tracked and fully detected boxes agree; never upscaled), and keeps the
    face overlapping the old box most (then the most confident one).

    Returns:
        the face in frame pixels, tagged with ``track_id``; None when the region has none.
    """
    rx1, ry1, rx2, ry2 = search_region(box_xyxy, frame_bgr.shape[:2], scale)
    box_width = max(1.0, box_xyxy[2] - box_xyxy[0])
    full_factor = frame_bgr.shape[1] / full_width_px if full_width_px else 1.0
    factor = max(1.0, box_width / face_px, full_factor)
    if factor >= 2.0:
        # A whole factor, and a region whose sides are multiples of it: OpenCV's area
        # interpolation has a fast path for whole factors (≈ 0.5 ms instead of 1.7 for a
        # 618-px region shrunk 3.5×, one core). Rounded down (the face comes out a little
        # wider than face_px, never finer than a full detection sees it).
        factor = float(max(math.floor(factor + 1e-9), math.ceil(full_factor - 1e-9)))
        step = int(factor)
        rx2 = rx1 + max(step, (rx2 - rx1) // step * step)
        ry2 = ry1 + max(step, (ry2 - ry1) // step * step)
        rx2, ry2 = min(rx2, frame_bgr.shape[1]), min(ry2, frame_bgr.shape[0])
    region = frame_bgr[ry1:ry2, rx1:rx2]
    region_width = rx2 - rx1
    width_px = max(32, min(region_width, int(round(region_width / factor))))
    best: tuple[float, float, FaceBox] | None = None
    for face in detector.detect(region, detect_width_px=width_px):
        fx1, fy1, fx2, fy2 = face.box_xyxy
        moved = (fx1 + rx1, fy1 + ry1, fx2 + rx1, fy2 + ry1)
        overlap = box_iou(moved, box_xyxy)
        candidate = (overlap, face.confidence, FaceBox(moved, face.confidence, track_id))
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return None if best is None else best[2]


def make_face_detector(
    kind: str,
    *,
    yunet_model: Path,
    detect_width_px: int = 640,
    min_face_px: int = 32,
    max_faces: int = 5,
    yunet_runtime: str = AUTO,
    threads: int = 0,
) -> FaceDetector:
    """Build the detector named ``kind`` (one of ``detector.face_detector_kinds.FACE_DETECTORS``).

    ``yunet_runtime`` and ``threads`` (0 = the runtime's default) apply to YuNet in OpenVINO.
    """
    factories: dict[str, Callable[[], FaceDetector]] = {
        HAAR: lambda: HaarFaceDetector(detect_width_px, min_face_px, max_faces),
        YUNET: lambda: YuNetFaceDetector(yunet_model, detect_width_px, min_face_px, max_faces,
                                         runtime=yunet_runtime, threads=threads),
    }
    if kind not in factories:
        raise ModelError(f"face detector must be one of {sorted(factories)}, got {kind!r}")
    return factories[kind]()
