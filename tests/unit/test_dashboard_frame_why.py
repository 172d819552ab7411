"""consumers/dashboard/frame_why.py: which frame was clicked; app/frame_reader.py: reading it back from its file."""

import pytest

from app.frame_reader import read_frame
from consumers.dashboard.frame_why import clicked_frame_index
from detector.errors import SourceError


@pytest.mark.parametrize("click,expected", [
    (None, None), ({}, None), ({"points": []}, None), ({"points": [{"y": 0.5}]}, None),
    ({"points": [{"x": 8, "y": 0.5}]}, 8), ({"points": [{"x": 0}]}, 0),
    ({"points": [{"x": 8.5}]}, None), ({"points": [{"x": -4}]}, None),
    ({"points": [{"x": "abc"}]}, None),
])
def test_clicked_frame_index(click, expected):
    assert clicked_frame_index(click) == expected


def test_a_frame_is_read_back_by_its_index(face_video):
    frame = read_frame(str(face_video), 8)
    assert frame.shape == (240, 320, 3)


@pytest.mark.parametrize("index", [42, 1000])
def test_a_frame_past_the_end_is_a_plain_error(face_video, index):
    with pytest.raises(SourceError, match=f"has no frame {index}"):
        read_frame(str(face_video), index)


def test_a_missing_file_is_a_plain_error(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        read_frame(str(tmp_path / "gone.mp4"), 0)
