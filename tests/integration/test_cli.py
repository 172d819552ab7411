"""The command line: exit codes and one-sentence errors, run as a real subprocess."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_until


def cli(*args, cwd=None, timeout=120):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)


def write_config(tmp_path: Path, tiny_model_dir: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[model]\nname = "tiny_b0"\ndir = "{tiny_model_dir}"\n'
        '[faces]\ndetector = "haar"\n[workers]\ncount = 1\n[redis]\nembedded_port = 0\n'
        '[metrics]\nenabled = false\n' + extra, encoding="utf-8")
    return path


def test_help_explains_every_subcommand():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("replay", "run", "watch", "worker", "attach", "detach"):
        assert command in result.stdout
    replay_help = cli("replay", "--help").stdout
    assert "--config" in replay_help and "--redis-url" in replay_help and "--report" in replay_help


@pytest.mark.parametrize("extra,message", [
    ("[sampling]\nstride = 0\n", "error: sampling.stride must be >= 1, got 0"),
    ("[workers]\nmax_batch = 0\n", "workers.max_batch must be >= 1, got 0"),
    ("[bogus]\n", "unknown config section 'bogus'"),
])
def test_bad_config_values_are_one_sentence_and_exit_2(tmp_path, tiny_model_dir, extra, message):
    config = tmp_path / "bad.toml"
    if "workers" in extra:
        config.write_text(f'[model]\ndir = "{tiny_model_dir}"\n' + extra)
    else:
        config = write_config(tmp_path, tiny_model_dir, extra)
    result = cli("replay", "--config", str(config), "x.mp4")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path):
    result = cli("replay", "--config", str(tmp_path / "nope.toml"), "x.mp4")
    assert result.returncode == 2 and "config file" in result.stderr and "not found" in result.stderr


def test_missing_model_card_says_what_to_do(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[model]\nname = "nothing"\ndir = "{tmp_path}"\n')
    result = cli("replay", "--config", str(config), "x.mp4")
    assert result.returncode == 2 and "model card" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_redis_is_a_plain_error(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir)
    result = cli("replay", "--config", str(config), "--redis-url", "redis://:pw@127.0.0.1:1/0", "x.mp4")
    assert result.returncode == 2
    assert "cannot reach Redis at redis://***@127.0.0.1:1/0" in result.stderr
    assert ":pw@" not in result.stderr and "Traceback" not in result.stderr


def test_replay_of_a_missing_file_exits_non_zero_with_the_reason(tmp_path, tiny_model_dir, face_video, redis_server):
    config = write_config(tmp_path, tiny_model_dir)
    report = tmp_path / "r.json"
    result = cli("replay", "--config", str(config), "--redis-url", redis_server.url,
                 str(tmp_path / "gone.mp4"), str(face_video), "--report", str(report))
    assert result.returncode == 1
    assert "file not found" in result.stderr + result.stdout
    files = json.loads(report.read_text())["files"]
    assert [f["status"] for f in files] == ["failed", "ok"]


def test_run_serves_attach_and_detach_and_stops_cleanly_on_ctrl_c(
        tmp_path, tiny_model_dir, face_video, redis_server, redis_client):
    config = write_config(tmp_path, tiny_model_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    service = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--config", str(config), "--redis-url", redis_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_until(lambda: redis_client.exists("deepfake:service"), 60, message="service heartbeat")
        attached = cli("attach", str(face_video), "--id", "cam1", "--config", str(config),
                       "--redis-url", redis_server.url)
        assert attached.returncode == 0, attached.stderr
        assert "attached cam1" in attached.stdout

        def finished():
            raw = redis_client.hget("deepfake:streams", "cam1")
            return raw and json.loads(raw)["status"] == "finished"

        wait_until(finished, 90, message="cam1 finished")
        assert redis_client.xlen("deepfake:history:cam1") == 11
        again = cli("detach", "nope", "--config", str(config), "--redis-url", redis_server.url)
        assert again.returncode == 1 and "no stream with id 'nope'" in again.stderr
        # a file that vanished between the client's check and the service's is refused too
        from app.control import send_request
        from detector.redis_keys import RedisKeys

        reply = send_request(redis_client, RedisKeys(), "attach", "gone",
                             url=str(tmp_path / "gone.mp4"), timeout_s=30)
        assert reply == {**reply, "ok": False, "message": f"{tmp_path / 'gone.mp4'}: file not found"}
        assert redis_client.hget("deepfake:streams", "gone") is None
    finally:
        service.send_signal(signal.SIGINT)
        output, _ = service.communicate(timeout=60)
    assert service.returncode == 0, output
    assert "Traceback" not in output


def test_attach_without_a_service_fails_at_once_and_a_silent_service_times_out_saying_so(
        tmp_path, tiny_model_dir, face_video, redis_server, redis_client):
    import time

    config = write_config(tmp_path, tiny_model_dir)
    started = time.monotonic()
    result = cli("attach", str(face_video), "--config", str(config), "--redis-url", redis_server.url)
    assert result.returncode == 2 and "no service is running on this Redis" in result.stderr
    assert time.monotonic() - started < 10   # not the 15 s timeout
    # a heartbeat but nobody answering: the wait is announced, then the timeout is plain
    redis_client.set("deepfake:service", json.dumps({"pid": 4242}), ex=30)
    result = cli("attach", str(face_video), "--timeout", "2", "--config", str(config),
                 "--redis-url", redis_server.url)
    assert result.returncode == 2 and "no running service answered" in result.stderr
    assert "waiting up to 2 s for the service (pid 4242) to answer the attach request" in result.stderr


@pytest.mark.parametrize("name,content,reason", [
    ("gone.mp4", None, "file not found"),
    ("notes.mp4", b"not a video at all", "not a video file"),
])
def test_attach_of_a_file_that_cannot_be_opened_is_refused_at_once(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    # Redis is unreachable on purpose: the file is refused before anything is sent
    result = cli("attach", str(path), "--redis-url", "redis://127.0.0.1:1/0")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: {reason}") and result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_watch_once_lists_streams(tmp_path, tiny_model_dir, redis_server, redis_client):
    redis_client.hset("deepfake:streams", "door", json.dumps(
        {"status": "running", "rolling_score": 0.81, "verdict": "FAKE", "fps": 7.5, "latency_ms": 93.0}))
    result = cli("watch", "--once", "--redis-url", redis_server.url)
    assert result.returncode == 0
    assert "door" in result.stdout and "FAKE" in result.stdout and "0.810" in result.stdout
    assert "93 ms" in result.stdout


def test_ctrl_c_during_replay_drains_writes_the_report_and_exits_1(tmp_path, tiny_model_dir, redis_server,
                                                                   redis_client):
    from producers.synthetic import write_video

    long_video = write_video(tmp_path / "long.mp4", 1200, 320, 240)
    config = write_config(tmp_path, tiny_model_dir)
    report = tmp_path / "r.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    replay = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "replay", "--config", str(config), "--redis-url",
         redis_server.url, str(long_video), "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_until(lambda: redis_client.exists("deepfake:history:long") and
                   redis_client.xlen("deepfake:history:long") >= 3, 90, message="first scores")
        replay.send_signal(signal.SIGINT)
        output, _ = replay.communicate(timeout=60)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode == 1, output
    assert "Traceback" not in output and "Interrupted" in output
    entry = json.loads(report.read_text())["files"][0]
    assert entry["status"] == "interrupted"
    assert entry["frames_scored"] < 300
    indices = [r["frame_index"] for r in entry["frames"]]
    assert len(indices) == len(set(indices)) == entry["frames_scored"]
    assert json.loads(redis_client.hget("deepfake:streams", "long"))["status"] == "stopped"


@pytest.mark.parametrize("args,message", [
    (("train", "--split", "{split}", "--cache-dir", "{tmp}/empty-cache"), "run `prepare` first"),
    (("train", "--split", "{split}", "--schedule", "100:1"), "multiple of 32"),
    (("train", "--split", "{split}", "--schedule", "fast"), "expected a schedule like"),
    (("train", "--split", "{tmp}/no-split.csv"), "run `deepfake-detector prepare` first"),
])
def test_train_problems_are_one_sentence(tmp_path, args, message):
    split = tmp_path / "split.csv"
    split.write_text("path,group,side\ntrain/real/x/a.png,x:a,train\n")
    filled = [a.format(split=split, tmp=tmp_path) for a in args]
    result = cli(*filled, "--data-root", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"),
                 cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_prepare_without_data_is_one_sentence(tmp_path):
    result = cli("prepare", "--data-root", str(tmp_path / "nowhere"), "--cache-dir",
                 str(tmp_path / "cache"), "--split", str(tmp_path / "s.csv"), cwd=tmp_path)
    assert result.returncode == 2
    # Without a YuNet model (CI) that is the first thing missing; with one, the data folder is.
    assert ("train/real not found" in result.stderr) or ("YuNet model" in result.stderr)
    assert "Traceback" not in result.stderr
