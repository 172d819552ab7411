"""YuNet keeps one network per input size, so region searches of many sizes between full
detections do not re-plan one network each call, and a padded region finds the same face; its
network runs in OpenCV or in OpenVINO, with the same results."""

from __future__ import annotations

import pytest

from producers.synthetic import load_face_bgr, make_frame
from tests.conftest import YUNET_SHARED


def _openvino_missing() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.fixture(params=["opencv", "openvino"])
def yunet(request):
    from detector.face_detect import YuNetFaceDetector

    if not YUNET_SHARED.is_file():
        pytest.skip(f"{YUNET_SHARED} not present")
    if request.param == "openvino" and _openvino_missing():
        pytest.skip("openvino not installed")
    detector = YuNetFaceDetector(YUNET_SHARED, runtime=request.param)
    assert detector.runtime == request.param
    return detector


def test_openvino_finds_what_opencv_finds_box_landmarks_and_score():
    import cv2
    import numpy as np

    from detector.face_detect import YuNetFaceDetector

    if not YUNET_SHARED.is_file() or _openvino_missing():
        pytest.skip("needs the shared YuNet file and openvino")
    opencv = YuNetFaceDetector(YUNET_SHARED, runtime="opencv")
    openvino = YuNetFaceDetector(YUNET_SHARED, runtime="openvino", threads=1)
    face = load_face_bgr()
    canvas = np.full((360, 640, 3), 90, np.uint8)  # two faces of different sizes, 640 x 360
    canvas[50:306, 100:356] = face
    canvas[80:208, 450:578] = cv2.resize(face, (128, 128))
    images = [canvas, face, cv2.resize(face, (200, 150))]  # 150 and 200 are not multiples of 32
    images += [make_frame(i, 1280, 720, face, 432) for i in range(0, 60, 12)]
    found = 0
    for image in images:
        small = cv2.resize(image, (640, round(640 * image.shape[0] / image.shape[1])))
        _, a = opencv._network((small.shape[1], small.shape[0])).detect(small)
        _, b = openvino._network((small.shape[1], small.shape[0])).detect(small)
        assert (a is None) == (b is None)
        if a is None:
            continue
        assert a.shape == b.shape and a.shape[1] == 15
        np.testing.assert_allclose(b[:, :14], a[:, :14], atol=0.01)  # box and five points, px
        np.testing.assert_allclose(b[:, 14], a[:, 14], atol=1e-4)    # score
        found += len(a)
    assert found >= len(images) + 1  # every image has a face, the canvas two
    assert [len(opencv.detect(canvas)), len(openvino.detect(canvas))] == [2, 2]


def test_an_unknown_or_unavailable_yunet_runtime_is_refused(monkeypatch):
    import sys

    from detector.errors import ModelError
    from detector.face_detect import resolve_yunet_runtime

    with pytest.raises(ModelError, match="yunet_runtime must be one of"):
        resolve_yunet_runtime("onnxruntime")
    assert resolve_yunet_runtime("opencv") == "opencv"
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    assert resolve_yunet_runtime("auto") == "opencv"
    with pytest.raises(ModelError, match="needs the openvino package"):
        resolve_yunet_runtime("openvino")


def test_region_searches_reuse_a_bounded_set_of_networks_and_find_the_face(yunet):
    from detector.boxes import box_iou
    from detector.face_detect import detect_near

    frames = [make_frame(i, 1280, 720, load_face_bgr(), 432) for i in range(0, 120, 4)]
    full = [yunet.detect(frame) for frame in frames]
    assert all(len(faces) == 1 for faces in full)
    for frame, faces in zip(frames, full):
        # regions from 1.5x to 4x the box give many region sizes; sizes snap to a 32-px grid
        for scale in (1.5, 2.0, 2.5, 3.0, 3.5, 4.0):
            near = detect_near(yunet, frame, 7, faces[0].box_xyxy, scale, 96, 640)
            assert near is not None and near.track_id == 7
            assert box_iou(near.box_xyxy, faces[0].box_xyxy) >= 0.8
        yunet.detect(frame)  # and a full detection in between, as a worker does
    sizes = list(yunet._networks)
    assert len(sizes) <= yunet.MAX_NETWORKS
    assert (640, 360) in sizes  # the full-frame network survived the regions (recently used)
    regions = [size for size in sizes if size != (640, 360) and size != (320, 320)]
    assert regions and all(w % yunet.SIZE_STEP_PX == 0 and h % yunet.SIZE_STEP_PX == 0
                           for w, h in regions)


def test_a_region_is_shrunk_by_a_whole_factor_and_still_finds_the_face(yunet, monkeypatch):
    import cv2

    from detector.boxes import box_iou
    from detector.face_detect import detect_near

    frame = make_frame(0, 1280, 720, load_face_bgr(), 432)
    [face] = yunet.detect(frame)
    resized = []
    real_resize = cv2.resize

    def recording_resize(image, size, *args, **kwargs):
        resized.append((image.shape[1], image.shape[0], *size))
        return real_resize(image, size, *args, **kwargs)

    monkeypatch.setattr(cv2, "resize", recording_resize)
    for face_px in (24, 32, 48, 64):
        resized.clear()
        near = detect_near(yunet, frame, 3, face.box_xyxy, 3.0, face_px, 640)
        assert near is not None and box_iou(near.box_xyxy, face.box_xyxy) >= 0.8
        # one resize, by the same whole factor (>= the full detection's 2) on both sides
        [(width, height, small_w, small_h)] = resized
        factor = width // small_w
        assert factor >= 2 and width == small_w * factor and height == small_h * factor
        box_width = face.box_xyxy[2] - face.box_xyxy[0]
        assert box_width / factor >= face_px * 0.99 or factor == 2  # rounded down, never finer


def test_two_tracks_on_one_face_get_it_once_the_older_track_keeps_it(yunet):
    from detector.frame_scorer import detect_planned
    from detector.wire import TRACK_DETECT, DetectRequest, TrackHint

    frame = make_frame(0, 1280, 720, load_face_bgr(), 432)
    [face] = yunet.detect(frame)
    x1, y1, x2, y2 = face.box_xyxy
    nudged = (x1 + 6, y1 + 4, x2 + 6, y2 + 4)
    # given two live tracks whose last boxes are both on the one face
    plan = DetectRequest(TRACK_DETECT, (TrackHint(2, face.box_xyxy), TrackHint(5, nudged)))
    found = detect_planned(yunet, frame, plan, 3.0, 48, 640)
    # then the face is reported once, for track 2 (track 5 is not found: the next plan is full)
    assert [f.track_id for f in found] == [2]
    # while two faces side by side are both kept, each for its own track
    import cv2
    import numpy as np

    portrait = cv2.resize(load_face_bgr(), (300, 360))
    pair = np.full((720, 1280, 3), 90, np.uint8)
    pair[180:540, 120:420] = portrait
    pair[180:540, 820:1120] = portrait
    left, right = sorted(yunet.detect(pair), key=lambda f: f.box_xyxy[0])
    apart = DetectRequest(TRACK_DETECT, (TrackHint(2, left.box_xyxy), TrackHint(5, right.box_xyxy)))
    assert [f.track_id for f in detect_planned(yunet, pair, apart, 3.0, 48, 640)] == [2, 5]
