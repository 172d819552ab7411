"""detector/tracking.py: track ids, misses and ends, per-track scores, detection plans."""

import pytest

from detector.boxes import box_iou
from detector.config import TrackingConfig
from detector.tracking import ENDED, LIVE, StreamTracker, greedy_matches
from detector.wire import FULL_DETECT, TRACK_DETECT, FaceResult

LEFT = (10.0, 10.0, 60.0, 60.0)
RIGHT = (200.0, 10.0, 250.0, 60.0)


def face(box, probability=0.5, confidence=0.9, track_id=None):
    return FaceResult(box, confidence, probability, track_id)


def shifted(box, dx):
    return (box[0] + dx, box[1], box[2] + dx, box[3])


def tracker(**settings):
    return StreamTracker(TrackingConfig(**settings), window=4, max_tracks=5)


@pytest.mark.parametrize("a,b,expected", [
    (LEFT, LEFT, 1.0),
    (LEFT, RIGHT, 0.0),
    ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
    ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),
])
def test_box_iou(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)


def test_greedy_matching_takes_the_best_overlap_first_and_each_box_once():
    tracks = [LEFT, shifted(LEFT, 20)]
    faces = [shifted(LEFT, 18), shifted(LEFT, 2), RIGHT]
    assert greedy_matches(tracks, faces, 0.3) == [(0, 1), (1, 0)]
    assert greedy_matches(tracks, [RIGHT], 0.3) == []
    assert greedy_matches([], faces, 0.3) == []


def test_two_faces_keep_distinct_ids_while_they_move():
    given = tracker()
    first = given.update(0, [face(LEFT, 0.2), face(RIGHT, 0.9)])
    assert [f.track_id for f in first.faces] == [1, 2]
    for step in range(1, 6):   # listed in the other order: ids follow the boxes, not the order
        update = given.update(step * 4, [face(shifted(RIGHT, 5 * step), 0.9),
                                         face(shifted(LEFT, 5 * step), 0.2)])
        assert [f.track_id for f in update.faces] == [2, 1]
    assert {t.track_id: t.status for t in update.tracks} == {1: LIVE, 2: LIVE}


def test_a_face_that_leaves_ends_its_track_after_max_missed_frames():
    given = tracker(max_missed=2)
    given.update(0, [face(LEFT), face(RIGHT)])
    for index in (4, 8):
        update = given.update(index, [face(LEFT)])
        assert {t.track_id: t.status for t in update.tracks} == {1: LIVE, 2: LIVE}
    update = given.update(12, [face(LEFT)])
    assert {t.track_id: t.status for t in update.tracks} == {1: LIVE, 2: ENDED}
    assert [t.track_id for t in given.update(16, [face(LEFT)]).tracks] == [1]


def test_a_face_that_comes_back_after_its_track_ended_gets_a_new_id():
    given = tracker(max_missed=0)
    given.update(0, [face(LEFT)])
    assert given.update(4, []).tracks[0].status == ENDED
    assert given.update(8, [face(LEFT)]).faces[0].track_id == 2


def test_a_new_face_starts_a_track_and_ids_are_never_reused():
    given = tracker()
    given.update(0, [face(LEFT)])
    update = given.update(4, [face(LEFT), face(RIGHT)])
    assert [f.track_id for f in update.faces] == [1, 2]


def test_the_stream_score_is_the_most_suspicious_live_track_and_none_without_one():
    given = tracker(max_missed=0)
    assert given.update(0, []).stream_score is None
    update = given.update(4, [face(LEFT, 0.1), face(RIGHT, 0.8)])
    assert update.stream_score == pytest.approx(0.8)
    update = given.update(8, [face(LEFT, 0.3), face(RIGHT, 0.6)])
    assert {t.track_id: t.rolling_score for t in update.tracks} == pytest.approx({1: 0.2, 2: 0.7})
    assert update.stream_score == pytest.approx(0.7)
    update = given.update(12, [face(LEFT, 0.3)])          # the suspicious face left
    assert update.stream_score == pytest.approx((0.1 + 0.3 + 0.3) / 3)
    assert given.update(16, []).stream_score is None     # nobody in view: no score, never 0


