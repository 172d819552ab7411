"""app/upload.py: the checks that run before any decoding or scoring."""

import base64

import cv2
import numpy as np
import pytest

from app.upload import (
    UploadCheck,
    check_upload,
    decode_contents,
    decoded_size,
    read_frames,
    score_frames,
    sniff_kind,
)
from detector.errors import SourceError
from detector.face_detect import FaceBox
from detector.wire import FaceResult

PNG_HEAD = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
JPEG_HEAD = b"\xff\xd8\xff\xe0" + b"\0" * 32
MP4_HEAD = b"\0\0\0\x18ftypisom" + b"\0" * 32
WEBM_HEAD = b"\x1a\x45\xdf\xa3" + b"\0" * 32


def data_url(content: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64," + base64.b64encode(content).decode()


@pytest.mark.parametrize("content", [b"", b"a", b"ab", b"abc", b"abcd", bytes(range(256)) * 3])
def test_decoded_size_matches_the_real_length(content):
    assert decoded_size(base64.b64encode(content).decode()) == len(content)


@pytest.mark.parametrize("head,expected", [
    (PNG_HEAD, "image"), (JPEG_HEAD, "image"), (b"BM" + b"\0" * 20, "image"),
    (b"RIFF\0\0\0\0WEBPVP8 ", "image"), (b"RIFF\0\0\0\0AVI LIST", "video"),
    (MP4_HEAD, "video"), (WEBM_HEAD, "video"), (b"hello world", None), (b"", None),
])
def test_sniff_kind_reads_magic_numbers(head, expected):
    assert sniff_kind(head) == expected


@pytest.mark.parametrize("filename,content,kind", [
    ("face.png", PNG_HEAD, "image"), ("FACE.JPG", JPEG_HEAD, "image"),
    ("clip.mp4", MP4_HEAD, "video"), ("clip.webm", WEBM_HEAD, "video"),
    ("dir/clip.mov", MP4_HEAD, "video"),
])
def test_accepted_uploads(filename, content, kind):
    check = check_upload(filename, data_url(content), max_bytes=1000)
    assert check == UploadCheck(filename.split("/")[-1], kind, len(content))


@pytest.mark.parametrize("filename,contents,max_bytes,message", [
    (None, None, 1000, "no file was uploaded"),
    ("", data_url(PNG_HEAD), 1000, "no file was uploaded"),
    ("notes.txt", data_url(b"hello"), 1000, "unsupported file type .txt"),
    ("README", data_url(b"hello"), 1000, "unsupported file type (no extension)"),
    ("empty.mp4", data_url(b""), 1000, "the file is empty"),
    ("big.mp4", data_url(MP4_HEAD * 100), 1000, "the limit is 0.001 MB"),
    ("clip.mp4", data_url(b"not a video, just text"), 1000, "not a readable video"),
    ("photo.png", data_url(MP4_HEAD), 1000, "not a readable image"),
    ("clip.mp4", "AAAA", 1000, "base64 data URL"),
    ("clip.mp4", "data:video/mp4;base64,@@@@@@@@@@@@@@@@@@@@@@@@", 1000, "corrupted"),
])
def test_refused_uploads_say_why_in_one_sentence(filename, contents, max_bytes, message):
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_upload(filename, contents, max_bytes)


def test_the_size_limit_is_checked_without_decoding_the_payload():
    # a payload that would not even decode is refused for its size first
    with pytest.raises(SourceError, match="limit"):
        check_upload("big.mp4", "data:video/mp4;base64," + "!" * 4000, max_bytes=1000)


def test_an_image_is_read_as_one_frame():
    image = np.full((20, 30, 3), 128, dtype=np.uint8)
    ok, png = cv2.imencode(".png", image)
    frames = read_frames(UploadCheck("x.png", "image", len(png)), png.tobytes(), stride=4)
    assert [index for index, _ in frames] == [0]
    assert frames[0][1].shape == (20, 30, 3)


def test_a_broken_image_names_the_upload_not_a_temp_path():
    with pytest.raises(SourceError, match="^x.png: not a readable image$"):
        read_frames(UploadCheck("x.png", "image", 10), PNG_HEAD, stride=1)


def test_a_broken_video_names_the_upload_not_a_temp_path():
    with pytest.raises(SourceError) as caught:
        read_frames(UploadCheck("clip.mp4", "video", 40), MP4_HEAD, stride=1)
    assert str(caught.value).startswith("clip.mp4: ")
    assert "deepfake-upload-" not in str(caught.value)


class FakeScorer:
    """Finds one face in frames whose first pixel is non-zero; its probability is that pixel/255."""

    class card:
        input_size_px = 8

    def detect(self, frames):
        return [[FaceBox((0.0, 0.0, 4.0, 4.0), 0.9)] if f[0, 0, 0] else [] for f in frames]

    def score_frames(self, frames, faces):
        return [[FaceResult(b.box_xyxy, b.confidence, f[0, 0, 0] / 255) for b in fs]
                for f, fs in zip(frames, faces)], None

    def crops(self, frames, faces):
        n = sum(len(fs) for fs in faces)
        return np.zeros((n, 8, 8, 3), dtype=np.uint8)


def frame(value: int) -> np.ndarray:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[0, 0, 0] = value
    return image


def test_scoring_keeps_no_face_frames_as_none_and_the_most_suspicious_crops():
    frames = [(i * 4, frame(v)) for i, v in enumerate([0, 51, 255, 0, 102] * 3)]
    result = score_frames(FakeScorer(), UploadCheck("c.mp4", "video", 1), frames, threshold=0.5,
                          max_crops=2)
    assert result.frame_indices == tuple(i * 4 for i in range(15))
    assert result.frame_scores[:5] == (None, 0.2, 1.0, None, 0.4)
    assert result.faces_found == 9
    assert result.score == pytest.approx((0.2 + 1.0 + 0.4) / 3)
    assert result.verdict == "FAKE"
    assert [c.fake_probability for c in result.crops] == [1.0, 1.0]


def test_no_face_anywhere_is_no_face_not_a_number():
    result = score_frames(FakeScorer(), UploadCheck("c.png", "image", 1), [(0, frame(0))], 0.5)
    assert result.score is None and result.verdict == "NO_FACE" and result.crops == ()


def test_decode_contents_round_trips():
    assert decode_contents(data_url(b"\x00\x01payload")) == b"\x00\x01payload"


def test_a_long_video_is_sampled_by_stride_then_spread(face_video):
    data = face_video.read_bytes()
    check = check_upload("driving.mp4", data_url(data), max_bytes=len(data))
    frames = read_frames(check, data, stride=4, max_frames=3)
    assert [index for index, _ in frames] == [0, 20, 40]
    assert frames[0][1].shape == (240, 320, 3)


def test_the_upload_scorer_scores_a_face_video_and_explains_its_crops(make_config, face_video):
    from app.upload import UploadScorer

    scorer = UploadScorer(make_config(dashboard={"max_upload_mb": 5}))
    result = scorer.score("driving.mp4", data_url(face_video.read_bytes()))
    assert result.frame_indices == tuple(range(0, 42, 4))
    assert result.faces_found >= 1 and result.verdict in ("REAL", "FAKE")
    assert result.threshold == 0.5
    overlays = scorer.explain(result.crops[:2])
    assert [crop for crop, _ in overlays] == list(result.crops[:2])
    assert all(overlay.shape == (64, 64, 3) for _, overlay in overlays)


def png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG that declares ``width``×``height`` (what a bomb looks like)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\0" * 64)


def _encoded(extension: str, width: int, height: int) -> bytes:
    return cv2.imencode(extension, np.zeros((height, width, 3), np.uint8))[1].tobytes()


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".webp"])
def test_image_size_is_read_from_the_header(extension):
    from app.image_header import image_size

    assert image_size(_encoded(extension, 37, 21)) == (37, 21)


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"RIFF....WEBP", b"GIF89a"])
def test_image_size_of_a_truncated_or_unknown_header_is_none(data):
    from app.image_header import image_size

    assert image_size(data) is None


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding():
    # 30000×30000 declared in a few bytes; decoding it would take 2.7 GB
    with pytest.raises(SourceError, match="30000×30000 pixels is over the limit of 40,000,000"):
        read_frames(UploadCheck("bomb.png", "image", 100), png_header(30000, 30000), stride=1)


def test_the_pixel_limit_is_a_setting():
    png = _encoded(".png", 100, 50)
    with pytest.raises(SourceError, match="dashboard.max_upload_pixels"):
        read_frames(UploadCheck("x.png", "image", len(png)), png, stride=1, max_pixels=4999)
    assert read_frames(UploadCheck("x.png", "image", len(png)), png, stride=1, max_pixels=5000)


def test_a_long_video_is_decoded_only_up_to_its_last_wanted_frame(tmp_path):
    from app.upload import decode_sampled
    from producers.synthetic import write_video

    path = write_video(tmp_path / "long.mp4", 600, 64, 48, with_face=False)
    frames, decoded = decode_sampled(path, "long.mp4", stride=4, max_frames=5, max_pixels=10**6,
                                     max_decoded_frames=200)
    assert len(frames) == 5 and decoded <= 200
    assert [index for index, _ in frames][-1] == decoded - 1  # stopped right after the last
    with pytest.raises(SourceError, match="64×48 pixels is over the limit"):
        decode_sampled(path, "long.mp4", 4, 5, max_pixels=1000, max_decoded_frames=200)
