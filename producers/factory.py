"""Turn a stream URL from the config, the CLI or the control channel into a Source.

Kinds are picked from an explicit table keyed by URL scheme: a plain path or ``file://`` is a
file; live kinds (``rtsp://``, ``webcam:N``, ``/dev/videoN``) register themselves in ``LIVE_KINDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from detector.config import SourcesConfig
from detector.errors import SourceError
from detector.identifiers import shown, url_problem
from detector.stream_urls import url_kind
from detector.url_mask import mask_url
from producers.base import Source
from producers.file_source import FileSource, check_video_file
from producers.rtsp_source import make_rtsp_source
from producers.webcam_source import make_webcam_source

SourceFactory = Callable[[str, str, SourcesConfig], Source]

# kind (URL scheme) → factory for live sources.
LIVE_KINDS: dict[str, SourceFactory] = {
    "rtsp": make_rtsp_source,
    "rtsps": make_rtsp_source,
    "webcam": make_webcam_source,
}


def _file_path(url: str) -> Path:
    try:
        return Path(urlsplit(url).path if url.startswith("file://") else url)
    except ValueError as exc:
        raise SourceError(f"{shown(mask_url(url))}: malformed URL ({exc})") from None


def check_source(url: str) -> None:
    """Refuse at once what can be checked without connecting: a file that is missing or is not
    a video. Live URLs are checked by connecting (their stream then shows ``reconnecting``).

    Raises:
        SourceError: the file cannot be opened as a video (the reason says why).
    """
    problem = url_problem(url)
    if problem:
        raise SourceError(problem)
    if url_kind(url) == "file":
        check_video_file(_file_path(url))


def make_source(url: str, stream_id: str, sources: SourcesConfig) -> Source:
    """Build the source for ``url``.

    Raises:
        SourceError: an unsupported, malformed, over-long URL or one with control characters
            (credentials masked in the message).
    """
    problem = url_problem(url)
    if problem:
        raise SourceError(problem)
    kind = url_kind(url)
    if kind == "file":
        return FileSource(_file_path(url), stream_id)
    factory = LIVE_KINDS.get(kind)
    if factory is None:
        raise SourceError(f"{shown(mask_url(url))}: unsupported stream kind {shown(kind)}")
    return factory(url, stream_id, sources)
