"""Face-mesh landmarks on a real face, and the context cache `prepare --landmarks` fills with them."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.errors import ModelError
from detector.face_detect import make_face_detector
from detector.training.landmarks import (
    CHIN,
    FACE_OVAL,
    FOREHEAD_TOP,
    LEFT_EYE_OUTER,
    MOUTH_REGION,
    RIGHT_EYE_OUTER,
    LandmarkModel,
    fetch_landmark_model,
)
from detector.training.prepare import (
    TRAIN_CONTEXT_SETTINGS,
    cache_file,
    load_cached,
    prepare_training_data,
)
from producers.synthetic import load_face_bgr, make_frame

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def landmark_model_path(tmp_path_factory) -> Path:
    """models/face_landmark.tflite (scripts/test.sh fetches it), else fetched from PyPI now."""
    local = REPO / "models" / "face_landmark.tflite"
    if local.is_file():
        return local
    try:
        return fetch_landmark_model(tmp_path_factory.mktemp("mesh") / "face_landmark.tflite")
    except ModelError as exc:
        pytest.skip(f"face-mesh model unavailable: {exc}")


@pytest.fixture(scope="session")
def mesh(landmark_model_path) -> LandmarkModel:
    return LandmarkModel(landmark_model_path)


def _astronaut_box() -> tuple[np.ndarray, tuple[float, float, float, float]]:
    face = load_face_bgr()
    boxes = make_face_detector("haar", yunet_model=Path("unused.onnx")).detect(face)
    assert boxes, "the shipped portrait must have a face"
    return face, boxes[0].box_xyxy


def test_landmarks_of_a_real_face_sit_where_a_face_is(mesh):
    face, box = _astronaut_box()
    found = mesh.find(cv2.cvtColor(face, cv2.COLOR_BGR2RGB), box)
    points = found.points_xy
    assert found.presence > 0.9
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    centre = points[list(FACE_OVAL)].mean(axis=0)
    assert abs(centre[0] - (x1 + x2) / 2) < 0.2 * width and abs(centre[1] - (y1 + y2) / 2) < 0.25 * height
    left, right = points[LEFT_EYE_OUTER], points[RIGHT_EYE_OUTER]
    mouth = points[list(MOUTH_REGION)].mean(axis=0)
    assert left[0] < right[0] and abs(left[1] - right[1]) < 0.1 * height  # eyes level, in order
    assert points[FOREHEAD_TOP][1] < left[1] < mouth[1] < points[CHIN][1]  # top to bottom
    spread = points.max(axis=0) - points.min(axis=0)
    assert 0.6 * width < spread[0] < 1.6 * width and 0.6 * height < spread[1] < 1.8 * height


def test_a_tilted_face_is_levelled_before_the_mesh_runs(mesh):
    face, box = _astronaut_box()
    rgb = cv2.cvtColor(face, cv2.COLOR_BGR2RGB)
    upright = mesh.find(rgb, box).points_xy
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    matrix = cv2.getRotationMatrix2D(centre, 25.0, 1.0)
    tilted_rgb = cv2.warpAffine(rgb, matrix, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REFLECT)
    tilted = mesh.find(tilted_rgb, box)
    expected = upright @ matrix[:, :2].T + matrix[:, 2]
    error = np.linalg.norm(tilted.points_xy - expected, axis=1)
    assert tilted.presence > 0.9 and np.median(error) < 0.05 * (box[2] - box[0])


def test_a_missing_model_says_how_to_fetch_it(tmp_path):
    with pytest.raises(ModelError, match="fetch-landmarks"):
        LandmarkModel(tmp_path / "nope.tflite")


def test_fetch_reads_the_model_out_of_a_wheel(tmp_path, landmark_model_path):
    import zipfile

    wheel = tmp_path / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mediapipe/modules/face_landmark/face_landmark.tflite",
                         landmark_model_path.read_bytes())
    out = fetch_landmark_model(tmp_path / "m" / "face_landmark.tflite", wheel=wheel)
    assert out.read_bytes() == landmark_model_path.read_bytes()
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(ModelError, match="holds no"):
        fetch_landmark_model(tmp_path / "x.tflite", wheel=empty)


def test_prepare_with_landmarks_caches_context_crops_box_and_mesh(tmp_path, mesh, face_video):
    root = tmp_path / "data"
    stills = root / "train" / "real" / "stills"
    stills.mkdir(parents=True)
    face = load_face_bgr()
    # A face near the right edge: the context crop is clipped to the frame, never padded.
    frame = make_frame(5, 480, 300, None)
    frame[40:296, 290:480] = face[:, :190]  # the face ends ~12 px from the right edge
    cv2.imwrite(str(stills / "edge.png"), frame)
    talking = root / "train" / "real" / "talking"
    talking.mkdir(parents=True)
    shutil.copy(face_video, talking / "speaker.mp4")
    haar = make_face_detector("haar", yunet_model=Path("unused.onnx"))
    cache = tmp_path / "cache"
    summaries = prepare_training_data(root, cache, tmp_path / "split.csv", haar,
                                      holdout_fraction=0.0, show_progress=False,
                                      landmark_model=mesh, layouts=("context",))
    assert summaries["train context"].processed == 2 and "train" not in summaries

    edge = load_cached(cache_file(cache, TRAIN_CONTEXT_SETTINGS, "train/real/stills/edge.png"))
    assert edge.count == 1
    crop, box, points = edge.crops_rgb[0], edge.boxes_xyxy[0], edge.landmarks_xy[0]
    height, width = crop.shape[:2]
    x1, y1, x2, y2 = box
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    side = max(x2 - x1, y2 - y1)
    room_left, room_right = x1, width - x2
    assert room_left == pytest.approx(TRAIN_CONTEXT_SETTINGS.context_margin * side, abs=2)
    assert room_right < room_left - 5  # clipped at the frame's right edge
    assert crop[:, -3:].mean() > 10  # ...not padded with black
    assert np.isfinite(points).all()
    assert points[:, 0].min() > x1 - 0.3 * (x2 - x1) and points[:, 0].max() < width + 1
    # the mesh lands on the face in the crop: its centre is near the box centre
    centre = points[list(FACE_OVAL)].mean(axis=0)
    assert abs(centre[0] - (x1 + x2) / 2) < 0.25 * (x2 - x1)

    video = load_cached(cache_file(cache, TRAIN_CONTEXT_SETTINGS, "train/real/talking/speaker.mp4"))
    assert video.count >= 5 and video.landmarks_xy.shape == (video.count, 468, 2)
    again = prepare_training_data(root, cache, tmp_path / "split.csv", haar, show_progress=False,
                                  landmark_model=mesh, layouts=("context",))
    assert again["train context"].cached_before == 2 and again["train context"].processed == 0


def test_the_v3_held_out_set_blends_inside_the_face_of_the_whole_frame(tmp_path, mesh):
    from detector.training.prepare import write_holdout_eval_set
    from detector.training.split import SplitRow, write_split

    root = tmp_path / "data"
    stills = root / "train" / "real" / "stills"
    stills.mkdir(parents=True)
    frame = make_frame(3, 480, 360, load_face_bgr(), face_px=256)
    cv2.imwrite(str(stills / "person.png"), frame)
    split = tmp_path / "split.csv"
    write_split([SplitRow("train/real/stills/person.png", "stills:person", "holdout")], split)
    haar = make_face_detector("haar", yunet_model=Path("unused.onnx"))
    out = tmp_path / "heldout"
    assert write_holdout_eval_set(root, split, out, haar, show_progress=False,
                                  landmark_model=mesh) == 2
    labels = (out / "labels.csv").read_text().splitlines()
    assert labels[1].startswith("real/") and ",REAL," in labels[1] and ",FAKE," in labels[2]
    real = cv2.imread(str(out / labels[1].split(",")[0]))
    fake = cv2.imread(str(out / labels[2].split(",")[0]))
    changed = np.abs(real.astype(int) - fake.astype(int)).sum(axis=2) > 0
    assert changed.any() and real.shape == frame.shape
    ys, xs = np.nonzero(changed)
    face = haar.detect(frame)[0].box_xyxy
    assert face[0] - 40 <= xs.min() and xs.max() <= face[2] + 40  # only around the face
