"""detector/records.py: every Redis record reads back what was written, and a bad one is refused."""

import json

import pytest

from detector.records import HistoryEntry, ScoreRecord, StatusRecord, record_expired
from detector.stream_status import TERMINAL_STATUSES, StreamStatus


def test_a_status_record_round_trips_through_its_redis_form():
    record = StatusRecord("cam", StreamStatus.RUNNING, "rtsp://***@c/l", "live", started_at=1.5,
                          updated_at=2.5, frames_read=40, frames_sampled=10, frames_dropped=2,
                          frames_scored=8, frames_with_faces=6, reconnects=1, rolling_score=0.25,
                          verdict="REAL", fps=7.5, latency_ms=80.0)
    raw = record.to_redis()
    assert json.loads(raw)["schema_version"] == 1 and json.loads(raw)["status"] == "running"
    assert "video_score" not in json.loads(raw)   # a live stream has no video score
    assert StatusRecord.from_redis(raw) == record
    assert StatusRecord.from_redis(raw, b"cam") == record


def test_a_file_status_record_keeps_its_video_score_and_label_even_when_none():
    record = StatusRecord("clip", StreamStatus.FINISHED, "clip.mp4", "file", verdict="PENDING")
    assert json.loads(record.to_redis())["video_score"] is None
    assert json.loads(record.to_redis())["label"] is None
    assert StatusRecord.from_redis(record.to_redis()) == record


def test_a_score_record_round_trips_and_gives_its_history_entry():
    face = {"box_xyxy": [1, 2, 3, 4], "detector_confidence": 0.9, "fake_probability": 0.75}
    record = ScoreRecord("cam", 12, 0.75, 0.5, "FAKE", threshold=0.5, pts_s=0.4, capture_time=10.0,
                         published_time=10.1, faces=(face,), latency_ms=100.0,
                         timings_ms={"detect": 3.0}, batch_size=2, worker="w1", model="m@1",
                         fps=3.0, frames_scored=4, frames_dropped=1)
    assert ScoreRecord.from_redis(record.to_redis()) == record
    entry = record.history_entry()
    assert entry == HistoryEntry(12, 0.75, 0.5, "FAKE", 100.0, 10.0, 1)
    read = HistoryEntry.from_redis(b"5-0", {k.encode(): str(v).encode()
                                            for k, v in entry.to_redis().items()})
    assert read == HistoryEntry(12, 0.75, 0.5, "FAKE", 100.0, 10.0, 1, entry_id="5-0")


def test_no_face_is_written_as_none_and_read_back_as_none_never_a_score():
    record = ScoreRecord("cam", 0, None, None, "NO_FACE")
    assert json.loads(record.to_redis())["frame_score"] is None
    assert record.history_entry().to_redis()["frame_score"] == ""
    assert ScoreRecord.from_redis(record.to_redis()).frame_score is None


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"frame_index": 1}',
                                 b'{"stream_id": 7, "frame_index": 1}'])
def test_a_malformed_score_message_is_refused(raw):
    with pytest.raises(ValueError):
        ScoreRecord.from_redis(raw)


@pytest.mark.parametrize("raw", [b'{"stream_id": "cam"}', b'{"stream_id": "cam", "frame_index": "x"}'])
def test_a_score_message_without_a_usable_frame_index_reads_as_none(raw):
    assert ScoreRecord.from_redis(raw).frame_index is None


@pytest.mark.parametrize("raw", [b"{", b'"running"', b'{"status": "running"}'])
def test_a_malformed_status_record_without_a_key_is_refused(raw):
    with pytest.raises(ValueError):
        StatusRecord.from_redis(raw)


def test_statuses_are_their_published_names():
    assert [s.value for s in StreamStatus] == ["connecting", "running", "reconnecting", "stalled",
                                               "draining", "finished", "failed", "stopped",
                                               "removed"]
    assert {s for s in StreamStatus if s.is_terminal} == TERMINAL_STATUSES
    assert json.dumps(StreamStatus.DRAINING) == '"draining"'


def test_a_stream_without_a_scored_frame_reads_as_pending_or_failed_never_no_face():
    assert StatusRecord.from_redis('{"status": "running", "frames_scored": 0, "verdict": "NO_FACE"}',
                                   "a").verdict == "PENDING"
    assert StatusRecord.from_redis('{"status": "running"}', "a").verdict == "PENDING"
    assert StatusRecord.from_redis('{"status": "failed"}', "a").verdict == "FAILED"
    assert StatusRecord.from_redis('{"status": "running", "frames_scored": 3, "verdict": "NO_FACE"}',
                                   "a").verdict == "NO_FACE"


@pytest.mark.parametrize("expires_at, expired", [(None, False), (99.0, True), (100.0, True),
                                                 (101.0, False), ("x", False)])
def test_an_ended_record_expires_at_its_expires_at(expires_at, expired):
    raw = json.dumps({"stream_id": "a", "status": "finished", "expires_at": expires_at})
    assert record_expired(raw, 100.0) is expired
    assert record_expired(b"not json", 100.0) is False


def test_a_score_record_carries_its_tracks_and_its_history_entry_the_live_tracks_scores():
    face = {"box_xyxy": [1, 2, 3, 4], "detector_confidence": 0.9, "fake_probability": 0.75,
            "track_id": 2}
    tracks = ({"track_id": 1, "box_xyxy": [5, 5, 9, 9], "rolling_score": 0.1, "status": "ended",
               "first_frame_index": 0, "last_frame_index": 4},
              {"track_id": 2, "box_xyxy": [1, 2, 3, 4], "rolling_score": 0.75, "status": "live",
               "first_frame_index": 4, "last_frame_index": 12})
    record = ScoreRecord("cam", 12, 0.75, 0.75, "FAKE", faces=(face,), tracks=tracks)
    raw = record.to_redis()
    assert json.loads(raw)["schema_version"] == 2
    assert ScoreRecord.from_redis(raw) == record
    entry = record.history_entry()
    assert entry.track_scores == {2: 0.75}           # ended tracks draw no more line
    fields = {k.encode(): str(v).encode() for k, v in entry.to_redis().items()}
    assert HistoryEntry.from_redis(b"1-0", fields).track_scores == {2: 0.75}


def test_version_1_score_messages_and_history_entries_read_without_tracks():
    old = {"schema_version": 1, "stream_id": "cam", "frame_index": 4, "frame_score": 0.5,
           "rolling_score": 0.5, "verdict": "REAL",
           "faces": [{"box_xyxy": [1, 2, 3, 4], "detector_confidence": 0.9, "fake_probability": 0.5}]}
    record = ScoreRecord.from_redis(json.dumps(old))
    assert record.tracks == () and record.faces[0].get("track_id") is None
    entry = HistoryEntry.from_redis("1-0", {"frame_index": "4", "frame_score": "0.5"})
    assert entry.track_scores == {}


@pytest.mark.parametrize("tracks", ["", "not json", "[1]", '{"x": 1}'])
def test_an_unreadable_tracks_field_reads_as_no_tracks(tracks):
    assert HistoryEntry.from_redis("1-0", {"frame_index": "4", "tracks": tracks}).track_scores == {}


def test_a_score_message_of_a_newer_version_is_a_clear_error():
    with pytest.raises(ValueError, match="schema_version 1 or 2, got 3"):
        ScoreRecord.from_redis(json.dumps({"schema_version": 3, "stream_id": "cam"}))
