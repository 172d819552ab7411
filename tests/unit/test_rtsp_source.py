"""RTSP URL validation and credential scrubbing (no network)."""

from __future__ import annotations

import pytest

from detector.config import config_from_dict
from detector.errors import SourceError
from detector.stream_urls import url_kind
from producers.factory import make_source
from producers.rtsp_source import RtspSource, scrub, validate_rtsp_url


@pytest.mark.parametrize("url", [
    "rtsp://127.0.0.1:8554/cam0",
    "rtsp://user:pw@camera.local/stream1",
    "rtsps://camera.local:322/x",
    "rtsp://[::1]:8554/cam",
])
def test_valid_urls_are_accepted(url):
    validate_rtsp_url(url)


@pytest.mark.parametrize("url", [
    "rtsp://",
    "rtsp:///path",
    "rtsp://host:notaport/x",
    "rtsp://host:99999/x",
    "rtsp://host:0/x",
    "rtsp://ho st/x",
    "http://host/x",
    "rtsp://user:secret@:554/x",
    "rtsp://user:secret@host:99999/x",
    "rtsp://user:secret@host:port/x",
])
def test_malformed_urls_are_refused_without_credentials(url):
    with pytest.raises(SourceError) as info:
        validate_rtsp_url(url)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("", ""),
    ("no url here", "no url here"),
    ("open rtsp://bob:hunter2@cam/x failed", "open rtsp://***@cam/x failed"),
    ("password hunter2 leaked", "password *** leaked"),
])
def test_scrub_removes_url_and_password(text, expected):
    assert scrub(text, "rtsp://bob:hunter2@cam/x") == expected


def test_factory_builds_a_masked_live_rtsp_source():
    config = config_from_dict({"sources": {"rtsp_transport": "udp", "stall_timeout_s": 3}})
    source = make_source("rtsp://bob:hunter2@cam.local:8554/x", "door", config.sources)
    assert isinstance(source, RtspSource)
    assert source.is_live and source.stream_id == "door"
    assert source.display_url == "rtsp://***@cam.local:8554/x"
    assert (source.transport, source.read_timeout_s) == ("udp", 3.0)
    assert url_kind("rtsp://cam/x") == "rtsp"


def test_factory_refuses_a_malformed_rtsp_url():
    with pytest.raises(SourceError, match="malformed"):
        make_source("rtsp://bob:hunter2@/x", "door", config_from_dict({}).sources)


@pytest.mark.parametrize("url", ["rtsp://[::1/x", "file://[", "http://[::1"])
def test_an_unparseable_url_is_a_source_error_not_a_crash(url):
    from detector.errors import SourceError

    with pytest.raises(SourceError, match="malformed URL"):
        url_kind(url)
