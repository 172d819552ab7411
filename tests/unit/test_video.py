"""detector/video.py: one way to open a video with PyAV, one plain sentence when it cannot."""

from __future__ import annotations

import av
import numpy as np
import pytest

from detector.errors import SourceError
from detector.video import open_video
from producers.synthetic import write_video


def _write_audio_only(path) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_opens_a_video_and_returns_its_first_video_stream(tmp_path):
    # given a 3-frame video made by PyAV
    path = tmp_path / "clip.mp4"
    write_video(path, 3, width=64, height=48)
    # when it is opened
    container, stream = open_video(path, "clip.mp4")
    # then the stream is its video stream, decoded with FFmpeg's threads
    with container:
        assert stream.type == "video" and stream.thread_type.name == "AUTO"
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        assert sum(1 for _ in container.decode(stream)) == 3


@pytest.mark.parametrize("make, kwargs, expected", [
    (lambda p: p.write_bytes(b"just some text"), {}, "clip.mp4: not a readable video ("),
    (lambda p: p.write_bytes(b"just some text"), {"failure": "not a video file"},
     "clip.mp4: not a video file ("),
    (lambda p: None, {"failure": "cannot connect"}, "clip.mp4: cannot connect (No such file or directory)"),
    (_write_audio_only, {}, "clip.mp4: not a readable video (no video stream)"),
    (_write_audio_only, {"no_stream": "no video stream"}, "clip.mp4: no video stream"),
])
def test_a_video_that_cannot_be_opened_is_one_sentence(tmp_path, make, kwargs, expected):
    # given a text file, a missing file or a file without video, named by its label
    path = tmp_path / ("audio.wav" if make is _write_audio_only else "clip.mp4")
    make(path)
    # when it is opened, then a SourceError says what went wrong under the label, not the path
    with pytest.raises(SourceError) as raised:
        open_video(path, "clip.mp4", **kwargs)
    assert str(raised.value).startswith(expected)
    assert str(tmp_path) not in str(raised.value)


def test_reason_hook_sees_the_exception(tmp_path):
    # given a reason function (the RTSP source strips credentials here)
    with pytest.raises(SourceError, match=r"^cam: cannot connect \(masked\)$"):
        open_video(tmp_path / "missing", "cam", failure="cannot connect", reason=lambda exc: "masked")
