"""The attach / detach form's pure parts: what the user typed → a control request's fields."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from detector.url_mask import mask_url

LIVE_PREFIXES = ("rtsp://", "rtsps://", "webcam:", "/dev/video")


def attach_target(text: str) -> str:
    """Normalise the form's source field.

    ``"0"`` → ``"webcam:0"``; URLs (``rtsp://…``) and ``webcam:N`` pass through; anything else
    is a file path, made absolute because the service may run in another folder.

    Raises:
        ValueError: the field is empty.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("expected a file path, rtsp:// URL or webcam index, got nothing")
    if text.isdigit():
        return f"webcam:{int(text)}"
    if "://" in text or text.startswith(LIVE_PREFIXES):
        return text
    return str(Path(text).expanduser().resolve())


def default_stream_id(target: str) -> str:
    """A stream id when the form leaves it empty: the file or URL path's last name
    (``driving`` for driving.mp4, ``live`` for rtsp://cam/live), ``webcam0`` for webcam:0."""
    if target.startswith("webcam:"):
        return "webcam" + target[len("webcam:"):]
    path = urlsplit(target).path if "://" in target else target
    stem = Path(path).stem
    return stem or (urlsplit(target).hostname or "stream")


def mask_in_text(text: str, url: str) -> str:
    """Replace ``url`` (and its bare credentials) in a message with the masked form, so that a
    service reply that echoes the URL never shows a password back."""
    masked = mask_url(url)
    text = text.replace(url, masked)
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    if parts.password:
        text = text.replace(parts.password, "***")
    if parts.username:
        text = text.replace(f"{parts.username}:", "***:").replace(f"{parts.username}@", "***@")
    return text
