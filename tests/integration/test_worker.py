"""A worker over real ZeroMQ sockets, batching frames from several streams."""

import threading
import time

import numpy as np
import pytest
import zmq

from detector.wire import FrameMessage, ResultMessage, decode_worker_output
from detector.worker import Worker, WorkerEndpoints, build_frame_scorer, results_endpoint_for
from producers.synthetic import load_face_bgr, make_frame
from tests.conftest import serve_worker


@pytest.fixture
def pool(make_config):
    config = make_config(workers={"max_batch": 6, "max_wait_ms": 200})
    with serve_worker(config, "t0") as served:
        yield served.push, served.pull, served.worker


def receive_results(pull, count, timeout_s=60):
    results = []
    deadline = time.monotonic() + timeout_s
    while len(results) < count and time.monotonic() < deadline:
        if pull.poll(200):
            message = decode_worker_output(pull.recv_multipart())
            if isinstance(message, ResultMessage):
                results.append(message)
    return results


def test_frames_from_two_streams_are_scored_in_shared_batches(pool):
    push, pull, worker = pool
    face = load_face_bgr()
    for i in range(6):
        stream = "a" if i % 2 else "b"
        image = make_frame(i, 320, 240, face)
        push.send_multipart(FrameMessage(stream, i, i / 30, time.time(), image).encode())
    results = receive_results(pull, 6)
    assert sorted((r.stream_id, r.frame_index) for r in results) == sorted(
        (("a" if i % 2 else "b"), i) for i in range(6))
    assert max(r.batch_size for r in results) > 1  # both streams shared a model call
    assert all(len(r.faces) == 1 for r in results)
    assert all(0.0 <= r.faces[0].fake_probability <= 1.0 for r in results)
    assert all(r.timings_ms["classify"] >= 0 for r in results)


def test_malformed_messages_are_counted_and_the_worker_keeps_serving(pool, caplog):
    push, pull, worker = pool
    push.send_multipart([b"not json", b"xx"])
    push.send_multipart([b'{"schema_version": 99, "kind": "frame", "stream_id": "cam"}', b""])
    push.send_multipart([b"only one part"])
    image = np.zeros((64, 64, 3), np.uint8)
    push.send_multipart(FrameMessage("cam", 0, None, time.time(), image, want_thumbnail=True).encode())
    results = receive_results(pull, 1)
    assert len(results) == 1 and results[0].faces == ()  # no face: an empty list, not a score
    assert results[0].thumbnail_jpeg[:2] == b"\xff\xd8"
    assert worker.malformed_messages == 3
    assert "stream cam" in caplog.text
    # a version it does not read is named, with the versions it does
    assert "expected schema_version 1 or 2 (the versions this side reads), got 99" in caplog.text


def test_results_endpoint_defaults_to_the_next_port():
    assert results_endpoint_for("tcp://10.0.0.5:5555") == "tcp://10.0.0.5:5556"
    assert results_endpoint_for("ipc:///tmp/x/frames") == "ipc:///tmp/x/frames-results"
    with pytest.raises(ValueError):
        results_endpoint_for("tcp://host")


def box_pixels(jpeg: bytes) -> tuple[int, int]:
    """(red, green) pixels of the thumbnail's box colours."""
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
    red = np.all(np.abs(image - (40, 40, 230)) < 45, axis=2).sum()
    green = np.all(np.abs(image - (60, 200, 60)) < 45, axis=2).sum()
    return int(red), int(green)


def test_thumbnail_boxes_use_scoring_threshold_when_set_not_the_cards(make_config):
    # Given a face whose probability lies on one side of the card's threshold and a
    # scoring.threshold on the other side of it
    face = load_face_bgr()
    image = make_frame(0, 320, 240, face)
    scorer = build_frame_scorer(make_config())
    results, _ = scorer.score_frames([image], scorer.detect([image]))
    probability = results[0][0].fake_probability
    card_threshold = scorer.card.threshold
    assert 0.0 < probability < 1.0
    if probability >= card_threshold:
        threshold, expected = (probability + 1.0) / 2, "green"   # the verdict is REAL
    else:
        threshold, expected = probability / 2, "red"             # the verdict is FAKE
    config = make_config(workers={"max_batch": 1, "max_wait_ms": 0},
                         scoring={"threshold": threshold})
    # When the worker scores it with a thumbnail
    with serve_worker(config, "t0") as served:
        served.push.send_multipart(FrameMessage("cam", 0, 0.0, time.time(), image,
                                                want_thumbnail=True).encode())
        result = receive_results(served.pull, 1)[0]
    # Then the box has the verdict's colour
    assert abs(result.faces[0].fake_probability - probability) < 0.01
    red, green = box_pixels(result.thumbnail_jpeg)
    shown, other = (red, green) if expected == "red" else (green, red)
    assert shown > 50 and other < shown / 10, \
        (probability, card_threshold, threshold, red, green)


def test_a_worker_says_it_is_ready_only_once_the_pool_can_deal_it_frames(make_config, caplog):
    # Given a worker whose results socket reaches a collector but whose frames endpoint has
    # no pool behind it yet
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    results_port = pull.bind_to_random_port("tcp://127.0.0.1")
    probe = context.socket(zmq.PUSH)
    frames_port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)  # a free port: nothing listens there until the pool binds it below
    frames = f"tcp://127.0.0.1:{frames_port}"
    config = make_config(workers={"max_batch": 1, "max_wait_ms": 0})
    worker = Worker.for_config(config, WorkerEndpoints(frames, f"tcp://127.0.0.1:{results_port}"),
                               "t0", build_frame_scorer(config), context)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    push = context.socket(zmq.PUSH)
    try:
        thread.start()
        # Then it sends no "ready" while no pool answers
        assert not pull.poll(1500), "the worker said it was ready before any pool answered"
        # When the pool binds its frames socket
        push.bind(frames)
        # Then "ready" arrives, and a frame sent right after it is scored by this worker
        assert pull.poll(10_000), "no ready message once the pool answered"
        stats = decode_worker_output(pull.recv_multipart())
        assert stats.is_ready and stats.worker_id == "t0"
        push.send_multipart(FrameMessage("cam", 0, 0.0, time.time(),
                                         np.zeros((64, 64, 3), np.uint8)).encode(), zmq.NOBLOCK)
        assert [r.frame_index for r in receive_results(pull, 1)] == [0]
    finally:
        stop.set()
        thread.join(10)
        worker.close()
        for sock in (push, pull):
            sock.close(0)
        context.term()
    assert not thread.is_alive()


def test_a_worker_that_no_pool_answers_stops_when_told(make_config):
    context = zmq.Context()
    probe = context.socket(zmq.PUSH)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)
    config = make_config()
    worker = Worker.for_config(config, WorkerEndpoints(f"tcp://127.0.0.1:{port}",
                                                       f"tcp://127.0.0.1:{port}"),
                               "t0", build_frame_scorer(config), context)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert worker.wait_for_pool(stop) is False
    assert time.monotonic() - started < 5
    worker._close_monitor()
    worker._pull.close(0)
    worker._push.close(0)
    context.term()
