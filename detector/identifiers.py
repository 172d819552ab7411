"""Identifiers that cross a boundary: the stream id pattern, the URL length limit, and the
escaped, bounded form in which any outside text reaches a log line (docs/threat-model.md)."""

from __future__ import annotations

import re

# A stream id names Redis keys and appears in logs, URLs and file names: letters, digits and
# ``. _ : -``, 1..64 characters, not starting with a dot (so never ``.`` or ``..``).
STREAM_ID_PATTERN = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,63}")
STREAM_ID_RULE = "1..64 characters of A-Z a-z 0-9 . _ : - (not starting with '.')"
MAX_URL_CHARS = 4096
# Request ids only address a reply key; uuid4().hex is what our clients send.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
LOG_TEXT_CHARS = 300

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._:-]")


def is_valid_stream_id(value: object) -> bool:
    return isinstance(value, str) and STREAM_ID_PATTERN.fullmatch(value) is not None


def stream_id_problem(value: object) -> str | None:
    """Why ``value`` is not a stream id (one sentence), or None when it is one."""
    if is_valid_stream_id(value):
        return None
    return f"stream id must be {STREAM_ID_RULE}, got {shown(value)}"


def stream_id_from_name(name: str) -> str:
    """A valid stream id made from a file name: unsafe characters become ``_``, cut to 64."""
    cleaned = _UNSAFE_ID_CHARS.sub("_", name).lstrip(".")[:64]
    return cleaned or "stream"


def url_problem(url: object) -> str | None:
    """Why ``url`` cannot name a source (too long, control characters), or None. The URL
    itself is not repeated: it may hold credentials."""
    if not isinstance(url, str) or not url:
        return f"url must be a non-empty string, got {shown(url)}"
    if len(url) > MAX_URL_CHARS:
        return f"url must be at most {MAX_URL_CHARS} characters, got {len(url)}"
    if _CONTROL_CHARS.search(url):
        return "url must not contain control characters (newlines, NUL, …)"
    return None


def escape_text(text: str, limit: int | None = None) -> str:
    """``text`` with control characters (newlines included) written as escapes, and cut to
    ``limit`` characters with a note of how much was left out."""
    escaped = _CONTROL_CHARS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    if limit is not None and len(escaped) > limit:
        return f"{escaped[:limit]}… ({len(escaped) - limit} more characters)"
    return escaped


def shown(value: object, limit: int = LOG_TEXT_CHARS) -> str:
    """An outside value as it may appear in a message or log line: repr'd, escaped, bounded."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int of > 4300 digits, a deeply nested list
        text = f"<{type(value).__name__} that cannot be shown>"
    return escape_text(text, limit)
