"""Face tracks end to end: a generated clip with faces that stay, leave and enter, replayed
through the real service (redis-server, ZeroMQ, worker processes); a worker answering region
hints over real sockets."""

from __future__ import annotations

import json
import time

import pytest

from app.replay import run_replay
from detector.boxes import box_iou
from detector.records import HistoryEntry
from detector.wire import TRACK_DETECT, DetectRequest, FrameMessage, TrackHint
from producers.synthetic import FacePath, load_face_bgr, make_faces_frame, write_faces_video
from tests.conftest import serve_worker
from tests.integration.test_worker import receive_results

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Face 1 stays all along; face 2 leaves after frame 27; face 3 enters at frame 36.
PATHS = (FacePath(0, 59, (40, 120), (120, 130), 130),
         FacePath(0, 27, (440, 40), (470, 60), 130),
         FacePath(36, 59, (300, 200), (280, 210), 130))
N_FRAMES = 60


@pytest.fixture(scope="module")
def faces_clip(tmp_path_factory):
    return write_faces_video(tmp_path_factory.mktemp("tracks") / "crowd.mp4", N_FRAMES, PATHS)


def true_path(box) -> int | None:
    """Which generated face (0, 1, 2) a detected box lies on."""
    for position, path in enumerate(PATHS):
        for index in range(path.first_frame, path.last_frame + 1):
            truth = path.box_at(index)
            x1, y1, x2, y2 = box
            if truth[0] <= (x1 + x2) / 2 <= truth[2] and truth[1] <= (y1 + y2) / 2 <= truth[3]:
                return position
    return None


def replay_frames(make_config, redis_url, clip, tmp_path, **tracking):
    config = make_config(workers={"count": 2, "max_batch": 2, "max_wait_ms": 5},
                         faces={"detector": "haar"}, tracking=tracking)
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    assert run_replay(config, [str(clip)], redis_url=redis_url, report_path=report,
                      show_progress=False) == 0
    return json.loads(report.read_text())["files"][0]["frames"]


def test_faces_keep_their_ids_one_leaving_ends_its_track_and_one_entering_starts_one(
        make_config, redis_server, redis_client, faces_clip, tmp_path):
    # given a clip with two faces, one of which leaves, and a third that enters later;
    # when it is replayed through two workers (results may come back out of order)
    frames = replay_frames(make_config, redis_server.url, faces_clip, tmp_path, max_missed=1)
    assert [f["frame_index"] for f in frames] == list(range(0, N_FRAMES, 4))
    # then each generated face has one track id of its own, the whole time it is in view
    ids_by_path: dict[int, set[int]] = {}
    for frame in frames:
        for face in frame["faces"]:
            ids_by_path.setdefault(true_path(face["box_xyxy"]), set()).add(face["track_id"])
    assert ids_by_path == {0: {1}, 1: {2}, 2: {3}}
    # and Redis has the tracks: the leaving face's track ended, the stream score is the most
    # suspicious live track's, and the history has per-track scores for the chart
    latest = json.loads(redis_client.get("deepfake:latest:crowd"))
    assert latest["schema_version"] == 2
    live = {t["track_id"]: t for t in latest["tracks"] if t["status"] == "live"}
    assert sorted(live) == [1, 3]
    assert latest["rolling_score"] == pytest.approx(max(t["rolling_score"] for t in live.values()),
                                                    abs=1e-6)
    assert {f["track_id"] for f in latest["faces"]} == {1, 3}
    history = [HistoryEntry.from_redis(entry_id, fields)
               for entry_id, fields in redis_client.xrange("deepfake:history:crowd")]
    ended_at = [e.frame_index for e in history if 2 in e.track_scores][-1]
    assert 24 <= ended_at <= 32                 # gone after frame 27, ended after one miss
    assert [e.frame_index for e in history if 3 in e.track_scores][0] == 36
    assert all(set(e.track_scores) == {1, 2} for e in history if e.frame_index <= 24)


def test_a_tracked_replay_gives_the_same_tracks_every_time(
        make_config, redis_server, faces_clip, tmp_path):
    # given tracking in files too (region search between full detections, tracking.files)
    settings = dict(files="track", full_every=4, max_missed=1)

    def tracks(frames):
        return [(f["frame_index"], f["detect_mode"], f["faces"]) for f in frames]

    # when the same clip is replayed twice through two workers
    first = replay_frames(make_config, redis_server.url, faces_clip, tmp_path, **settings)
    second = replay_frames(make_config, redis_server.url, faces_clip, tmp_path, **settings)
    # then every frame has the same faces, boxes and track ids
    assert tracks(first) == tracks(second)
    modes = [f["detect_mode"] for f in first]
    assert modes.count("track") >= len(modes) // 2 and "full" in modes
    ids = {(true_path(face["box_xyxy"]), face["track_id"]) for f in first for face in f["faces"]}
    assert ids == {(0, 1), (1, 2), (2, 3)}


def test_a_worker_looks_only_near_the_hinted_boxes_and_answers_per_track(make_config):
    face = load_face_bgr()
    image = make_faces_frame(8, 640, 360, face, PATHS)
    config = make_config(faces={"detector": "haar"})
    with serve_worker(config, "t0") as served:
        push, pull = served.push, served.pull
        # given the full detection of a frame
        push.send_multipart(FrameMessage("cam", 8, None, time.time(), image).encode())
        (full,) = receive_results(pull, 1)
        assert len(full.faces) == 2 and all(f.track_id is None for f in full.faces)
        left, right = sorted(full.faces, key=lambda f: f.box_xyxy[0])
        # when the next frame asks for track 5 near the left face and track 9 where no face is
        plan = DetectRequest(TRACK_DETECT, (TrackHint(5, left.box_xyxy),
                                            TrackHint(9, (560.0, 280.0, 620.0, 340.0))))
        push.send_multipart(FrameMessage("cam", 12, None, time.time(), image, detect=plan).encode())
        (tracked,) = receive_results(pull, 1)
    # then it reports the left face as track 5, on the same box, and nothing for track 9
    # (the right face is outside every hinted region)
    assert [f.track_id for f in tracked.faces] == [5]
    assert box_iou(tracked.faces[0].box_xyxy, left.box_xyxy) >= 0.8
