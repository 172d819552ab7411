"""What a stream URL names: its kind (file or a live kind), its default stream id, and the form
the service is sent (files made absolute). The CLI, the dashboard form and the producers all ask
here, so they agree."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from detector.errors import SourceError
from detector.identifiers import shown, stream_id_from_name
from detector.url_mask import mask_url

FILE = "file"
WEBCAM = "webcam"
LIVE_PREFIXES = ("rtsp://", "rtsps://", "webcam:", "/dev/video")


def url_kind(url: str) -> str:
    """``file``, or the live kind a URL names (``rtsp``, ``rtsps``, ``webcam``, or another scheme).

    Raises:
        SourceError: the URL cannot be parsed (``rtsp://[::1/x``).
    """
    if url.startswith("webcam:") or url.startswith("/dev/video"):
        return WEBCAM
    try:
        scheme = urlsplit(url).scheme if "://" in url else ""
    except ValueError as exc:
        raise SourceError(f"{shown(mask_url(url))}: malformed URL ({exc})") from None
    if scheme in ("", FILE):
        return FILE
    return scheme


def is_live_url(url: str) -> bool:
    """A camera or network stream (not a file): ``rtsp://…``, ``webcam:N``, ``/dev/videoN``."""
    return "://" in url and not url.startswith("file://") or url.startswith(LIVE_PREFIXES)


def service_target(url: str) -> str:
    """The URL as the service is sent it: live URLs unchanged, a file path made absolute
    (``~`` expanded) because the service may run in another folder."""
    if "://" in url or url.startswith(LIVE_PREFIXES):
        return url
    return str(Path(url).expanduser().resolve())


def default_stream_id(url: str) -> str:
    """A stream's id when none is given: the file or URL path's last name without extension
    (``driving`` for driving.mp4, ``live`` for rtsp://cam/live), else the host (``cam`` for
    rtsp://cam:554/); ``webcamN`` for webcam:N. Characters outside the stream id pattern become
    ``_`` and the id is cut to 64 (:func:`detector.identifiers.stream_id_from_name`)."""
    if url.startswith("webcam:"):
        return stream_id_from_name(WEBCAM + url[len("webcam:"):])
    try:
        parts = urlsplit(url) if "://" in url else None
    except ValueError:
        parts = None
    path = parts.path if parts is not None else url
    stem = Path(path).stem or Path(path).name
    return stream_id_from_name(stem or (parts.hostname if parts is not None and parts.hostname
                                        else "stream"))
