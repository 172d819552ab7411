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
from detector.identifiers import REQUEST_ID_PATTERN, shown, stream_id_problem, url_problem
from detector.redis_keys import SCHEMA_VERSION

REPLY_TTL_S = 60
OPS = ("attach", "detach")
MAX_REQUEST_BYTES = 64 * 1024
MAX_REPLY_MESSAGE_CHARS = 500


def parse_request(raw: bytes | str) -> dict[str, Any]:
    """Validate a control request.

    Raises:
        DetectorError: malformed JSON, wrong version, unknown op or missing fields.
    """
    if len(raw) > MAX_REQUEST_BYTES:
        raise DetectorError(f"control request must be at most {MAX_REQUEST_BYTES} bytes, got {len(raw)}")
    try:
        request = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # ValueError: JSON, 4300+ digit ints
        raise DetectorError("control request is not JSON") from None
    if not isinstance(request, dict):
        raise DetectorError("control request must be a JSON object")
    version = request.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version != SCHEMA_VERSION:
        raise DetectorError(f"expected schema_version {SCHEMA_VERSION}, got {shown(version)}")
    if not isinstance(request.get("op"), str) or request["op"] not in OPS:
        raise DetectorError(f"op must be one of {OPS}, got {shown(request.get('op'))}")
    problem = stream_id_problem(request.get("stream_id"))
    if problem:
        raise DetectorError(problem)
    if request["op"] == "attach":
        problem = url_problem(request.get("url"))
        if problem:
            raise DetectorError(f"attach: {problem}")
        stride = request.get("stride")
        if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool) or stride < 1):
            raise DetectorError(f"stride must be an integer >= 1, got {shown(stride)}")
    return request


def request_id_of(raw: bytes | str) -> str | None:
    """The id a reply is addressed to, when the request carries a usable one (garbage has
    none: it is refused without a reply)."""
    try:
        request_id = json.loads(raw).get("request_id")
    except Exception:  # noqa: BLE001 - any garbage means "no id"
        return None
    if isinstance(request_id, str) and REQUEST_ID_PATTERN.fullmatch(request_id):
        return request_id
    return None


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