def test_a_failed_frame_changes_no_track():
    given = tracker(max_missed=0)
    given.update(0, [face(LEFT)])
    assert given.update(4, [], failed=True).tracks[0].status == LIVE
    assert given.update(8, [face(LEFT)]).faces[0].track_id == 1


def test_more_faces_than_max_tracks_get_no_track():
    given = StreamTracker(TrackingConfig(), window=4, max_tracks=1)
    update = given.update(0, [face(LEFT), face(RIGHT)])
    assert [f.track_id for f in update.faces] == [1, None]


def test_plans_detect_in_full_every_full_every_frames_and_track_in_between():
    given = tracker(full_every=3)
    assert given.plan(0).mode == FULL_DETECT            # no track yet
    given.update(0, [face(LEFT)])
    modes = []
    for index in range(4, 40, 4):
        plan = given.plan(index)
        modes.append(plan.mode)
        if plan.mode == TRACK_DETECT:
            assert [(h.track_id, h.box_xyxy) for h in plan.tracks] == [(1, LEFT)]
            given.update(index, [face(LEFT, track_id=1)])
        else:
            given.update(index, [face(LEFT)])
    assert modes == [TRACK_DETECT, TRACK_DETECT, FULL_DETECT] * 3


def test_a_track_not_found_in_its_region_makes_the_next_plan_full():
    given = tracker(full_every=10, max_missed=3)
    given.update(0, [face(LEFT)])
    assert given.plan(4).mode == TRACK_DETECT
    given.update(4, [])                                 # the worker did not find track 1
    assert given.plan(8).mode == FULL_DETECT


def test_a_low_confidence_track_makes_the_next_plan_full():
    given = tracker(full_every=10, redetect_confidence=0.8)
    given.update(0, [face(LEFT, confidence=0.95)])
    assert given.plan(4).mode == TRACK_DETECT
    given.update(4, [face(LEFT, confidence=0.7, track_id=1)])
    assert given.plan(8).mode == FULL_DETECT


def test_a_hinted_track_id_is_kept_even_when_the_face_moved_far():
    given = tracker(full_every=10)
    given.update(0, [face(LEFT)])
    given.plan(4)
    far = shifted(LEFT, 45)                              # IoU with the old box < match_iou
    assert box_iou(far, LEFT) < 0.3
    assert given.update(4, [face(far, track_id=1)]).faces[0].track_id == 1


def test_a_track_id_the_plan_did_not_hint_is_not_trusted():
    given = tracker(full_every=1)
    given.update(0, [face(LEFT)])
    assert given.plan(4).mode == FULL_DETECT
    update = given.update(4, [face(RIGHT, track_id=1)])   # forged or stale: matched by IoU
    assert update.faces[0].track_id == 2
    given = tracker(full_every=10)
    given.update(0, [face(LEFT)])
    assert given.plan(4).mode == TRACK_DETECT
    assert given.update(4, [face(RIGHT, track_id=9)]).faces[0].track_id == 2


def test_file_streams_without_track_mode_always_plan_full():
    given = StreamTracker(TrackingConfig(full_every=5), window=4, allow_track_mode=False)
    given.update(0, [face(LEFT)])
    assert {given.plan(i).mode for i in range(4, 100, 4)} == {FULL_DETECT}


def test_the_same_results_give_the_same_tracks():
    def run():
        given = tracker()
        out = []
        for index in range(0, 80, 4):
            faces = [face(shifted(LEFT, index)), face(shifted(RIGHT, -index // 2))]
            if index % 24 == 8:
                faces = faces[:1]
            out.append(given.update(index, faces))
        return out

    assert run() == run()


def test_a_late_live_result_scores_its_track_but_keeps_the_newer_box():
    given = tracker()
    given.update(0, [face(LEFT)])
    given.update(8, [face(shifted(LEFT, 10), 0.9)])
    update = given.update(4, [face(shifted(LEFT, 5), 0.1)])   # frame 4 answered after frame 8
    (track,) = update.tracks
    assert track.box_xyxy == shifted(LEFT, 10) and track.last_frame_index == 8
    assert track.rolling_score == pytest.approx((0.5 + 0.9 + 0.1) / 3)
