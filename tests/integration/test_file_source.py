"""FileSource against real files written by PyAV (and broken ones)."""

from pathlib import Path

import pytest

from detector.errors import SourceError
from detector.stream_urls import default_stream_id
from producers.file_source import FileSource
from producers.synthetic import read_index, write_video


def test_every_frame_is_decoded_in_order_with_its_own_index(face_video):
    source = FileSource(face_video)
    source.open()
    frames = list(source.frames())
    source.close()
    assert [f.frame_index for f in frames] == list(range(42))
    assert [read_index(f.image_bgr) for f in frames] == list(range(42))
    assert frames[0].image_bgr.shape == (240, 320, 3)
    assert frames[1].pts_s == pytest.approx(1 / 30, abs=1e-3)


def test_webm_is_read_too(second_video):
    assert sum(1 for _ in FileSource(second_video).frames()) == 30


def test_default_stream_id_is_the_file_stem():
    assert default_stream_id("videos/driving.mp4") == "driving"
    assert FileSource(Path("a/b/clip.webm")).stream_id == "clip"
    assert FileSource(Path("a/b/clip.webm"), "door").stream_id == "door"


def _truncated(tmp_path: Path) -> Path:
    good = write_video(tmp_path / "whole.mkv", 30, 160, 120)
    data = good.read_bytes()
    path = tmp_path / "truncated.mkv"
    path.write_bytes(data[: len(data) // 2])
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "missing.mp4", "file not found"),
    (lambda d: _write(d / "empty.mp4", b""), "file is empty"),
    (lambda d: _write(d / "notes.mp4", b"hello, not a video"), "not a video file"),
    (lambda d: d, "is a folder"),
])
def test_bad_files_raise_one_plain_sentence(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(SourceError) as caught:
        source = FileSource(path)
        source.open()
        list(source.frames())
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_truncated_file_yields_what_it_has_or_fails_clearly(tmp_path):
    source = FileSource(_truncated(tmp_path))
    frames = []
    try:
        source.open()
        frames.extend(source.frames())
    except SourceError as exc:
        assert "truncated.mkv" in str(exc)
    assert len(frames) < 30


def test_an_image_is_not_a_video(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "still.png"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    source = FileSource(path)
    # FFmpeg opens a PNG as a one-frame "video"; a single frame is fine, no crash either way.
    try:
        source.open()
        assert len(list(source.frames())) == 1
    except SourceError as exc:
        assert "still.png" in str(exc)
