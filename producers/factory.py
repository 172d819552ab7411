"""Turn a stream URL from the config, the CLI or the control channel into a Source.

Kinds are picked from an explicit table keyed by URL scheme: a plain path or ``file://`` is a
file; live kinds (``rtsp://``, ``webcam:N``, ``/dev/videoN``) register themselves in ``LIVE_KINDS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from detector.config import Config, mask_url
from detector.errors import SourceError
from producers.base import Source
from producers.file_source import FileSource
from producers.rtsp_source import make_rtsp_source
from producers.webcam_source import make_webcam_source

SourceFactory = Callable[[str, str, Config], Source]

# kind (URL scheme) → factory for live sources.
LIVE_KINDS: dict[str, SourceFactory] = {
    "rtsp": make_rtsp_source,
    "rtsps": make_rtsp_source,
    "webcam": make_webcam_source,
}


def source_kind(url: str) -> str:
    """``file``, or the live kind (``rtsp``, ``webcam``) a URL names."""
    if url.startswith("webcam:") or url.startswith("/dev/video"):
        return "webcam"
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme in ("", "file"):
        return "file"
    return scheme


def make_source(url: str, stream_id: str, config: Config) -> Source:
    """Build the source for ``url``.

    Raises:
        SourceError: an unsupported or malformed URL (credentials masked in the message).
    """
    kind = source_kind(url)
    if kind == "file":
        path = urlsplit(url).path if url.startswith("file://") else url
        return FileSource(Path(path), stream_id)
    factory = LIVE_KINDS.get(kind)
    if factory is None:
        raise SourceError(f"{mask_url(url)}: unsupported stream kind {kind!r}")
    return factory(url, stream_id, config)
