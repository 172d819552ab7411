"""The control channel's two ends: the client that sends a request, the server in `run` that
serves it. The request and reply shapes are in ``detector/control.py`` (and docs/redis.md)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from detector.control import (
    MAX_REPLY_MESSAGE_CHARS,
    REPLY_TTL_S,
    make_reply,
    make_request,
    parse_request,
    request_id_of,
)
from detector.errors import DetectorError
from detector.identifiers import escape_text, shown
from detector.redis_keys import RedisKeys
from detector.url_mask import mask_url

log = logging.getLogger(__name__)


def send_request(client: redis.Redis, keys: RedisKeys, op: str, stream_id: str,
                 url: str | None = None, stride: int | None = None,
                 timeout_s: float = 15.0) -> dict[str, Any]:
    """Send one request and wait for the service's reply.

    Without a service heartbeat (``<prefix>:service``) nothing is sent: no service would answer.
    A reply slower than a second is announced once (logged at WARNING) with what it waits for.

    Raises:
        DetectorError: no service heartbeat, or no running service answered within ``timeout_s``.
    """
    beat = client.get(keys.service)
    if beat is None:
        raise DetectorError(f"no service is running on this Redis (no heartbeat at {keys.service}): "
                            "start `deepfake-detector run` with the same Redis first")
    try:
        pid = json.loads(beat).get("pid", "?")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        pid = "?"
    request_id = uuid.uuid4().hex
    request = make_request(request_id, op, stream_id, url=url, stride=stride)
    client.rpush(keys.control, json.dumps(request))
    deadline = time.monotonic() + timeout_s
    waited = False
    while time.monotonic() < deadline:
        # Short BLPOPs in a loop: redis-py's socket timeout would cut a long one.
        item = client.blpop([keys.control_reply(request_id)], timeout=1)
        if item is not None:
            return json.loads(item[1])
        if not waited:
            waited = True
            log.warning("waiting up to %.0f s for the service (pid %s) to answer the %s request",
                        timeout_s, pid, op)
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
        self._thread: threading.Thread | None = None
        self.requests_failed = 0
        self.restarts = 0

    def start(self) -> ControlServer:
        self._thread = threading.Thread(target=self._loop, name="control", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def supervise(self) -> None:
        """Restart the loop if it died (called by the service's main loop, like the workers)."""
        if not self._stop.is_set() and not self.is_alive:
            self.restarts += 1
            log.error("control loop died; restarting it (restart %d)", self.restarts)
            self.start()

    def handle(self, raw: bytes) -> dict[str, Any]:
        """Answer one request. Any failure of the request, expected or not, is its error reply."""
        request_id = request_id_of(raw)
        try:
            request = parse_request(raw)
            if request["op"] == "attach":
                message = self._attach(request["stream_id"], request["url"], request.get("stride"))
                log.info("control: attached %s (%s)", request["stream_id"], shown(mask_url(request["url"])))
            else:
                message = self._detach(request["stream_id"])
                log.info("control: detached %s", request["stream_id"])
            ok = True
        except DetectorError as exc:
            self.requests_failed += 1
            log.warning("control request %s refused: %s", shown(request_id), exc)
            ok, message = False, str(exc)
        except Exception as exc:  # a bug in one request must not end the channel
            self.requests_failed += 1
            log.exception("control request %s failed", shown(request_id))
            ok, message = False, f"internal error: {exc.__class__.__name__}: {exc}"
        reply = make_reply(request_id, ok, escape_text(str(message), MAX_REPLY_MESSAGE_CHARS))
        if request_id is not None:
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
            if item is None:
                continue
            try:
                self.handle(item[1])
            except (redis.RedisError, OSError) as exc:
                log.warning("control reply could not be written: %s", exc)
            except Exception:  # the loop outlives any one request
                log.exception("control loop failed on one request; going on")
