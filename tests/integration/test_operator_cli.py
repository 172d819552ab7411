"""The operator's first hour (issue 12): results on stdout, logs on stderr, output paths checked
before the work, nothing lost at the end. Real subprocesses, a real redis-server, real videos."""

import csv
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import wait_until
from tests.integration.test_cli import cli, write_config


@pytest.mark.parametrize("flag,target,message", [
    ("--report", "missing/dir/r.json", "folder {tmp}/missing/dir does not exist"),
    ("--report", ".", "is a folder"),
    ("--csv", "missing/r.csv", "folder {tmp}/missing does not exist"),
    ("--frames-csv", "missing/f.csv", "folder {tmp}/missing does not exist"),
    ("--csv", "r.json", "--report and --csv both name"),
])
def test_a_bad_output_path_is_refused_before_anything_is_scored(
        tmp_path, tiny_model_dir, face_video, redis_server, redis_client, flag, target, message):
    config = write_config(tmp_path, tiny_model_dir)
    extra = ["--report", str(tmp_path / "r.json")] if flag == "--csv" and target == "r.json" else []
    started = time.monotonic()
    result = cli("replay", "--config", str(config), "--redis-url", redis_server.url,
                 str(face_video), flag, str(tmp_path / target), *extra)
    assert result.returncode == 2, result.stderr
    assert message.format(tmp=tmp_path) in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not redis_client.exists("deepfake:streams"), "nothing may be scored"
    assert time.monotonic() - started < 30


