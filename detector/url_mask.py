"""Credentials never leave in a URL: the one function that masks them before a URL is logged,
published or shown."""

from __future__ import annotations

from urllib.parse import urlsplit


def mask_url(url: str) -> str:
    """Hide credentials in a URL: ``rtsp://user:pw@host/p`` → ``rtsp://***@host/p``."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port:  # raises ValueError for a malformed port
            host = f"{host}:{parts.port}"
    except ValueError:
        return "***"
    return parts._replace(netloc=f"***@{host}").geturl()
