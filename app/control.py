"""The control channel's two ends: the client that sends a request, the server in `run` that
serves it. The request and reply shapes are in ``detector/control.py`` (and docs/redis.md)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any, Callable

import redis

from detector.config import mask_url
from detector.control import REPLY_TTL_S, make_reply, make_request, parse_request
from detector.errors import DetectorError
from detector.redis_keys import RedisKeys

log = logging.getLogger(__name__)


def send_request(client: redis.Redis, keys: RedisKeys, op: str, stream_id: str,
                 url: str | None = None, stride: int | None = None,
                 timeout_s: float = 15.0) -> dict[str, Any]:
    """Send one request and wait for the service's reply.

    Raises:
        DetectorError: no running service answered within ``timeout_s``.
    """
    request_id = uuid.uuid4().hex
    request = make_request(request_id, op, stream_id, url=url, stride=stride)
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
            ok = True
        except DetectorError as exc:
            log.warning("control request refused: %s", exc)
            ok, message = False, str(exc)
        reply = make_reply(request_id, ok, message)
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
