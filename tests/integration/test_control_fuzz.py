"""Fuzz the control channel of a real `deepfake-detector run` over a real Redis: one malformed
request (issue 13: `rtsp://[::1/x` killed the control thread) and then 2 000 more must each be
answered, and a good attach afterwards still works."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

import pytest

from tests.conftest import wait_until
from tests.integration.test_cli import write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

N_FUZZ = 2000
HUGE_INT = 10**400

BAD_URLS = ["rtsp://[::1/x", "rtsp://[", "http://[::1", "rtsp://host:99999/x", "rtsp://host:port/",
            "rtsps://[zz]/", "file://[", "webcam:x", "webcam:-1", "/dev/videoX", "\x00",
            "rtsp://\x00/", "rtsp://" + "a" * 70_000, "ftp://host/x", "rtsp://u:p@[::1/x"]
BAD_VALUES = [None, True, False, 0, -1, 1.5, HUGE_INT, "", [], {}, {"a": 1}, ["x"], "\n", "x" * 300]
BAD_URL_VALUES = [None, True, 0, 1.5, HUGE_INT, "", [], {}, ["x"], "\n", "a\x00b", "a\rb"]


def fuzz_request(rng: random.Random, index: int) -> bytes:
    """One request the service must refuse (answered ok=false) without dying."""
    request = {"schema_version": 1, "request_id": f"fuzz{index}", "op": "attach",
               "stream_id": f"f{index}", "url": rng.choice(BAD_URLS)}
    kind = rng.randrange(10)
    if kind == 0:
        request["schema_version"] = rng.choice([0, 2, "1", True, None, HUGE_INT, 1.0000001])
    elif kind == 1:
        request["op"] = rng.choice(BAD_VALUES + ["ATTACH", "list", "detach "])
    elif kind == 2:
        request["stream_id"] = rng.choice(BAD_VALUES + ["../../etc", "a\nb", "a b", "ü" * 3])
    elif kind == 3:
        request["url"] = rng.choice(BAD_URL_VALUES)
    elif kind == 4:
        request["stride"] = rng.choice(BAD_VALUES)
    elif kind == 5:
        request["op"] = "detach"
        request["stream_id"] = rng.choice([f"none{index}", *BAD_VALUES])
    elif kind == 6:
        request.pop(rng.choice(["op", "stream_id", "url", "schema_version"]))
    elif kind == 7:  # a truncated or garbled JSON document that still carries the id
        text = json.dumps(request)
        return text[: rng.randint(1, len(text) - 1)].encode() if rng.random() < 0.3 else \
            (text[:-1] + rng.choice([",", "]", "\x00", "}}"])).encode()
    elif kind == 8:
        request["extra"] = {"deep": [[[[[]]]]] * 50}
        request["url"] = rng.choice(BAD_URLS)
    raw = json.dumps(request)
    if rng.random() < 0.05:
        return rng.randbytes(rng.randint(0, 40))
    return raw.encode()


def reply_to(client, request_id: str, timeout_s: float = 15.0) -> dict:
    """The service's reply to one request (short BLPOPs: the client's socket timeout is 5 s)."""
    item = wait_until(lambda: client.blpop([f"deepfake:control:reply:{request_id}"], timeout=1),
                      timeout_s, message=f"a reply to {request_id}")
    return json.loads(item[1])


def test_control_channel_survives_malformed_requests_and_still_attaches(
        tmp_path, tiny_model_dir, face_video, redis_server, redis_client):
    config = write_config(tmp_path, tiny_model_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "service.log"  # a file, not a pipe: 2 000 refusals overflow a pipe
    service = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--config", str(config), "--redis-url", redis_server.url],
        stdout=log_path.open("w"), stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_until(lambda: redis_client.exists("deepfake:service"), 90, message="service heartbeat")

        # given the one-line reproduction of issue 13
        first = {"schema_version": 1, "request_id": "a", "op": "attach", "stream_id": "x",
                 "url": "rtsp://[::1/x"}
        redis_client.rpush("deepfake:control", json.dumps(first))
        assert reply_to(redis_client, "a")["ok"] is False

        # and the unbounded identifiers of issue 13 (a 5 MB URL, a newline in an id, ../../etc)
        hostile = {
            "big": {"url": "rtsp://cam/" + "x" * 5_000_000, "stream_id": "big"},
            "newline": {"url": str(face_video), "stream_id": "x\n2026-01-01 INFO app: forged"},
            "dotdot": {"url": str(face_video), "stream_id": "../../etc"},
            "longurl": {"url": "/" + "y" * 5000, "stream_id": "longurl"},
        }
        for request_id, fields in hostile.items():
            redis_client.rpush("deepfake:control", json.dumps(
                {"schema_version": 1, "request_id": request_id, "op": "attach", **fields}))
        assert "at most 65536 bytes" in reply_to(redis_client, "big")["message"]
        assert "stream id must be" in reply_to(redis_client, "newline")["message"]
        assert "stream id must be" in reply_to(redis_client, "dotdot")["message"]
        assert "at most 4096 characters" in reply_to(redis_client, "longurl")["message"]

        # when 2 000 more malformed requests arrive
        rng = random.Random(13)
        raws = [fuzz_request(rng, i) for i in range(N_FUZZ)]
        for start in range(0, N_FUZZ, 200):
            redis_client.rpush("deepfake:control", *raws[start:start + 200])
        wait_until(lambda: redis_client.llen("deepfake:control") == 0, 120,
                   message="the control queue drained")
        answered = [key for key in redis_client.scan_iter("deepfake:control:reply:fuzz*", count=1000)]
        ok = [json.loads(redis_client.lindex(key, 0)) for key in answered]
        assert all(r["ok"] is False for r in ok), [r for r in ok if r["ok"]][:3]
        assert len(answered) > N_FUZZ * 0.8  # garbled JSON carries no readable request id

        # then a good attach still works end to end
        redis_client.rpush("deepfake:control", json.dumps(
            {"schema_version": 1, "request_id": "good", "op": "attach", "stream_id": "cam1",
             "url": str(face_video)}))
        reply = reply_to(redis_client, "good")
        assert reply["ok"] is True, reply

        def finished():
            raw = redis_client.hget("deepfake:streams", "cam1")
            return raw and json.loads(raw)["status"] == "finished"

        wait_until(finished, 90, message="cam1 finished")
        streams = set(redis_client.hkeys("deepfake:streams"))
        assert streams == {b"cam1"}, streams  # no refused request created a stream
    finally:
        service.send_signal(signal.SIGINT)
        service.wait(timeout=60)
    output = log_path.read_text(errors="replace")
    assert service.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Exception in thread" not in output, output[-3000:]
    assert len(max(output.splitlines(), key=len)) < 10_000  # the 70 000-character URL is not logged
    assert len(output) < 3_000_000  # 2 005 refusals; the 5 MB URL is never logged
    assert not any(line.startswith("2026-01-01 INFO app: forged") for line in output.splitlines())
