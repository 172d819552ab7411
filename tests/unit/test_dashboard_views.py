"""consumers/dashboard: Redis record parsing, the streams table, figures and the control form."""

from pathlib import Path

import pytest

from consumers.dashboard.control_form import attach_target, default_stream_id, mask_in_text
from consumers.dashboard.figures import history_figure, upload_figure
from consumers.dashboard.layout import stream_table, stream_table_rows
from consumers.dashboard.redis_reader import status_row
from detector.records import HistoryEntry, StatusRecord


def test_history_entries_keep_empty_scores_as_none():
    point = HistoryEntry.from_redis(b"1-0", {b"frame_index": b"8", b"frame_score": b"",
                                            b"rolling_score": b"0.25", b"verdict": b"REAL",
                                            b"faces": b"0", b"latency_ms": b"12.5"})
    assert point == HistoryEntry(8, None, 0.25, "REAL", 12.5, entry_id="1-0")


@pytest.mark.parametrize("fields", [{}, {"frame_index": "x"}])
def test_a_history_entry_without_a_frame_index_is_refused(fields):
    with pytest.raises(ValueError):
        HistoryEntry.from_redis("1-0", fields)


def test_status_records_mask_credentials_and_default_missing_fields():
    row = status_row('{"source": "rtsp://u:p@cam/live", "status": "running"}', "cam")
    assert row.source == "rtsp://***@cam/live"
    assert row.rolling_score is None and row.verdict == "PENDING" and row.fps == 0.0
    assert row.latency_ms is None


def test_the_table_shows_every_column_and_none_as_a_dash():
    rows = stream_table_rows([
        StatusRecord("a", "failed", "a.mp4", "file", error="not a video"),
        StatusRecord("b", "running", "rtsp://***@c/l", "live", rolling_score=0.7312, verdict="FAKE",
                     fps=7.46, frames_scored=30, frames_dropped=4, latency_ms=85.2),
    ])
    assert rows[0]["status"] == "failed: not a video" and rows[0]["score"] == "—"
    assert rows[1] == {"stream": "b", "status": "running", "source": "rtsp://***@c/l",
                       "score": "0.731", "verdict": "FAKE", "fps": "7.5", "scored": "30",
                       "drops": "4", "latency": "85 ms"}


def test_no_streams_is_the_friendly_empty_state():
    assert stream_table([]).id == "empty-state"
    assert "No streams yet" in stream_table([]).children[0]


def test_history_figure_draws_scores_rolling_line_and_threshold():
    points = [HistoryEntry(i * 4, s, r, "REAL", 10.0, entry_id=f"{i}-0")
              for i, (s, r) in enumerate([(0.2, 0.2), (None, 0.2), (0.8, 0.5)])]
    figure = history_figure("cam", points, threshold=0.5)
    dots, line = figure.data
    assert list(dots.x) == [0, 8] and list(dots.y) == [0.2, 0.8]
    assert list(dots.marker.color) == ["#2ca02c", "#d62728"]
    assert list(line.x) == [0, 4, 8]
    assert figure.layout.shapes[0].y0 == 0.5


def test_history_figure_without_points_or_threshold():
    assert history_figure("cam", [], 0.5).data == ()
    figure = history_figure("cam", [HistoryEntry(0, 0.3, 0.3, "REAL", None, entry_id="1-0")], None)
    assert not figure.layout.shapes


def test_upload_figure_leaves_out_frames_without_a_face():
    figure = upload_figure("c.mp4", [0, 4, 8], [0.1, None, 0.9], 0.5)
    assert list(figure.data[0].x) == [0, 8]
    assert upload_figure("c.mp4", [0], [None], 0.5).data == ()


@pytest.mark.parametrize("text,expected", [
    ("0", "webcam:0"), (" 12 ", "webcam:12"), ("webcam:1", "webcam:1"),
    ("rtsp://u:p@cam/live", "rtsp://u:p@cam/live"), ("/dev/video0", "/dev/video0"),
    ("/data/clip.mp4", "/data/clip.mp4"), ("clip.mp4", str(Path("clip.mp4").resolve())),
])
def test_attach_target(text, expected):
    assert attach_target(text) == expected


@pytest.mark.parametrize("text", ["", "   ", None])
def test_attach_target_needs_something(text):
    with pytest.raises(ValueError, match="got nothing"):
        attach_target(text)


@pytest.mark.parametrize("target,expected", [
    ("/data/driving.mp4", "driving"), ("rtsp://u:p@cam:554/live", "live"),
    ("rtsp://cam:554/", "cam"), ("webcam:0", "webcam0"),
])
def test_default_stream_id(target, expected):
    assert default_stream_id(target) == expected


@pytest.mark.parametrize("text", [
    "attached live (rtsp://admin:s3cret@cam/live)",
    "cannot open rtsp://admin:s3cret@cam/live: 401",
    "login admin:s3cret refused",
])
def test_replies_never_show_credentials_back(text):
    shown = mask_in_text(text, "rtsp://admin:s3cret@cam/live")
    assert "s3cret" not in shown and "admin" not in shown


def test_history_figure_draws_one_line_per_track():
    points = [HistoryEntry(0, 0.2, 0.2, "REAL", 10.0, track_scores={1: 0.2}),
              HistoryEntry(4, 0.9, 0.9, "FAKE", 10.0, track_scores={1: 0.25, 2: 0.9}),
              HistoryEntry(8, 0.3, 0.9, "FAKE", 10.0, track_scores={2: 0.9}),
              HistoryEntry(12, None, None, "NO_FACE", 10.0)]
    figure = history_figure("cam", points, threshold=0.5)
    dots, *lines = figure.data
    assert [line.name for line in lines] == ["track 1", "track 2"]
    assert list(lines[0].x) == [0, 4] and list(lines[0].y) == [0.2, 0.25]
    assert list(lines[1].x) == [4, 8] and list(lines[1].y) == [0.9, 0.9]
    assert lines[0].line.color != lines[1].line.color
