"""Tracked boxes stay on the face: region search vs full detection on a generated clip
(bench/tracking_iou.py's measurement), with Haar and, where ../shared has it, YuNet."""

from __future__ import annotations

import pytest

from bench.tracking_iou import generated_frames, measure
from detector.config import TrackingConfig
from detector.face_detect import make_face_detector
from tests.conftest import YUNET_SHARED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize("kind", ["haar", "yunet"])
def test_tracked_boxes_overlap_full_detection_on_95_percent_of_frames(kind):
    if kind == "yunet" and not YUNET_SHARED.is_file():
        pytest.skip(f"YuNet is not at {YUNET_SHARED}")
    # given the generated clip (two faces move, one leaves, one enters), 640x360, stride 4
    detector = make_face_detector(kind, yunet_model=YUNET_SHARED)
    # when the tracker plans every sampled frame and the detector follows the plans
    result = measure(generated_frames(240, 640, 360), detector, TrackingConfig(), kind)
    # then most frames were tracked, and on >= 95 % of them every track has IoU >= 0.8
    assert result.frames_sampled == 60
    assert result.frames_tracked >= result.frames_sampled // 2
    assert result.pass_rate >= 0.95, result
