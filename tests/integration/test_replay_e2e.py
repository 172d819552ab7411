"""End to end: files → producers → ZeroMQ → 2 worker processes → Redis → report."""

import json

import pytest

from app.replay import run_replay
from detector.sampling import sampled_count

pytestmark = pytest.mark.slow


def history_indices(client, stream_id):
    entries = client.xrange(f"deepfake:history:{stream_id}")
    return [int(fields[b"frame_index"]) for _, fields in entries]


def test_two_videos_every_sampled_frame_arrives_exactly_once(
        make_config, redis_server, redis_client, face_video, second_video, tmp_path):
    config = make_config(workers={"count": 2, "max_batch": 4})
    report_path, csv_path = tmp_path / "report.json", tmp_path / "report.csv"

    code = run_replay(config, [str(face_video), str(second_video)], redis_url=redis_server.url,
                      report_path=report_path, csv_path=csv_path, show_progress=False)

    assert code == 0
    for stream_id, frames_total in (("driving", 42), ("other", 30)):
        expected = list(range(0, frames_total, 4))
        assert sorted(history_indices(redis_client, stream_id)) == expected
        status = json.loads(redis_client.hget("deepfake:streams", stream_id))
        assert status["status"] == "finished"
        assert status["frames_scored"] == len(expected)
        latest = json.loads(redis_client.get(f"deepfake:latest:{stream_id}"))
        assert latest["stream_id"] == stream_id and latest["frame_index"] in expected

    report = json.loads(report_path.read_text())
    files = {f["stream_id"]: f for f in report["files"]}
    face, other = files["driving"], files["other"]
    assert face["frames_total"] == 42 and face["frames_sampled"] == sampled_count(42, 4) == 11
    assert [r["frame_index"] for r in face["frames"]] == list(range(0, 42, 4))
    assert face["frames_with_faces"] == 11 and 0.0 <= face["video_score"] <= 1.0
    assert face["label"] in ("REAL", "FAKE")
    assert other["frames_total"] == 30 and other["frames_with_faces"] == 0
    assert other["video_score"] is None and other["label"] == "NO_FACE"
    assert all(r["frame_score"] is None for r in other["frames"])
    assert report["summary"] == {"files": 2, "failed": 0, "fake": report["summary"]["fake"],
                                 "real": report["summary"]["real"], "no_face": 1}
    csv_lines = csv_path.read_text().splitlines()
    assert csv_lines[0].startswith("path,stream_id,status,frames_total")
    assert len(csv_lines) == 3


def test_a_bad_file_fails_alone_and_the_others_are_scored(
        make_config, redis_server, redis_client, face_video, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    report_path = tmp_path / "report.json"

    code = run_replay(make_config(), [str(broken), str(face_video), str(tmp_path / "gone.mp4")],
                      redis_url=redis_server.url, report_path=report_path, show_progress=False)

    assert code == 1
    files = {f["stream_id"]: f for f in json.loads(report_path.read_text())["files"]}
    assert files["broken"]["status"] == "failed" and "not a video file" in files["broken"]["error"]
    assert files["gone"]["status"] == "failed" and "file not found" in files["gone"]["error"]
    assert files["driving"]["status"] == "ok" and files["driving"]["frames_scored"] == 11
    statuses = {k.decode(): json.loads(v)["status"] for k, v in redis_client.hgetall("deepfake:streams").items()}
    assert statuses == {"broken": "failed", "driving": "finished", "gone": "failed"}


def test_same_stem_twice_gets_distinct_ids_and_stride_is_respected(
        make_config, redis_server, redis_client, face_video, tmp_path):
    report_path = tmp_path / "r.json"
    config = make_config(sampling={"stride": 10})
    code = run_replay(config, [str(face_video), str(face_video)], redis_url=redis_server.url,
                      report_path=report_path, show_progress=False)
    assert code == 0
    files = json.loads(report_path.read_text())["files"]
    assert [f["stream_id"] for f in files] == ["driving", "driving-2"]
    assert all([r["frame_index"] for r in f["frames"]] == [0, 10, 20, 30, 40] for f in files)


def test_embedded_redis_reuses_its_port_right_after_a_previous_run():
    import redis

    from detector.embedded_redis import EmbeddedRedis, free_port

    port = free_port()
    with EmbeddedRedis(port) as first:
        assert first.port == port
        client = redis.Redis(port=port)
        client.ping()  # a connection the server closes on exit leaves its port in TIME_WAIT
    with EmbeddedRedis(port) as second:
        assert second.port == port
    client.close()


def test_consumers_follow_an_embedded_redis_that_had_to_move(tmp_path, monkeypatch):
    import socket

    from detector.config import RedisConfig
    from detector.embedded_redis import EmbeddedRedis, client_url, free_port

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    port = free_port()
    config = RedisConfig(url="", embedded_port=port)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with EmbeddedRedis(port) as moved:
            assert moved.port != port
            assert client_url(config) == moved.url == f"redis://127.0.0.1:{moved.port}/0"
        assert client_url(config) == f"redis://127.0.0.1:{port}/0"  # the note left with it
    assert not list(tmp_path.rglob("*.json"))
    assert client_url(RedisConfig(url="redis://h:1/0", embedded_port=port)) == "redis://h:1/0"
