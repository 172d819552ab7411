"""CURVE on the worker pool (issue 13, item 1), with real ZeroMQ sockets and real processes:
`keys` makes the key files; with pool.keys_dir a plain or unauthorised socket reads no frame
and injects no result, while a remote worker with its keys takes a share of the frames; an
endpoint other hosts can reach is refused without keys unless pool.insecure says so."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
import zmq

from app.service import Service
from detector.errors import ConfigError
from producers.file_source import FileSource
from tests.conftest import wait_until
from tests.integration.test_forged_results import forged
from tests.integration.test_remote_worker import free_port_pair

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_keys_makes_a_server_pair_and_worker_pairs_and_never_overwrites(tmp_path):
    keys = tmp_path / "keys"
    made = cli("keys", "--dir", str(keys), "--worker", "gpu1", "--worker", "gpu2")
    assert made.returncode == 0, made.stderr
    for name in ("server.key", "server.key_secret", "authorized/gpu1.key", "authorized/gpu2.key",
                 "workers/gpu1.key_secret", "workers/gpu2.key_secret"):
        assert (keys / name).is_file(), name
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    assert (keys / "workers/gpu1.key_secret").stat().st_mode & 0o077 == 0
    server_before = (keys / "server.key_secret").read_bytes()
    again = cli("keys", "--dir", str(keys), "--worker", "gpu1")
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    more = cli("keys", "--dir", str(keys), "--worker", "gpu3")
    assert more.returncode == 0 and (keys / "server.key_secret").read_bytes() == server_before
    bad = cli("keys", "--dir", str(keys), "--worker", "../x")
    assert bad.returncode == 2 and "worker name" in bad.stderr


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:{port}", "tcp://*:{port}"])
def test_an_exposed_endpoint_without_keys_is_refused_unless_insecure(
        endpoint, make_config, redis_server, caplog):
    port = free_port_pair()
    pool = {"frames_endpoint": endpoint.format(port=port),
            "results_endpoint": endpoint.format(port=port + 1)}
    with pytest.raises(ConfigError, match="pool.keys_dir.*pool.insecure"):
        Service(make_config(pool=pool, workers={"count": 0}), redis_url=redis_server.url).start()
    caplog.set_level(logging.WARNING, logger="detector.curve")
    service = Service(make_config(pool={**pool, "insecure": True}, workers={"count": 1}),
                      redis_url=redis_server.url).start()
    try:
        assert any("INSECURE" in r.getMessage() for r in caplog.records)
    finally:
        service.stop(drain=False)


def test_with_keys_only_authorised_workers_see_frames_or_send_results(
        tiny_model_dir, make_config, redis_server, redis_client, tmp_path):
    from producers.synthetic import write_video

    keys = tmp_path / "keys"
    assert cli("keys", "--dir", str(keys), "--worker", "remote1", "--worker", "revoked").returncode == 0
    (keys / "authorized/revoked.key").unlink()  # revoking = deleting its public key
    video = write_video(tmp_path / "long.mp4", 240, 320, 240)
    port = free_port_pair()
    frames, results = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}"
    config = make_config(pool={"frames_endpoint": frames, "results_endpoint": results,
                               "keys_dir": str(keys)},
                         workers={"count": 1, "max_batch": 4, "max_wait_ms": 10})
    service = Service(config, redis_url=redis_server.url).start()
    context = zmq.Context()
    eavesdroppers, injectors = [], []
    for curve in (None, "revoked", "stranger"):
        pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
        for sock in (pull, push):
            sock.setsockopt(zmq.LINGER, 0)
            if curve is not None:
                if curve == "revoked":
                    public, secret = zmq.auth.load_certificate(str(keys / "workers/revoked.key_secret"))
                else:
                    public, secret = zmq.curve_keypair()
                sock.curve_publickey, sock.curve_secretkey = public, secret
                sock.curve_serverkey = zmq.auth.load_certificate(str(keys / "server.key"))[0]
        pull.connect(frames)
        push.connect(results)
        eavesdroppers.append(pull)
        injectors.append(push)
    config_path = tmp_path / "worker.toml"
    config_path.write_text(f'[model]\nname = "tiny_b0"\ndir = "{tiny_model_dir}"\n'
                           '[faces]\ndetector = "haar"\n[workers]\ncount = 1\nmax_batch = 4\n')
    remote = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--config", str(config_path), "--connect", frames,
         "--server-key", str(keys / "server.key"), "--key", str(keys / "workers/remote1.key_secret")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_until(lambda: service.workers_ready() >= 2, 180, message="local and remote workers ready")
        remote_id = next(w for w in service.collector.workers if not w.startswith("w"))
        # when a stream runs while strangers listen and inject
        state = service.add_source(FileSource(video, "long"))
        received = 0
        deadline = time.monotonic() + 120
        while not state.done.is_set() and time.monotonic() < deadline:
            for pull in eavesdroppers:
                while pull.poll(0):
                    pull.recv_multipart()
                    received += 1
            for push in injectors:
                for parts in (forged("long", 0), forged("ghost", 0)):
                    try:
                        push.send_multipart(parts, zmq.NOBLOCK)
                    except zmq.Again:  # no peer took the connection: nothing can be sent
                        pass
            time.sleep(0.02)
        # then the stream is scored by the workers with keys only
        assert state.status == "finished" and state.frames_scored == 60
        assert received == 0, "a socket without an authorised key received frames"
        assert service.collector.results_rejected == 0, "forged results even reached the collector"
        assert set(redis_client.hkeys("deepfake:streams")) == {b"long"}
        assert service.collector.workers[remote_id].frames_scored > 0
        assert service.keyring.refused >= 2
    finally:
        for sock in eavesdroppers + injectors:
            sock.close(0)
        context.term()
        remote.terminate()
        output, _ = remote.communicate(timeout=30)
        service.stop()
    assert remote.returncode == 0, output
    assert "Traceback" not in output
