"""Frames through shared memory (issue 11): a real worker reads them from a real ring and
answers a stale slot with an error; a killed worker leaks no slot of a live stream."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from app.service import Service
from detector.frame_ring import DEFAULT_RING_PARENT, FrameRings, is_tmpfs
from detector.wire import FrameMessage, ResultMessage, SlotRef, decode_worker_output
from detector.worker import STALE_FRAME_ERROR
from producers.base import SourceFrame
from producers.synthetic import load_face_bgr, make_frame
from tests.conftest import serve_worker, wait_until

pytestmark = [
    pytest.mark.slow, pytest.mark.timeout(300),
    pytest.mark.skipif(not is_tmpfs(DEFAULT_RING_PARENT), reason="/dev/shm is not a tmpfs here"),
]


@pytest.fixture
def ring_worker(make_config):
    """A worker thread that reads the rings of ``rings`` (as the service's own workers do)."""
    config = make_config(workers={"max_batch": 4, "max_wait_ms": 10})
    rings = FrameRings.create(max_slots=4)
    with serve_worker(config, "ring", rings) as served:
        yield rings, served.push, served.pull, served.worker


def next_result(pull, timeout_s: float = 30.0) -> ResultMessage:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pull.poll(200):
            message = decode_worker_output(pull.recv_multipart())
            if isinstance(message, ResultMessage):
                return message
    raise AssertionError("no result came back")


def test_a_worker_scores_a_slot_and_answers_a_stale_one_with_an_error(ring_worker):
    rings, push, pull, worker = ring_worker
    image = make_frame(0, 320, 240, load_face_bgr())
    ring = rings.new_ring(image.nbytes, 4)

    def frame(index: int, ref: SlotRef, view: np.ndarray) -> list[bytes]:
        return FrameMessage("cam", index, None, time.time(), view, nonce="n", slot=ref).encode()

    # given a frame written into a slot, its header alone reaches the worker and is scored
    ref, view = ring.write(ring.claim(), image)
    parts = frame(0, ref, view)
    assert len(parts) == 1
    push.send_multipart(parts)
    first = next_result(pull)
    assert (first.frame_index, first.error, first.nonce) == (0, None, "n")
    # when a frame's slot is released (and so may be written again) before the worker reads it
    ref, view = ring.write(ring.claim(), image)
    rings.release(ref)
    push.send_multipart(frame(4, ref, view))
    # then the worker answers it with an error instead of scoring someone else's pixels
    stale = next_result(pull)
    assert (stale.frame_index, stale.error, stale.faces) == (4, STALE_FRAME_ERROR, ())
    assert worker.stale_frames == 1 and worker.malformed_messages == 0
    # and a well-formed reference to a ring that does not exist is malformed, not scored
    missing = SlotRef("ring-" + "0" * 16, 0, 0)
    push.send_multipart(frame(8, missing, view))
    wait_until(lambda: worker.malformed_messages == 1, 10, message="the missing ring counted")
    assert worker.frames_scored == 1


class SyntheticCamera:
    """A live source of index-stamped 320×240 frames with a face, at about 30 frames/s."""

    is_live = True

    def __init__(self, stream_id: str):
        self.stream_id = stream_id
        self.display_url = f"synthetic:{stream_id}"
        self._face = load_face_bgr()
        self._next = 0

    def open(self) -> None:
        pass

    def frames(self):
        while True:
            index = self._next
            self._next += 1
            yield SourceFrame(index, index / 30, time.time(), make_frame(index, 320, 240, self._face))
            time.sleep(1 / 30)

    def close(self) -> None:
        pass


def test_a_killed_worker_leaks_no_slot_of_a_live_stream(make_config, redis_server):
    config = make_config(workers={"count": 2, "max_batch": 2, "max_wait_ms": 10},
                         sampling={"stride": 2})
    service = Service(config, redis_url=redis_server.url).start()
    try:
        wait_until(lambda: service.workers_ready() >= 2, 180, message="two workers ready")
        state = service.add_source(SyntheticCamera("cam"))
        wait_until(lambda: state.frames_scored >= 10, 60, message="scoring started")
        ring = service.hub.handle("cam").ring
        assert ring is not None and ring.claimed >= 10  # the frames go through shared memory
        # when a worker is killed mid-stream
        victim = service.worker_pids()["w0"]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: service.worker_pids()["w0"] != victim, 30, message="w0 restarted")
        scored = state.frames_scored
        # then the camera goes on being scored: its ring did not fill with the dead worker's
        # frames, and no more slots are taken than its buffer and credit hold
        wait_until(lambda: state.frames_scored >= scored + 20, 60, message="scoring went on")
        limit = config.sources.live_buffer_frames + config.sources.max_in_flight_frames + 1
        assert ring.slots_in_use <= limit
        # and once it is detached, every slot is free and its ring file is gone
        assert service.detach_stream("cam")
        wait_until(lambda: service.rings.rings() == [], 10, message="the ring removed")
        claimed, released = service.rings.slot_counts()
        assert claimed == released >= scored + 20
        assert list(service.rings.folder.iterdir()) == []
    finally:
        service.stop()
    assert not service.rings.folder.exists()
