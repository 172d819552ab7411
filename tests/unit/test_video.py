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


# --- picture_to_bgr ---------------------------------------------------------------------------
def _decoded_face_frame(tmp_path, width=320, height=240):
    from producers.synthetic import write_h264_clip

    path = write_h264_clip(tmp_path / "clip.h264", 3, width, height)
    with av.open(str(path)) as container:
        return next(iter(container.decode(video=0)))


def test_an_untagged_yuv420p_picture_is_converted_by_opencv_straight_into_the_slot(tmp_path):
    from detector.video import picture_to_bgr

    # given a decoded H.264 picture with no colour tags (BT.601 limited range)
    frame = _decoded_face_frame(tmp_path)
    assert frame.format.name == "yuv420p" and frame.colorspace == 2
    reference = frame.to_ndarray(format="bgr24")  # FFmpeg's swscale
    # when it is converted into a slot-like buffer
    out = np.zeros((240, 320, 3), np.uint8)
    image = picture_to_bgr(frame, out)
    # then the pixels are written into that buffer itself, within swscale's rounding
    assert np.shares_memory(image, out) and image.shape == (240, 320, 3)
    difference = np.abs(out.astype(int) - reference)
    assert difference.max() <= 6 and difference.mean() < 2.0
    # and without a buffer it gives the same pixels
    assert np.array_equal(picture_to_bgr(frame), out)


@pytest.mark.parametrize("tags", [{"colorspace": 1}, {"color_range": 2}])
def test_a_bt709_or_full_range_picture_goes_through_swscale(tmp_path, tags):
    from detector.video import picture_to_bgr

    # given a picture tagged BT.709 or full range (OpenCV's I420 conversion is BT.601 limited)
    frame = _decoded_face_frame(tmp_path)
    for name, value in tags.items():
        setattr(frame, name, value)
    # then it is converted exactly as FFmpeg converts it, with or without a buffer
    reference = frame.to_ndarray(format="bgr24")
    out = np.zeros_like(reference)
    assert np.array_equal(picture_to_bgr(frame, out), reference)
    assert np.array_equal(out, reference)
    assert np.array_equal(picture_to_bgr(frame), reference)


def test_a_picture_without_a_pixel_format_is_asked_for_bgr():
    from detector.video import picture_to_bgr

    class Picture:
        width, height = 4, 2

        def to_ndarray(self, format):
            assert format == "bgr24"
            return np.full((2, 4, 3), 7, np.uint8)

    assert (picture_to_bgr(Picture()) == 7).all()
    out = np.zeros((2, 4, 3), np.uint8)
    picture_to_bgr(Picture(), out)
    assert (out == 7).all()


def test_a_source_frame_converts_once_or_straight_into_a_buffer(tmp_path):
    from producers.base import SourceFrame

    reference = _decoded_face_frame(tmp_path)
    expected = reference.to_ndarray(format="bgr24")
    # given a frame still holding the decoder's picture
    frame = SourceFrame(0, 0.0, 0.0, _decoded_face_frame(tmp_path))
    assert frame.shape == (240, 320, 3) and not frame.is_converted
    # when it is written into a buffer, it is not kept converted
    out = np.zeros(frame.shape, np.uint8)
    frame.bgr_into(out)
    assert not frame.is_converted and np.abs(out.astype(int) - expected).max() <= 6
    # when its BGR pixels are read, they are converted once and kept
    first = frame.image_bgr
    assert frame.is_converted and frame.image_bgr is first and np.array_equal(first, out)
    # and a wrong buffer is refused
    with pytest.raises(ValueError, match="expected a"):
        frame.bgr_into(np.zeros((240, 321, 3), np.uint8))
    # an array frame is its own pixels
    pixels = np.full((2, 2, 3), 9, np.uint8)
    array_frame = SourceFrame(1, None, 0.0, pixels)
    assert array_frame.is_converted and array_frame.image_bgr is pixels
    assert array_frame.shape == (2, 2, 3)
