"""The attach / detach form's pure parts: what the user typed → a control request's fields."""

from __future__ import annotations

from urllib.parse import urlsplit

from detector.stream_urls import default_stream_id, service_target
from detector.url_mask import mask_url

__all__ = ["attach_target", "default_stream_id", "mask_in_text"]


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
    return service_target(text)


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
