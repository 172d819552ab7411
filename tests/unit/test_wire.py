import json

import numpy as np
import pytest

from detector.errors import WireFormatError
from detector.wire import FaceResult, FrameMessage, ResultMessage, WorkerStats, decode_worker_output, peek_stream_id


def make_frame(**overrides):
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    fields = dict(stream_id="cam", frame_index=8, pts_s=0.27, capture_time_s=1700000000.5,
                  image_bgr=image, want_thumbnail=True)
    fields.update(overrides)
    return FrameMessage(**fields)


def test_frame_round_trip_keeps_pixels_and_header():
    frame = make_frame()
    decoded = FrameMessage.decode([bytes(p) for p in frame.encode()])
    assert decoded.stream_id == "cam" and decoded.frame_index == 8
    assert decoded.pts_s == pytest.approx(0.27) and decoded.want_thumbnail
    np.testing.assert_array_equal(decoded.image_bgr, frame.image_bgr)


def test_frame_with_unknown_pts_round_trips_as_none():
    decoded = FrameMessage.decode([bytes(p) for p in make_frame(pts_s=None).encode()])
    assert decoded.pts_s is None


def header(**changes):
    base = {"schema_version": 1, "kind": "frame", "stream_id": "cam", "frame_index": 0,
            "pts_s": 0.0, "capture_time_s": 1.0, "shape": [4, 6, 3], "dtype": "uint8"}
    base.update(changes)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


PIXELS = bytes(4 * 6 * 3)


@pytest.mark.parametrize("parts,reason", [
    ([], "2 frame parts"),
    ([header()], "2 frame parts"),
    ([header(), PIXELS, b"x"], "2 frame parts"),
    ([b"\xff\xfe", PIXELS], "not UTF-8 JSON"),
    ([b"[1, 2]", PIXELS], "JSON object"),
    ([header(schema_version=2), PIXELS], "schema_version"),
    ([header(schema_version=...), PIXELS], "schema_version"),
    ([header(schema_version=True), PIXELS], "schema_version"),
    ([header(capture_time_s=-1.0), PIXELS], "capture_time_s >= 0"),
    ([header(capture_time_s=2**2000), PIXELS], "finite capture_time_s"),
    ([header(pts_s=10**400), PIXELS], "finite pts_s"),
    ([header().replace(b'"frame_index": 0', b'"frame_index": ' + b"9" * 5000), PIXELS],
     "not UTF-8 JSON"),
    ([header(kind="result"), PIXELS], "kind"),
    ([header(shape=[4, 6]), PIXELS], "shape"),
    ([header(shape=[4, 6, 4]), PIXELS], "shape"),
    ([header(shape=[0, 6, 3]), b""], "shape"),
    ([header(shape=[100000, 6, 3]), PIXELS], "shape"),
    ([header(shape="4x6"), PIXELS], "shape"),
    ([header(dtype="float32"), PIXELS], "dtype"),
    ([header(), PIXELS[:-1]], "pixel bytes"),
    ([header(), PIXELS + b"\0"], "pixel bytes"),
    ([header(frame_index=-1), PIXELS], "frame_index"),
    ([header(frame_index="7"), PIXELS], "frame_index"),
    ([header(frame_index=True), PIXELS], "frame_index"),
    ([header(stream_id=""), PIXELS], "stream_id"),
    ([header(stream_id=5), PIXELS], "stream_id"),
    ([header(capture_time_s=...), PIXELS], "capture_time_s"),
    ([b"{" * 70000, PIXELS], "exceeds"),
])
def test_bad_frame_messages_are_rejected(parts, reason):
    with pytest.raises(WireFormatError, match=reason):
        FrameMessage.decode(parts)


def test_result_round_trip_with_thumbnail():
    result = ResultMessage(
        stream_id="cam", frame_index=4, pts_s=None, capture_time_s=2.0,
        faces=(FaceResult((1.0, 2.0, 30.0, 40.0), 0.9, 0.75),), worker_id="w0", batch_size=3,
        timings_ms={"detect": 1.5, "classify": 3.25}, thumbnail_jpeg=b"\xff\xd8jpeg")
    decoded = decode_worker_output([bytes(p) for p in result.encode()])
    assert decoded == result


def test_result_without_faces_means_no_face():
    result = ResultMessage("cam", 0, 0.0, 1.0, (), "w0", 1, {})
    decoded = ResultMessage.decode(result.encode())
    assert decoded.faces == () and decoded.error is None


def test_worker_stats_round_trip():
    stats = WorkerStats("w1", 123, 10, 2, True)
    assert decode_worker_output(stats.encode()) == stats


@pytest.mark.parametrize("face", [
    {"box_xyxy": [1, 2, 3], "detector_confidence": 1, "fake_probability": 0.5},
    {"box_xyxy": [1, 2, 3, 4], "fake_probability": 0.5},
    {"box_xyxy": [1, 2, 3, 4], "detector_confidence": 1, "fake_probability": 1.5},
    "face",
])
def test_bad_faces_in_results_are_rejected(face):
    raw = {"schema_version": 1, "kind": "result", "stream_id": "c", "frame_index": 0,
           "capture_time_s": 1.0, "faces": [face], "worker_id": "w", "batch_size": 1,
           "timings_ms": {}}
    with pytest.raises((WireFormatError, ValueError)):
        ResultMessage.decode([json.dumps(raw).encode()])


def test_peek_stream_id_of_garbage():
    assert peek_stream_id([b"\x00\x01"]) is None
    assert peek_stream_id([header(schema_version=9)]) == "cam"
