"""The control channel: attach / detach / list streams of a running service through Redis.

A client RPUSHes a JSON request on ``<prefix>:control`` and BLPOPs its reply from
``<prefix>:control:reply:<request_id>`` (documented in docs/redis.md)::

    {"schema_version": 1, "request_id": "…", "op": "attach", "url": "clip.mp4", "stream_id": "cam1", "stride": 4}
    {"schema_version": 1, "request_id": "…", "op": "detach", "stream_id": "cam1"}
    reply: {"schema_version": 1, "request_id": "…", "ok": true, "message": "…"}
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any, Callable

import redis

from detector.config import mask_url
from detector.errors import DetectorError
from detector.redis_keys import SCHEMA_VERSION, RedisKeys

log = logging.getLogger(__name__)

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


def send_request(client: redis.Redis, keys: RedisKeys, op: str, stream_id: str,
                 url: str | None = None, stride: int | None = None,
                 timeout_s: float = 15.0) -> dict[str, Any]:
    """Send one request and wait for the service's reply.

    Raises:
        DetectorError: no running service answered within ``timeout_s``.
    """
    request_id = uuid.uuid4().hex
    request = {"schema_version": SCHEMA_VERSION, "request_id": request_id, "op": op,
               "stream_id": stream_id}
    if url is not None:
        request["url"] = url
    if stride is not None:
        request["stride"] = stride
    client.rpush(keys.control, json.dumps(request))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # Short BLPOPs in a loop: redis-py's socket timeout would cut a long one.
        item = client.blpop([keys.control_reply(request_id)], timeout=1)
        if item is not None:
            return json.loads(item[1])
    client.lrem(keys.control, 1, json.dumps(request))
    raise DetectorError(f"no running service answered the {op} request within {timeout_s:.0f} s "
                        "(is `deepfake-detector run` running with the same Redis?)")


class ControlServer:
    """Serves control requests for a running service in a background thread.

    Args:
        client: Redis client.
        keys: key templates.
        attach: ``attach(stream_id, url, stride) -> message``; raises DetectorError to refuse.
        detach: ``detach(stream_id) -> message``; raises DetectorError to refuse.
    """

    def __init__(self, client: redis.Redis, keys: RedisKeys,
                 attach: Callable[[str, str, int | None], str],
                 detach: Callable[[str], str]):
        self._client = client
        self._keys = keys
        self._attach = attach
        self._detach = detach
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="control", daemon=True)

    def start(self) -> "ControlServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def handle(self, raw: bytes) -> dict[str, Any]:
        request_id = None
        try:
            try:
                request_id = json.loads(raw).get("request_id")
            except Exception:  # noqa: BLE001 - answered below as malformed
                request_id = None
            request = parse_request(raw)
            if request["op"] == "attach":
                message = self._attach(request["stream_id"], request["url"], request.get("stride"))
                log.info("control: attached %s (%s)", request["stream_id"], mask_url(request["url"]))
            else:
                message = self._detach(request["stream_id"])
                log.info("control: detached %s", request["stream_id"])
            reply = {"ok": True, "message": message}
        except DetectorError as exc:
            log.warning("control request refused: %s", exc)
            reply = {"ok": False, "message": str(exc)}
        reply = {"schema_version": SCHEMA_VERSION, "request_id": request_id, **reply}
        if isinstance(request_id, str) and request_id:
            pipe = self._client.pipeline(transaction=False)
            pipe.rpush(self._keys.control_reply(request_id), json.dumps(reply))
            pipe.expire(self._keys.control_reply(request_id), REPLY_TTL_S)
            pipe.execute()
        return reply

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._client.blpop([self._keys.control], timeout=1)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                self._stop.wait(1.0)
                continue
            if item is not None:
                try:
                    self.handle(item[1])
                except (redis.RedisError, OSError) as exc:
                    log.warning("control reply could not be written: %s", exc)
