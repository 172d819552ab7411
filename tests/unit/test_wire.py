import json

import numpy as np
import pytest

from detector.errors import WireFormatError
from detector.wire import (
    SCHEMA_VERSION,
    FaceResult,
    FrameMessage,
    ResultMessage,
    SlotRef,
    WorkerStats,
    decode_worker_output,
    peek_stream_id,
)


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
    base = {"schema_version": SCHEMA_VERSION, "kind": "frame", "stream_id": "cam", "frame_index": 0,
            "pts_s": 0.0, "capture_time_s": 1.0, "shape": [4, 6, 3], "dtype": "uint8"}
    base.update(changes)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


PIXELS = bytes(4 * 6 * 3)
SHM = {"kind": "shm", "ring": "ring-0123456789abcdef", "slot": 3, "generation": 17,
       "format": "bgr24"}


@pytest.mark.parametrize("parts,reason", [
    ([], "1 or 2 frame parts"),
    ([header()], "2 parts for inline"),
    ([header(), PIXELS, b"x"], "1 or 2 frame parts"),
    ([b"\xff\xfe", PIXELS], "not UTF-8 JSON"),
    ([b"[1, 2]", PIXELS], "JSON object"),
    ([header(schema_version=3), PIXELS], "schema_version"),
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
    # the payload description: inline (the default) or a shared-memory slot
    ([header(payload={"kind": "inline"})], "2 parts for inline"),
    ([header(payload={"kind": "inline", "x": 1}), PIXELS], "payload kind"),
    ([header(payload="shm"), PIXELS], "payload kind"),
    ([header(payload={"kind": "file"}), PIXELS], "payload kind"),
    ([header(payload=[1]), PIXELS], "payload kind"),
] + [([header(payload={**SHM, **change})], reason) for change, reason in [
    ({}, "reads no frame rings"),  # valid, but this decoder maps no rings (a remote worker)
    ({"ring": "../../etc/passwd"}, "ring name"),
    ({"ring": "/dev/shm/ring-0123456789abcdef"}, "ring name"),
    ({"ring": "ring-0123456789abcdef/../x"}, "ring name"),
    ({"ring": "ring-0123456789ABCDEF"}, "ring name"),
    ({"ring": "ring-0123456789abcdef\n"}, "ring name"),
    ({"ring": "ring-0123456789abcde"}, "ring name"),
    ({"ring": "other-0123456789abcdef"}, "ring name"),
    ({"ring": 7}, "ring"),
    ({"slot": -1}, "slot in"),
    ({"slot": 4096}, "slot in"),
    ({"slot": 2**70}, "slot in"),
    ({"slot": True}, "slot"),
    ({"slot": "3"}, "slot"),
    ({"slot": 1.0}, "slot"),
    ({"generation": -1}, "generation"),
    ({"generation": 2**63}, "generation"),
    ({"generation": None}, "generation"),
    ({"format": "yuv420p"}, "format"),
    ({"format": None}, "format"),
    ({"path": "/etc/passwd"}, "unknown payload keys"),
]] + [
    ([header(payload=SHM), PIXELS], "1 part for a shared-memory frame"),
    ([header(payload={k: v for k, v in SHM.items() if k != "slot"})], "lacks 'slot'"),
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
    raw = {"schema_version": SCHEMA_VERSION, "kind": "result", "stream_id": "c", "frame_index": 0,
           "capture_time_s": 1.0, "faces": [face], "worker_id": "w", "batch_size": 1,
           "timings_ms": {}}
    with pytest.raises((WireFormatError, ValueError)):
        ResultMessage.decode([json.dumps(raw).encode()])


def test_peek_stream_id_of_garbage():
    assert peek_stream_id([b"\x00\x01"]) is None
    assert peek_stream_id([header(schema_version=9)]) == "cam"


# --- schema version 2: detection plans and track ids ---------------------------------------
def test_a_frame_carries_its_detection_plan_and_a_face_its_track_id():
    from detector.wire import TRACK_DETECT, DetectRequest, TrackHint

    plan = DetectRequest(TRACK_DETECT, (TrackHint(3, (1.0, 0.5, 4.0, 3.5)), TrackHint(7, (0, 0, 6, 4))))
    decoded = FrameMessage.decode([bytes(p) for p in make_frame(detect=plan).encode()])
    assert decoded.detect == plan
    assert json.loads(make_frame(detect=plan).encode()[0])["schema_version"] == 2
    assert FrameMessage.decode([bytes(p) for p in make_frame().encode()]).detect is None
    result = ResultMessage("cam", 0, 0.0, 1.0, (FaceResult((1, 2, 3, 4), 0.9, 0.5, track_id=3),),
                           "w0", 1, {})
    assert ResultMessage.decode(result.encode()).faces[0].track_id == 3
    assert "track_id" not in FaceResult((1, 2, 3, 4), 0.9, 0.5).to_json()


def test_a_version_1_frame_is_still_read_and_means_full_detection():
    decoded = FrameMessage.decode([header(schema_version=1), PIXELS])
    assert decoded.detect is None and decoded.frame_index == 0


def hint(**changes):
    base = {"id": 1, "box_xyxy": [0, 0, 3, 2]}
    base.update(changes)
    return base


@pytest.mark.parametrize("detect,reason", [
    ("full", "object"),
    ({"mode": "fast"}, "detect.mode"),
    ({"mode": "full", "tracks": []}, "unexpected detect keys"),
    ({"mode": "track"}, "1..32"),
    ({"mode": "track", "tracks": []}, "1..32"),
    ({"mode": "track", "tracks": [hint(id=i + 1) for i in range(33)]}, "1..32"),
    ({"mode": "track", "tracks": [hint(), hint()]}, "distinct"),
    ({"mode": "track", "tracks": [hint(id=0)]}, "hint id"),
    ({"mode": "track", "tracks": [hint(id=True)]}, "hint id"),
    ({"mode": "track", "tracks": [hint(id=2**40)]}, "hint id"),
    ({"mode": "track", "tracks": [hint(box_xyxy=[0, 0, 3])]}, "4 numbers"),
    ({"mode": "track", "tracks": [hint(box_xyxy=[0, 0, "3", 2])]}, "4 numbers"),
    ({"mode": "track", "tracks": [hint(box_xyxy=[0, 0, 2**2000, 2])]}, "finite"),
    ({"mode": "track", "tracks": [hint(box_xyxy=[0, 0, 7, 2])]}, "inside the 6x4 frame"),
    ({"mode": "track", "tracks": [hint(box_xyxy=[-1, 0, 3, 2])]}, "inside"),
    ({"mode": "track", "tracks": [hint(box_xyxy=[3, 0, 3, 2])]}, "inside"),
    ({"mode": "track", "tracks": [{"id": 1}]}, "id, box_xyxy"),
    ({"mode": "track", "tracks": [{**hint(), "extra": 1}]}, "id, box_xyxy"),
])
def test_bad_detection_plans_are_rejected(detect, reason):
    with pytest.raises(WireFormatError, match=reason):
        FrameMessage.decode([header(schema_version=2, detect=detect), PIXELS])


def test_a_detection_plan_in_a_version_1_frame_is_rejected():
    with pytest.raises(WireFormatError, match="schema_version 1"):
        FrameMessage.decode([header(schema_version=1, detect={"mode": "full"}), PIXELS])


def test_an_unknown_version_names_the_versions_read():
    with pytest.raises(WireFormatError, match=r"expected schema_version 1 or 2 .*got 3"):
        FrameMessage.decode([header(schema_version=3), PIXELS])


@pytest.mark.parametrize("track_id", [0, -1, True, "3", 2**40])
def test_a_bad_face_track_id_is_rejected(track_id):
    raw = {"schema_version": 2, "kind": "result", "stream_id": "c", "frame_index": 0,
           "capture_time_s": 1.0, "worker_id": "w", "batch_size": 1, "timings_ms": {},
           "faces": [{"box_xyxy": [1, 2, 3, 4], "detector_confidence": 1,
                      "fake_probability": 0.5, "track_id": track_id}]}
    with pytest.raises(WireFormatError, match="track_id"):
        ResultMessage.decode([json.dumps(raw).encode()])


class OneSlot:
    """A slot reader with one slot: what a worker's RingReader does, without a ring file."""

    def __init__(self, image):
        self.image = image
        self.asked = []

    def view(self, ref, shape):
        self.asked.append((ref, shape))
        return self.image


def test_a_shared_memory_frame_is_one_part_and_names_its_slot():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    ref = SlotRef("ring-0123456789abcdef", 3, 17)
    parts = make_frame(slot=ref).encode()
    assert len(parts) == 1
    assert json.loads(parts[0])["payload"] == SHM
    reader = OneSlot(image)
    decoded = FrameMessage.decode(parts, reader)
    assert decoded.slot == ref and decoded.image_bgr is image
    assert reader.asked == [(ref, (4, 6, 3))]


def test_inline_frames_carry_no_payload_field():
    assert "payload" not in json.loads(make_frame().encode()[0])


def test_a_shared_memory_payload_in_a_version_1_frame_is_rejected():
    with pytest.raises(WireFormatError, match="no payload in a schema_version 1"):
        FrameMessage.decode([header(schema_version=1, payload=SHM)], OneSlot(None))
