"""`fetch-yunet`: copies from a local file; a bad source is a plain error and leaves nothing."""

import pytest

from app.fetch import fetch_yunet
from detector.errors import DetectorError


def test_fetch_from_a_local_copy(tmp_path):
    source = tmp_path / "yunet.onnx"
    source.write_bytes(b"\x08" * 20_000)
    target = tmp_path / "models" / "face_detection_yunet.onnx"
    assert fetch_yunet(target, source=str(source)) == 0
    assert target.read_bytes() == source.read_bytes()
    assert fetch_yunet(target, source=str(source)) == 0  # already there: nothing to do


@pytest.mark.parametrize("content", [None, b"tiny"])
def test_a_bad_source_fails_clearly_and_leaves_no_file(tmp_path, content):
    source = tmp_path / "yunet.onnx"
    if content is not None:
        source.write_bytes(content)
    target = tmp_path / "face_detection_yunet.onnx"
    with pytest.raises(DetectorError):
        fetch_yunet(target, source=str(source) if content else "file:///nonexistent/yunet.onnx")
    assert not target.exists() and not target.with_suffix(".part").exists()