def test_a_report_that_cannot_be_written_at_the_end_goes_to_a_named_file_and_the_summary_is_printed(
        tmp_path, tiny_model_dir, redis_server, redis_client):
    from producers.synthetic import write_video

    video = write_video(tmp_path / "long.mp4", 240, 320, 240)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    config = write_config(tmp_path, tiny_model_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    replay = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "replay", "--config", str(config), "--redis-url",
         redis_server.url, str(video), "--report", str(out_dir / "r.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=work)
    try:
        wait_until(lambda: redis_client.exists("deepfake:history:long"), 90, message="first scores")
        out_dir.rmdir()   # the folder disappears while the files are scored
        stdout, stderr = replay.communicate(timeout=180)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode == 1, stderr   # the report is not where it was asked for
    assert "Traceback" not in stderr
    assert "long.mp4" in stdout and "ok" in stdout, "the summary is still printed"
    fallbacks = list(work.glob("deepfake-report-*.json"))
    assert len(fallbacks) == 1
    assert f"could not write the report to {out_dir / 'r.json'}" in stderr
    assert str(fallbacks[0]) in stderr
    assert json.loads(fallbacks[0].read_text())["files"][0]["frames_scored"] == 60


def test_replay_results_go_to_stdout_and_its_csvs_have_one_row_per_file_and_per_frame(
        tmp_path, tiny_model_dir, face_video, second_video, redis_server):
    config = write_config(tmp_path, tiny_model_dir)
    result = cli("replay", "--config", str(config), "--redis-url", redis_server.url,
                 str(face_video), str(second_video), str(tmp_path / "gone.mp4"),
                 "--csv", str(tmp_path / "files.csv"), "--frames-csv", str(tmp_path / "frames.csv"))
    assert result.returncode == 1, result.stderr
    # stdout: the summary, and the failure reason once, on one line, without repeating the path
    assert "driving.mp4" in result.stdout and "other.webm" in result.stdout
    assert "gone.mp4: file not found" in result.stdout
    assert str(tmp_path / "gone.mp4") + ":" not in result.stdout
    assert "driving.mp4" not in result.stderr
    assert result.stderr.count("file not found") == 1, "the failure is logged once, not twice"
    # stderr: no INFO lines by default (-v shows them)
    assert " INFO " not in result.stderr
    assert "Redis at" not in result.stderr
    files = list(csv.DictReader(io.StringIO((tmp_path / "files.csv").read_text())))
    assert [f["stream_id"] for f in files] == ["driving", "other", "gone"]
    assert "frame_scores" not in files[0]
    assert len(files[0]["video_score"].split(".")[1]) <= 6
    assert files[1]["video_score"] == "" and files[2]["status"] == "failed"
    frames = list(csv.DictReader(io.StringIO((tmp_path / "frames.csv").read_text())))
    driving = [f for f in frames if f["stream_id"] == "driving"]
    assert [int(f["frame_index"]) for f in driving] == list(range(0, 42, 4))
    assert all(f["faces"] == "1" and f["frame_score"] for f in driving)
    other = [f for f in frames if f["stream_id"] == "other"]
    assert len(other) == 8 and all(f["frame_score"] == "" and f["faces"] == "0" for f in other)


def test_replay_json_prints_the_report_to_stdout_and_quiet_keeps_stderr_empty(
        tmp_path, tiny_model_dir, face_video, redis_server):
    config = write_config(tmp_path, tiny_model_dir)
    result = cli("replay", "-q", "--json", "--config", str(config), "--redis-url",
                 redis_server.url, str(face_video))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files"][0]["status"] == "ok" and report["files"][0]["frames_scored"] == 11
    assert result.stderr == ""   # -q: not even the untrained-model warning


@pytest.mark.parametrize("flags,level", [
    ((), logging.WARNING), (("-v",), logging.INFO), (("-vv",), logging.DEBUG),
    (("-q",), logging.ERROR),
])
def test_verbosity_flags_set_the_log_level(redis_server, flags, level):
    from app.cli import main

    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    try:
        assert main(["streams", *flags, "--redis-url", redis_server.url]) == 0
        assert root.level == level
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def test_train_error_is_one_line_without_tensorflow_noise(tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("path,group,side\ntrain/real/x/a.png,x:a,train\n")
    result = cli("train", "--split", str(split), "--schedule", "fast", "--data-root",
                 str(tmp_path / "d"), "--run-dir", str(tmp_path / "run"), cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    missing = cli("train", "--split", str(tmp_path / "none.csv"), cwd=tmp_path)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("error: split file") and missing.stderr.count("\n") == 1


@pytest.mark.parametrize("flags, message", [
    (["--no-publish", "--epoch", "3"], "cannot be combined with --no-publish"),
    (["--no-publish", "--average-last", "2"], "cannot be combined with --no-publish"),
    (["--no-publish", "--publish-only"], "contradict each other"),
])
def test_train_refuses_publish_choices_it_would_ignore(tmp_path, flags, message):
    result = cli("train", *flags, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "run").exists()


def test_every_subcommand_has_a_description_and_every_option_a_help_text():
    from app.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert command.description, f"{name} --help has no description"
        bare = [a.dest for a in command._actions if not a.help]
        assert not bare, f"{name}: {bare} have no help text"
    assert {"attach", "detach", "watch", "streams", "demo", "fetch-yunet", "forget",
            "clear"} <= set(sub.choices)


def test_detach_help_explains_the_stream_id_and_fetch_yunet_takes_no_redis_url():
    assert "as `streams` lists it" in cli("detach", "--help").stdout
    result = cli("fetch-yunet", "--help")
    assert result.returncode == 0 and "--redis-url" not in result.stdout


def test_streams_table_is_titled_streams(redis_server, redis_client):
    redis_client.hset("deepfake:streams", "door", json.dumps({"status": "running", "verdict": "FAKE",
                                                              "rolling_score": 0.8,
                                                              "frames_scored": 3}))
    result = cli("streams", "--redis-url", redis_server.url)
    assert result.returncode == 0
    assert "watch" not in result.stdout.splitlines()[0]
    assert "streams" in result.stdout.splitlines()[0]


def test_evaluate_refuses_an_unwritable_report_path_before_loading_the_model(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na.png,real\n")
    (tmp_path / "file").write_text("")
    report = tmp_path / "file" / "sub" / "r.json"
    result = cli("evaluate", "--labels", str(labels), "--report", str(report), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --report {report}: cannot create folder {report.parent}")
    assert result.stderr.count("\n") == 1
    result = cli("evaluate", "--labels", str(labels), "--report", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "is a folder" in result.stderr


def test_a_stream_without_scored_frames_is_failed_or_pending_never_no_face(
        tmp_path, tiny_model_dir, redis_server, redis_client):
    config = write_config(tmp_path, tiny_model_dir)
    # given a service whose only stream cannot be read
    result = cli("run", "--config", str(config), "--redis-url", redis_server.url,
                 "--url", str(tmp_path / "gone.mp4"), "--exit-when-done")
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("file not found") == 1, result.stderr   # logged once
    record = json.loads(redis_client.hget("deepfake:streams", "gone"))
    assert record["status"] == "failed" and record["frames_scored"] == 0
    assert record["verdict"] == "FAILED" and record["label"] == "FAILED"
    # and a camera that has not delivered a frame yet, in a record written before PENDING existed
    redis_client.hset("deepfake:streams", "door", json.dumps(
        {"status": "reconnecting", "frames_scored": 0, "verdict": "NO_FACE", "kind": "live"}))
    listed = cli("streams", "--redis-url", redis_server.url)
    gone_row = next(line for line in listed.stdout.splitlines() if "gone" in line)
    door_row = next(line for line in listed.stdout.splitlines() if "door" in line)
    assert "FAILED" in gone_row and "PENDING" in door_row
    assert "NO_FACE" not in listed.stdout


def test_detach_removes_the_stream_keeping_its_history_and_finished_streams_expire(
        tmp_path, tiny_model_dir, face_video, redis_server, redis_client):
    from producers.synthetic import write_video

    long_video = write_video(tmp_path / "long.mp4", 1200, 320, 240)
    config_path = write_config(tmp_path, tiny_model_dir)
    config_path.write_text(config_path.read_text().replace(
        "embedded_port = 0\n", "embedded_port = 0\nfinished_ttl_s = 8\n"))
    common = ("--config", str(config_path), "--redis-url", redis_server.url)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    service = subprocess.Popen([sys.executable, "-m", "app.cli", "run", *common],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_until(lambda: redis_client.exists("deepfake:service"), 60, message="service heartbeat")
        # given a long file being scored
        assert cli("attach", str(long_video), *common).returncode == 0
        wait_until(lambda: redis_client.exists("deepfake:history:long") and
                   redis_client.xlen("deepfake:history:long") >= 2, 60, message="first scores")
        # when it is detached
        asked_s = time.monotonic()
        detached = cli("detach", "long", *common)
        assert detached.returncode == 0 and "detached long" in detached.stdout
        # then it leaves the stream list at once, and its history stays for finished_ttl_s
        assert redis_client.hget("deepfake:streams", "long") is None
        if time.monotonic() - asked_s < 6:   # (a loaded machine may take longer than the TTL)
            assert 0 < redis_client.ttl("deepfake:history:long") <= 8
        assert "long" not in cli("streams", *common).stdout
        again = cli("detach", "long", *common)
        assert again.returncode == 1 and "no stream with id 'long'" in again.stderr
        wait_until(lambda: not redis_client.exists("deepfake:history:long"), 20,
                   message="the history to expire")
        # and a finished file leaves the list finished_ttl_s after it ended
        assert cli("attach", str(face_video), "--id", "short", *common).returncode == 0
        wait_until(lambda: (raw := redis_client.hget("deepfake:streams", "short")) and
                   json.loads(raw)["status"] == "finished", 60, message="short finished")
        record = json.loads(redis_client.hget("deepfake:streams", "short"))
        assert record["expires_at"] == pytest.approx(record["ended_at"] + 8)
        wait_until(lambda: redis_client.hget("deepfake:streams", "short") is None, 20,
                   message="short to leave the list")
        assert not redis_client.exists("deepfake:history:short")
    finally:
        service.send_signal(signal.SIGINT)
        output, _ = service.communicate(timeout=60)
    assert service.returncode == 0, output


def test_forget_and_clear_remove_ended_streams_and_refuse_running_ones(redis_server, redis_client):
    def record(status, **extra):
        return json.dumps({"status": status, "frames_scored": 3, "verdict": "REAL", **extra})

    redis_client.hset("deepfake:streams", mapping={
        "old": record("finished"), "broken": record("failed"), "cam": record("running"),
        "stale": record("finished", expires_at=time.time() - 1), "garbled": "not a JSON record"})
    for stream_id in ("old", "broken", "cam"):
        redis_client.xadd(f"deepfake:history:{stream_id}", {"frame_index": 0})
    redis_client.set("deepfake:service", json.dumps({"pid": 1}), ex=60)
    url = ("--redis-url", redis_server.url)
    # an expired record is not listed even before anything removes it
    listed = cli("streams", *url).stdout
    assert "old" in listed and "stale" not in listed
    refused = cli("forget", "cam", *url)
    assert refused.returncode == 2 and "detach cam" in refused.stderr
    # a record that cannot be read may still be running: refused too
    garbled = cli("forget", "garbled", *url)
    assert garbled.returncode == 2 and "stream 'garbled' is running" in garbled.stderr
    unknown = cli("forget", "nope", *url)
    assert unknown.returncode == 2 and "no stream with id 'nope'" in unknown.stderr
    forgot = cli("forget", "old", *url)
    assert forgot.returncode == 0 and forgot.stdout == "forgot old\n"
    assert redis_client.hget("deepfake:streams", "old") is None
    assert not redis_client.exists("deepfake:history:old")
    # clear with a service running: only what has ended
    cleared = cli("clear", *url)
    assert cleared.returncode == 0 and "broken" in cleared.stdout and "stale" in cleared.stdout
    assert sorted(k.decode() for k in redis_client.hkeys("deepfake:streams")) == ["cam", "garbled"]
    # clear with no service: everything (nobody reads "cam" any more)
    redis_client.delete("deepfake:service")
    assert cli("clear", *url).stdout == "forgot 2 ended stream(s): cam, garbled\n"
    assert redis_client.hlen("deepfake:streams") == 0


def _read_line(process: subprocess.Popen, timeout_s: float) -> str:
    """The next stdout line of a still-running process, or fail after ``timeout_s``."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout_s):
            raise AssertionError(f"no line within {timeout_s} s")
        return process.stdout.readline()
    finally:
        selector.unregister(process.stdout)


@pytest.mark.parametrize("as_json", [False, True])
def test_watch_into_a_pipe_prints_each_update_at_once(redis_server, redis_client, as_json):
    redis_client.hset("deepfake:streams", "door", json.dumps(
        {"status": "running", "frames_scored": 3, "verdict": "REAL", "rolling_score": 0.1}))
    watch = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "watch", "--duration", "60", "--redis-url",
         redis_server.url, *(["--json"] if as_json else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = _read_line(watch, 30)   # the current state, while watch keeps running
        assert "door" in first
        # when a score arrives, its line comes out while watch is still running
        def publish():
            redis_client.publish("deepfake:scores", json.dumps(
                {"stream_id": "door", "rolling_score": 0.875, "verdict": "FAKE", "fps": 7.5,
                 "frames_scored": 4, "frames_dropped": 0, "latency_ms": 93.0}))
            return True
        wait_until(lambda: redis_client.pubsub_numsub("deepfake:scores")[0][1] > 0, 20,
                   message="watch subscribed")
        publish()
        line = _read_line(watch, 10)
        assert watch.poll() is None
    finally:
        watch.terminate()
        watch.communicate(timeout=10)
    if as_json:
        row = json.loads(line)
        assert row["stream_id"] == "door" and row["rolling_score"] == 0.875 and row["verdict"] == "FAKE"
    else:
        assert "door running score 0.875 FAKE" in line and "latency 93 ms" in line


def test_streams_json_and_errors_on_their_own_line(redis_server, redis_client):
    reason = "rtsp://***@10.0.0.5:554/live: connection refused after 3 attempts, retrying in 8 s"
    redis_client.hset("deepfake:streams", "gate", json.dumps(
        {"status": "reconnecting", "frames_scored": 0, "error": reason}))
    result = cli("streams", "--redis-url", redis_server.url)
    assert f"gate: {reason}" in result.stdout   # one line, not wrapped into a column
    rows = [json.loads(line) for line in cli("streams", "--json", "--redis-url",
                                             redis_server.url).stdout.splitlines()]
    assert rows == [{**rows[0], "stream_id": "gate", "status": "reconnecting", "verdict": "PENDING",
                     "error": reason}]


def test_haar_standing_in_for_yunet_is_said_once_with_the_fix(tmp_path, tiny_model_dir, face_video,
                                                               redis_server):
    import shutil

    # given a model trained on YuNet crops, faces.detector = auto, and no YuNet file
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models)
    card = models / "tiny_b0.toml"
    card.write_text(card.read_text().replace('face_detector = "haar"', 'face_detector = "yunet"'))
    config = tmp_path / "config.toml"
    config.write_text(f'[model]\nname = "tiny_b0"\ndir = "{models}"\n[faces]\ndetector = "auto"\n'
                      f'yunet_model = "{tmp_path / "none.onnx"}"\n[workers]\ncount = 2\n'
                      '[metrics]\nenabled = false\n')
    result = cli("replay", "--config", str(config), "--redis-url", redis_server.url, str(face_video))
    assert result.returncode == 0, result.stderr
    # then replay says so once (not once per worker), with the one command that fixes it
    assert result.stderr.count("Haar cascade") == 1, result.stderr
    assert "trained on YuNet crops" in result.stderr
    assert "Fix: deepfake-detector fetch-yunet" in result.stderr


def test_demo_prints_rows_in_frame_order_and_explains_its_latency(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir).read_text().replace(
        "[workers]\ncount = 1\n", "[workers]\ncount = 2\nmax_batch = 2\n")
    (tmp_path / "demo.toml").write_text(config)
    result = cli("demo", "--frames", "48", "--config", str(tmp_path / "demo.toml"), cwd=tmp_path,
                 timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()
            if line.startswith("demo ") and line.split()[1].isdigit()]
    indices = [int(row[1]) for row in rows]
    assert indices == list(range(0, 48, 4))
    assert "A file is replayed losslessly" in result.stdout
    assert "latency: first frame" in result.stdout


def test_on_a_terminal_log_lines_are_printed_above_the_progress_bars_not_into_them(
        tmp_path, tiny_model_dir, redis_server):
    import fcntl
    import pty
    import re
    import select
    import struct
    import termios

    from producers.synthetic import write_video

    video = write_video(tmp_path / "bars.mp4", 160, 320, 240)
    config = write_config(tmp_path, tiny_model_dir)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    # a good file and a missing one: the failure is logged while the bars are on screen
    replay = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "replay", "--config", str(config), "--redis-url",
         redis_server.url, str(video), str(tmp_path / "gone.mp4")],
        stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm"})
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:   # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif replay.poll() is not None:
            break
    os.close(master)
    assert replay.wait(30) == 1
    text = re.sub(r"\x1b\[[0-9;]*m", "", output.decode("utf-8", "replace"))   # colours
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", text)   # cursor moves end a screen line
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    warnings = [line for line in lines if "WARNING" in line]
    assert any("gone" in line for line in warnings), text
    assert not [line for line in warnings if "━" in line], "a log line was glued onto a bar"
    assert any("━" in line for line in lines), "the bars were shown"
    assert "bars.mp4" in text and "gone.mp4: file not found" in text   # the summary


def test_a_reader_without_redis_says_what_to_start(tmp_path):
    # no config, no --redis-url, nothing on the embedded port: run was never started
    config = tmp_path / "c.toml"
    config.write_text("[redis]\nembedded_port = 1\n")
    result = cli("streams", "--config", str(config))
    assert result.returncode == 2
    assert "is `deepfake-detector run` running?" in result.stderr
    assert result.stderr.count("\n") == 1


def test_version_and_a_closed_pipe(redis_server, redis_client):
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("deepfake-detector ")
    # given more rows than a pipe holds, when the reader stops after one line (`| head -1`)
    redis_client.hset("deepfake:streams", mapping={
        f"cam{i:05d}": json.dumps({"status": "running", "frames_scored": 1, "verdict": "REAL",
                                   "source": "x" * 200}) for i in range(3000)})
    streams = subprocess.Popen([sys.executable, "-m", "app.cli", "streams", "--json",
                                "--redis-url", redis_server.url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(streams.stdout.readline())["stream_id"] == "cam00000"
    streams.stdout.close()
    stderr = streams.stderr.read().decode()
    # then it stops quietly, like cat or grep
    assert streams.wait(30) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_run_outside_the_project_folder_says_where_the_model_was_looked_for(tmp_path):
    result = cli("replay", "x.mp4", cwd=tmp_path)
    assert result.returncode == 2
    assert f"model card models/sbi_b0.toml not found in {tmp_path}" in result.stderr
    assert "project folder" in result.stderr and result.stderr.count("\n") == 1
