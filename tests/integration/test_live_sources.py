"""Live RTSP streams through the real service: a real GStreamer RTSP server, real worker
processes, a real redis-server that is stopped and restarted, real ZeroMQ."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import redis

from app.service import Service
from detector.embedded_redis import find_redis_server, free_port
from detector.errors import RedisUnavailableError
from producers.factory import make_source
from producers.synthetic import write_h264_clip
from tests.conftest import wait_until
from tests.rtsp_server import RtspServerProcess, rtsp_server_missing_reason

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

USER, PASSWORD = "operator", "Pa55w0rd-never-shown"


@pytest.fixture(scope="module")
def rtsp_clip(tmp_path_factory):
    reason = rtsp_server_missing_reason()
    if reason:
        pytest.skip(reason)
    # 2 s of 320×240 with a real face, a keyframe every 15 frames; served in a loop
    return write_h264_clip(tmp_path_factory.mktemp("rtsp") / "clip.h264", 60,
                           width=320, height=240, fps=30, keyframe_interval=15)


class RestartableRedis:
    """A redis-server on a fixed free port that a test can stop and start again."""

    def __init__(self):
        self.binary = find_redis_server()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RestartableRedis:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            wait_until(lambda: _pings(client), 10, message="redis-server answering")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="module")
def own_redis():
    """A redis-server only these tests use, so one test can stop and restart it."""
    try:
        server = RestartableRedis().start()
    except RedisUnavailableError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(make_config_module, own_redis):
    config = make_config_module(
        workers={"count": 1, "max_batch": 8, "max_wait_ms": 20},
        redis={"socket_timeout_s": 1.0},
        sampling={"stride": 4},
        sources={"stall_timeout_s": 5.0, "open_timeout_s": 3.0,
                 "reconnect_min_s": 0.5, "reconnect_max_s": 2.0},
    )
    service = Service(config, redis_url=own_redis.url).start()
    assert service.wait_ready(180), "the worker never became ready"
    yield service
    service.stop(drain=False)


@pytest.fixture(scope="module")
def make_config_module(tiny_model_dir):
    from detector.config import config_from_dict

    def make(**sections):
        raw = {
            "model": {"name": "tiny_b0", "dir": str(tiny_model_dir)},
            "faces": {"detector": "haar"},
            "metrics": {"enabled": False},
        }
        for name, values in sections.items():
            raw[name] = {**raw.get(name, {}), **values}
        return config_from_dict(raw)

    return make


@pytest.fixture
def client(own_redis):
    client = redis.Redis.from_url(own_redis.url, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def servers(rtsp_clip):
    started: list[RtspServerProcess] = []

    def start(**options) -> RtspServerProcess:
        started.append(RtspServerProcess(rtsp_clip, **options).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def attach(service: Service, stream_id: str, url: str) -> None:
    service.add_source(make_source(url, stream_id, service.config.sources))


def status(client: redis.Redis, stream_id: str) -> dict:
    raw = client.hget("deepfake:streams", stream_id)
    return json.loads(raw) if raw else {}


def frames_read(service: Service, stream_id: str) -> int:
    handle = service.hub.handle(stream_id)
    return handle.counters.frames_read if handle else 0


def scored(service: Service, stream_id: str) -> int:
    state = service.collector.stream(stream_id)
    return state.frames_scored if state else 0


def test_frames_flow_from_a_real_rtsp_server(service, servers, client):
    # given a camera served over RTSP
    camera = servers()
    # when it is attached
    attach(service, "flow", camera.url(0))
    try:
        # then frames are read, sampled, scored and published
        wait_until(lambda: scored(service, "flow") >= 5, 60, message="5 scored frames")
        record = status(client, "flow")
        assert record["status"] == "running" and record["kind"] == "live"
        latest = json.loads(client.get("deepfake:latest:flow"))
        assert latest["stream_id"] == "flow" and latest["latency_ms"] >= 0
        assert client.xlen("deepfake:history:flow") >= 5
        assert frames_read(service, "flow") >= 4 * 5
        # and the published counters follow the producer's while it runs
        wait_until(lambda: status(client, "flow").get("frames_read", 0) >= 20, 10,
                   message="frames_read published")
        assert status(client, "flow")["frames_sampled"] >= 5
        # and the latest thumbnail frame is kept, unannotated, for the dashboard's "why"
        wait_until(lambda: client.exists("deepfake:frame:flow"), 10, message="a kept frame")
        kept = client.hgetall("deepfake:frame:flow")
        assert int(kept[b"frame_index"]) % 4 == 0
        image = cv2.imdecode(np.frombuffer(kept[b"jpeg"], np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[2] == 3
        # and its face is tracked: between full detections only near the track is searched,
        # and the score message carries the face's track and the track's own score
        def tracked_frame():
            latest = json.loads(client.get("deepfake:latest:flow"))
            faces = latest["faces"]
            return (latest["detect_mode"] == "track" and faces and faces[0].get("track_id")
                    and any(t["track_id"] == faces[0]["track_id"] and t["status"] == "live"
                            for t in latest["tracks"]))

        wait_until(tracked_frame, 30, interval_s=0.01, message="a frame searched near its track")
    finally:
        service.remove_stream("flow")
    wait_until(lambda: status(client, "flow").get("status") == "stopped", 10, message="stopped")


def test_server_killed_and_restarted_stream_returns_and_other_never_pauses(service, servers, client):
    # given two cameras on two servers
    flaky, steady = servers(), servers()
    attach(service, "flaky", flaky.url(0))
    attach(service, "steady", steady.url(0))
    try:
        wait_until(lambda: scored(service, "flaky") >= 2 and scored(service, "steady") >= 2, 60,
                   message="both streams scored")
        # when the flaky camera's server dies
        flaky.stop()
        wait_until(lambda: status(client, "flaky").get("status") == "reconnecting", 15,
                   message="flaky reconnecting")
        # then the steady stream keeps delivering during the outage, second by second
        outage_reads = []
        for _ in range(4):
            before = frames_read(service, "steady")
            time.sleep(1.0)
            outage_reads.append(frames_read(service, "steady") - before)
        assert min(outage_reads) >= 10, f"steady paused during the outage: {outage_reads}"
        # and when the server comes back on the same port, the stream is back within 15 s
        reads_before = frames_read(service, "flaky")
        flaky.start()
        restarted_s = time.monotonic()
        wait_until(lambda: frames_read(service, "flaky") > reads_before + 10, 15,
                   message="flaky frames after the restart")
        back_s = time.monotonic() - restarted_s
        wait_until(lambda: status(client, "flaky").get("status") == "running", 5,
                   message="flaky running")
        assert status(client, "flaky")["reconnects"] >= 1
        assert back_s < 15
    finally:
        service.remove_stream("flaky")
        service.remove_stream("steady")


def test_frozen_server_is_stalled_then_reconnects_when_it_thaws(service, servers, client):
    # given a stream, and a listener on the events channel
    camera = servers()
    events: list[dict] = []
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("deepfake:events")
    attach(service, "frozen", camera.url(0))
    try:
        wait_until(lambda: scored(service, "frozen") >= 2, 60, message="frozen scored")
        # when the server freezes (connection open, no packets) for longer than the stall timeout
        os.kill(camera.process.pid, signal.SIGSTOP)
        frozen_s = time.monotonic()

        def saw(status_name):
            while (message := pubsub.get_message(timeout=0.1)) is not None:
                record = json.loads(message["data"])
                if record["stream_id"] == "frozen":
                    events.append(record)
            return any(e["status"] == status_name for e in events)

        # then the stream is reported stalled after stall_timeout_s (5 s), then reconnecting
        wait_until(lambda: saw("stalled"), 20, message="stalled")
        assert time.monotonic() - frozen_s >= 4.0
        wait_until(lambda: saw("reconnecting"), 10, message="reconnecting")
        # and when the server thaws, frames flow again
        os.kill(camera.process.pid, signal.SIGCONT)
        reads = frames_read(service, "frozen")
        wait_until(lambda: frames_read(service, "frozen") > reads + 10, 30,
                   message="frames after the thaw")
        wait_until(lambda: saw("running") and events[-1]["status"] == "running", 10,
                   message="running again")
    finally:
        if camera.process is not None:
            os.kill(camera.process.pid, signal.SIGCONT)
        service.remove_stream("frozen")
        pubsub.close()


def test_unreachable_camera_is_reconnecting_and_the_service_stays_healthy(service, servers, client):
    # given a camera URL nobody listens on, next to a working one
    camera = servers()
    attach(service, "nobody", f"rtsp://127.0.0.1:{free_port()}/cam0")
    attach(service, "alive", camera.url(0))
    try:
        # then it is reported as reconnecting (never failed), with the reason
        wait_until(lambda: status(client, "nobody").get("status") == "reconnecting", 15,
                   message="nobody reconnecting")
        wait_until(lambda: status(client, "nobody").get("reconnects", 0) >= 2, 15,
                   message="a second reconnect attempt")
        assert "cannot connect" in status(client, "nobody")["error"]
        # and the service is healthy: workers alive, heartbeat fresh, other streams scored
        before = scored(service, "alive")
        wait_until(lambda: scored(service, "alive") >= before + 3, 60, message="alive scored")
        assert service.fatal_error is None and service.workers_alive() == 1
        assert json.loads(client.get("deepfake:service"))["workers"] == 1
        assert status(client, "nobody")["status"] == "reconnecting"
    finally:
        service.remove_stream("nobody")
        service.remove_stream("alive")


def test_malformed_url_fails_at_once(service):
    from detector.errors import SourceError

    with pytest.raises(SourceError, match="malformed") as info:
        attach(service, "bad", f"rtsp://{USER}:{PASSWORD}@:99999/x")
    assert PASSWORD not in str(info.value)


def test_credentials_never_reach_redis_metrics_or_logs(service, servers, client, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    published: list[bytes] = []
    pubsub = client.pubsub()
    pubsub.psubscribe("deepfake:*")
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message and isinstance(message.get("data"), bytes):
                published.append(message["data"])

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    # given a camera that needs a password, attached with the right and with a wrong one
    camera = servers(user=USER, password=PASSWORD)
    attach(service, "secure", camera.url(0))
    attach(service, "wrongpw", camera.url(0, password=PASSWORD + "-wrong"))
    try:
        wait_until(lambda: scored(service, "secure") >= 3, 60, message="secure scored")
        wait_until(lambda: status(client, "wrongpw").get("status") == "reconnecting", 15,
                   message="wrong password reconnecting")
        assert "401" in status(client, "wrongpw")["error"] or "authoriz" in status(
            client, "wrongpw")["error"].lower()
        assert status(client, "secure")["source"] == f"rtsp://***@127.0.0.1:{camera.port}/cam0"
    finally:
        service.remove_stream("secure")
        service.remove_stream("wrongpw")
        stop.set()
        listener.join(5)
        pubsub.close()
    # then no key, value, published message or log line holds the password or user:password
    secrets = [PASSWORD.encode(), f"{USER}:".encode()]
    dump = []
    for key in client.scan_iter("*"):
        dump.append(key)
        kind = client.type(key)
        if kind == b"string":
            dump.append(client.get(key))
        elif kind == b"hash":
            dump.extend(b"%s=%s" % item for item in client.hgetall(key).items())
        elif kind == b"stream":
            for _, fields in client.xrange(key):
                dump.extend(b"%s=%s" % item for item in fields.items())
        elif kind == b"list":
            dump.extend(client.lrange(key, 0, -1))
    assert published, "nothing was published"
    for blob in dump + published:
        for secret in secrets:
            assert secret not in blob, f"credentials leaked into Redis: {blob[:200]!r}"
    from prometheus_client import generate_latest

    from detector.metrics import PipelineMetrics

    metrics_text = generate_latest(
        PipelineMetrics(service.stream_counts, service.service_counts).registry)
    assert b'stream="secure"' in metrics_text
    for secret in secrets:
        assert secret not in metrics_text
    captured = capfd.readouterr()
    log_text = "\n".join(record.getMessage() for record in caplog.records)
    for text in (log_text, caplog.text, captured.out, captured.err):
        assert PASSWORD not in text and f"{USER}:" not in text
    assert "rtsp://***@127.0.0.1" in log_text  # the masked form is what gets logged


def test_sigkilled_worker_is_restarted_and_scoring_continues(service, servers, client):
    # given a stream being scored
    camera = servers()
    attach(service, "survivor", camera.url(0))
    try:
        wait_until(lambda: scored(service, "survivor") >= 2, 60, message="survivor scored")
        old_pid = service.worker_pids()["w0"]
        # when the worker is SIGKILLed
        os.kill(old_pid, signal.SIGKILL)
        # then the service restarts it and scoring continues
        wait_until(lambda: service.worker_pids()["w0"] != old_pid, 10, message="worker respawned")
        before = scored(service, "survivor")
        wait_until(lambda: scored(service, "survivor") >= before + 3, 120,
                   message="scores from the restarted worker")
        assert json.loads(client.get("deepfake:service"))["worker_restarts"] >= 1
        assert status(client, "survivor")["status"] == "running"
        assert service.fatal_error is None
    finally:
        service.remove_stream("survivor")


def test_with_two_workers_a_sigkill_pauses_no_stream_for_10_s(make_config_module, own_redis, servers):
    # given a service with two workers and two cameras
    config = make_config_module(
        workers={"count": 2, "max_batch": 4, "max_wait_ms": 20},
        redis={"prefix": "twoworkers"},
        sampling={"stride": 4},
        sources={"reconnect_min_s": 0.5, "reconnect_max_s": 2.0},
    )
    two = Service(config, redis_url=own_redis.url).start()
    camera = servers(mounts=2)
    try:
        wait_until(lambda: two.workers_ready() == 2, 180, message="two workers ready")
        for i in range(2):
            attach(two, f"pair{i}", camera.url(i))
        wait_until(lambda: all(scored(two, f"pair{i}") >= 3 for i in range(2)), 60,
                   message="both scored")
        # when one worker is SIGKILLed while frames are in flight
        os.kill(two.worker_pids()["w0"], signal.SIGKILL)
        # then no stream goes 10 s without a score (frames the dead worker held count as lost)
        longest_gap_s = {f"pair{i}": 0.0 for i in range(2)}
        last = {sid: (scored(two, sid), time.monotonic()) for sid in longest_gap_s}
        end = time.monotonic() + 15
        while time.monotonic() < end:
            for sid in longest_gap_s:
                count, since = last[sid]
                now = time.monotonic()
                longest_gap_s[sid] = max(longest_gap_s[sid], now - since)
                if scored(two, sid) != count:
                    last[sid] = (scored(two, sid), now)
            time.sleep(0.1)
        assert max(longest_gap_s.values()) < 10, longest_gap_s
        wait_until(lambda: two.workers_alive() == 2, 30, message="w0 restarted")
    finally:
        two.stop(drain=False)


def test_redis_outage_service_keeps_running_and_resumes_publishing(service, servers, own_redis):
    # given a stream being published
    camera = servers()
    attach(service, "outage", camera.url(0))
    try:
        wait_until(lambda: scored(service, "outage") >= 2, 60, message="outage scored")
        # when Redis goes away
        own_redis.stop()
        wait_until(lambda: not service.sink.is_connected, 15, message="the sink notices")
        # then reading and scoring go on
        before = scored(service, "outage")
        wait_until(lambda: scored(service, "outage") >= before + 3, 60,
                   message="scoring during the outage")
        assert service.fatal_error is None and service.workers_alive() == 1
        # and when Redis comes back on the same port, publishing resumes
        own_redis.start()
        fresh = redis.Redis.from_url(own_redis.url, socket_timeout=2)
        try:
            wait_until(lambda: fresh.exists("deepfake:latest:outage"), 20,
                       message="scores published again")
            wait_until(lambda: fresh.hget("deepfake:streams", "outage"), 10,
                       message="status published again")
            assert service.sink.is_connected
        finally:
            fresh.close()
    finally:
        service.remove_stream("outage")


def test_cli_run_attach_streams_detach_with_a_password_protected_camera(
        tmp_path, tiny_model_dir, servers, own_redis, client):
    """The user's path: `run` with a [[streams]] camera, `attach` another, `streams`, `detach`;
    the password shows in no command output and no Redis value, metrics are served."""
    from tests.integration.test_cli import cli, write_config

    camera = servers(user=USER, password=PASSWORD, mounts=2)
    config = write_config(tmp_path, tiny_model_dir, extra=(
        '[sources]\nstall_timeout_s = 5.0\nreconnect_max_s = 2.0\n'
        f'[[streams]]\nid = "door"\nurl = "{camera.url(0)}"\n'
    )).read_text().replace("[metrics]\nenabled = false\n", "[metrics]\nenabled = true\nport = 0\n")
    (tmp_path / "config.toml").write_text(config)
    args = ("--config", str(tmp_path / "config.toml"), "--redis-url", own_redis.url)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "-v", *args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    outputs = []
    try:
        wait_until(lambda: status(client, "door").get("frames_scored", 0) >= 2, 120,
                   message="door scored")
        attached = cli("attach", camera.url(1), "--id", "side", *args)
        outputs.append(attached.stdout + attached.stderr)
        assert attached.returncode == 0 and "attached side (rtsp://***@127.0.0.1" in attached.stdout
        wait_until(lambda: status(client, "side").get("status") == "running", 30, message="side running")
        listed = cli("streams", *args)
        outputs.append(listed.stdout + listed.stderr)
        assert listed.returncode == 0 and "door" in listed.stdout and "side" in listed.stdout
        detached = cli("detach", "side", *args)
        outputs.append(detached.stdout + detached.stderr)
        assert detached.returncode == 0
        # a detached stream leaves the list at once (its history stays for redis.finished_ttl_s)
        assert client.hget("deepfake:streams", "side") is None
        assert "side" not in cli("streams", *args).stdout
        bad = cli("attach", f"rtsp://{USER}:{PASSWORD}@/nohost", "--id", "bad", *args)
        outputs.append(bad.stdout + bad.stderr)
        assert bad.returncode == 1 and "malformed" in bad.stderr
    finally:
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=60)
        outputs.append(output)
    assert run.returncode == 0, output
    assert "Traceback" not in output and "metrics at http://127.0.0.1:" in output
    for text in outputs:
        assert PASSWORD not in text and f"{USER}:" not in text
    for key in client.scan_iter("*"):
        value = client.hgetall(key) if client.type(key) == b"hash" else (
            client.get(key) if client.type(key) == b"string" else b"")
        assert PASSWORD.encode() not in repr(value).encode()
