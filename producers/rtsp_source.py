"""RTSP cameras read with PyAV/FFmpeg: TCP by default, open and read timeouts, credentials masked."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import av

from detector.config import SourcesConfig
from detector.errors import SourceError
from detector.url_mask import mask_url
from detector.video import open_video
from producers.base import SourceFrame

log = logging.getLogger(__name__)

RTSP_SCHEMES = ("rtsp", "rtsps")


def validate_rtsp_url(url: str) -> None:
    """Reject URLs that can never work (no host, bad port, wrong scheme).

    Raises:
        SourceError: the URL is malformed; the message shows it with credentials masked.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise SourceError(f"{mask_url(url)}: malformed RTSP URL ({exc})") from None
    if parts.scheme not in RTSP_SCHEMES:
        raise SourceError(f"{mask_url(url)}: expected an rtsp:// or rtsps:// URL")
    if not parts.hostname:
        raise SourceError(f"{mask_url(url)}: malformed RTSP URL (no host)")
    if port == 0:
        raise SourceError(f"{mask_url(url)}: malformed RTSP URL (port 0)")
    if any(ch.isspace() for ch in url):
        raise SourceError(f"{mask_url(url)}: malformed RTSP URL (contains whitespace)")


class RtspSource:
    """One RTSP camera. ``open`` and every read give up after their timeouts, so a dead camera
    raises ``SourceError`` instead of blocking; the live reader loop then reconnects.

    Args:
        url: ``rtsp://[user:password@]host[:port]/path``.
        stream_id: id to publish under.
        transport: ``tcp`` (default: no packet loss, firewall-friendly) or ``udp``.
        open_timeout_s: give up connecting after this long.
        read_timeout_s: give up when no packet arrives for this long (the stall timeout).

    Raises:
        SourceError: the URL is malformed (it can never work).
    """

    is_live = True

    def __init__(self, url: str, stream_id: str, transport: str = "tcp",
                 open_timeout_s: float = 10.0, read_timeout_s: float = 20.0):
        validate_rtsp_url(url)
        if transport not in ("tcp", "udp"):
            raise SourceError(f"expected rtsp_transport 'tcp' or 'udp', got {transport!r}")
        self._url = url
        self.stream_id = stream_id
        self.display_url = mask_url(url)
        self.transport = transport
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self._container = None
        self._stream = None

    def open(self) -> None:
        self.close()
        # FFmpeg's own socket timeout (µs) covers connect and each read inside the demuxer
        # (FFmpeg >= 5 calls it "timeout"; the old "stimeout" is gone, and PyAV >= 12 bundles
        # FFmpeg >= 6); PyAV's (open, read) timeout interrupts anything else that blocks.
        socket_timeout_us = str(int(max(self.open_timeout_s, self.read_timeout_s) * 1_000_000))
        options = {"rtsp_transport": self.transport, "timeout": socket_timeout_us}
        self._container, self._stream = open_video(
            self._url, self.display_url, failure="cannot connect", no_stream="no video stream",
            options=options, timeout=(self.open_timeout_s, self.read_timeout_s), reason=self._reason,
        )
        log.info("stream %s: connected to %s (%s over %s)", self.stream_id, self.display_url,
                 self._stream.codec_context.name, self.transport)

    def frames(self) -> Iterator[SourceFrame]:
        """Yield decoded frames until the camera ends the stream or a read times out.

        Raises:
            SourceError: a read failed or timed out, or packets came without a decodable frame
                for ``read_timeout_s``.
        """
        if self._container is None:
            self.open()
        index = 0
        last_frame_s = time.monotonic()
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    # converted to BGR only if the hub samples it (SourceFrame.image_bgr)
                    yield SourceFrame(index, frame.time, time.time(), frame)
                    index += 1
                    last_frame_s = time.monotonic()
                if time.monotonic() - last_frame_s > self.read_timeout_s:
                    raise SourceError(f"{self.display_url}: packets but no decodable frame for "
                                      f"{self.read_timeout_s:.0f} s")
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(
                f"{self.display_url}: reading failed after {index} frames ({self._reason(exc)})"
            ) from None

    def close(self) -> None:
        if self._container is not None:
            container, self._container, self._stream = self._container, None, None
            try:
                container.close()
            except (av.error.FFmpegError, OSError) as exc:
                log.debug("stream %s: close failed: %s", self.stream_id, self._reason(exc))

    def _reason(self, exc: BaseException) -> str:
        """A short reason without the URL (FFmpeg errors embed it, credentials included)."""
        text = getattr(exc, "strerror", None) or exc.__class__.__name__
        return scrub(str(text), self._url)


def scrub(text: str, url: str) -> str:
    """Replace ``url`` and its password (if any) in ``text`` with their masked forms."""
    text = text.replace(url, mask_url(url))
    try:
        parts = urlsplit(url)
        secrets = [parts.password, parts.username] if parts.password else [parts.username]
    except ValueError:
        secrets = []
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def make_rtsp_source(url: str, stream_id: str, sources: SourcesConfig) -> RtspSource:
    """``LIVE_KINDS`` factory: an RTSP source with the ``[sources]`` timeouts and transport."""
    return RtspSource(url, stream_id, transport=sources.rtsp_transport,
                      open_timeout_s=sources.open_timeout_s,
                      read_timeout_s=sources.stall_timeout_s)
