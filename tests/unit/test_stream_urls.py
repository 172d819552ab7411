"""detector/stream_urls.py: one answer, for the CLI, the dashboard and the producers, to what a
URL is and what its stream is called."""

from pathlib import Path

import pytest

from detector.errors import SourceError
from detector.stream_urls import default_stream_id, is_live_url, service_target, url_kind


@pytest.mark.parametrize("url, kind, live", [
    ("clip.mp4", "file", False), ("/abs/clip.mp4", "file", False), ("file:///x/c.mp4", "file", False),
    ("rtsp://cam/live", "rtsp", True), ("rtsps://cam/live", "rtsps", True),
    ("webcam:0", "webcam", True), ("/dev/video2", "webcam", True), ("http://cam/x", "http", True),
])
def test_url_kinds(url, kind, live):
    assert url_kind(url) == kind
    assert is_live_url(url) is live


def test_a_malformed_url_is_a_source_error():
    with pytest.raises(SourceError, match="malformed URL"):
        url_kind("rtsp://[::1/x")


@pytest.mark.parametrize("url, expected", [
    ("videos/driving.mp4", "driving"), ("file:///x/a.b.mp4", "a.b"), ("rtsp://cam/live", "live"),
    ("rtsp://u:p@cam:554/", "cam"), ("webcam:0", "webcam0"), ("webcam:12", "webcam12"),
    ("/dev/video0", "video0"), ("my clip.mp4", "my_clip"),
])
def test_default_stream_ids_are_the_same_from_every_entry_point(url, expected):
    # the CLI (attach, run URL…), the dashboard form and FileSource all use this one function;
    # a webcam used to be "webcam:0" from the CLI and "webcam0" from the dashboard
    assert default_stream_id(url) == expected


def test_service_target_makes_files_absolute_and_leaves_live_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert service_target("clip.mp4") == str(tmp_path / "clip.mp4")
    assert service_target("~/c.mp4") == str(Path("~/c.mp4").expanduser().resolve())
    for url in ("rtsp://cam/live", "webcam:0", "/dev/video0", "file:///x.mp4"):
        assert service_target(url) == url
