"""The control channel: attach / detach / list streams of a running service through Redis.

A client RPUSHes a JSON request on ``<prefix>:control`` and BLPOPs its reply from
``<prefix>:control:reply:<request_id>`` (documented in docs/redis.md)::

    {"schema_version": 1, "request_id": "…", "op": "attach", "url": "clip.mp4", "stream_id": "cam1", "stride": 4}
    {"schema_version": 1, "request_id": "…", "op": "detach", "stream_id": "cam1"}
    reply: {"schema_version": 1, "request_id": "…", "ok": true, "message": "…"}
"""

from __future__ import annotations

import json
from typing import Any

from detector.errors import DetectorError
from detector.redis_keys import SCHEMA_VERSION

REPLY_TTL_S = 60
OPS = ("attach", "detach")


def parse_request(raw: bytes | str) -> dict[str, Any]:
    """Validate a control request.

    Raises:
        DetectorError: malformed JSON, wrong version, unknown op or missing fields.
    """
    try:
        request = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DetectorError("control request is not JSON") from None
    if not isinstance(request, dict):
        raise DetectorError("control request must be a JSON object")
    if request.get("schema_version") != SCHEMA_VERSION:
        raise DetectorError(f"expected schema_version {SCHEMA_VERSION}, got {request.get('schema_version')!r}")
    if request.get("op") not in OPS:
        raise DetectorError(f"op must be one of {OPS}, got {request.get('op')!r}")
    stream_id = request.get("stream_id")
    if not isinstance(stream_id, str) or not stream_id or len(stream_id) > 200:
        raise DetectorError("stream_id must be a non-empty string of at most 200 characters")
    if request["op"] == "attach":
        if not isinstance(request.get("url"), str) or not request["url"]:
            raise DetectorError("attach needs a url")
        stride = request.get("stride")
        if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool) or stride < 1):
            raise DetectorError(f"stride must be an integer >= 1, got {stride!r}")
    return request


def make_request(request_id: str, op: str, stream_id: str, url: str | None = None,
                 stride: int | None = None) -> dict[str, Any]:
    """One control request as the client sends it (``url`` and ``stride`` only when given)."""
    request: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "request_id": request_id,
                               "op": op, "stream_id": stream_id}
    if url is not None:
        request["url"] = url
    if stride is not None:
        request["stride"] = stride
    return request


def make_reply(request_id: Any, ok: bool, message: str) -> dict[str, Any]:
    """One control reply as the service sends it."""
    return {"schema_version": SCHEMA_VERSION, "request_id": request_id, "ok": ok,
            "message": message}
