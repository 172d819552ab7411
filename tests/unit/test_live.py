"""The live reader loop: backoff, reconnects and statuses, with scripted sources."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zmq

from detector.config import SourcesConfig
from detector.errors import SourceError
from producers.base import SourceFrame
from producers.hub import ProducerHub
from producers.live import backoff_delay_s, make_live_reader
from tests.conftest import wait_until


@pytest.mark.parametrize("attempt, expected", [
    (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (500, 10.0),
])
def test_backoff_doubles_and_is_capped(attempt, expected):
    assert backoff_delay_s(attempt, 1.0, 10.0) == expected


@pytest.mark.parametrize("attempt, min_s, max_s", [(0, 1.0, 10.0), (1, 0.0, 1.0), (1, 2.0, 1.0)])
def test_backoff_refuses_bad_arguments(attempt, min_s, max_s):
    with pytest.raises(ValueError):
        backoff_delay_s(attempt, min_s, max_s)


class ScriptedSource:
    """Each open() takes the next step: an int = yield that many frames then end (EOF),
    "refuse" = open fails, "forever" = frames until closed."""

    is_live = True

    def __init__(self, steps):
        self.stream_id = "cam"
        self.display_url = "rtsp://***@cam/x"
        self.steps = list(steps)
        self.step = None
        self.opens = 0
        self.closed = threading.Event()

    def open(self):
        self.opens += 1
        self.step = self.steps.pop(0) if self.steps else "forever"
        if self.step == "refuse":
            raise SourceError("rtsp://***@cam/x: cannot connect (Connection refused)")

    def frames(self):
        count = 10**9 if self.step == "forever" else self.step
        for i in range(count):
            yield SourceFrame(i, None, 0.0, np.zeros((8, 8, 3), np.uint8))
            if self.step == "forever":
                threading.Event().wait(0.005)

    def close(self):
        self.closed.set()


@pytest.fixture
def hub_and_statuses():
    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind("inproc://frames")
    statuses: list[tuple[str, dict]] = []
    sources = SourcesConfig(stall_timeout_s=1.0, reconnect_min_s=0.01, reconnect_max_s=0.04)
    hub = ProducerHub(socket, lambda sid, status, info: statuses.append((status, info)),
                      live_buffer_frames=2, live_reader=make_live_reader(sources))
    yield hub, statuses
    hub.close()
    socket.close(0)
    context.term()


@pytest.mark.timeout(30)
def test_reconnects_after_eof_and_refusals_and_keeps_counting(hub_and_statuses):
    # given a camera that ends, then refuses twice, then streams
    hub, statuses = hub_and_statuses
    source = ScriptedSource([3, "refuse", "refuse", "forever"])
    handle = hub.add(source, stride=1)
    # when frames flow again
    wait_until(lambda: handle.counters.frames_read > 20, 10, message="frames after reconnect")
    hub.remove("cam")
    # then the statuses tell the story and nothing was given up
    names = [s for s, _ in statuses]
    assert names[0] == "connecting"
    assert names.count("running") == 2
    assert names.count("reconnecting") == 3
    assert "failed" not in names and names[-1] == "stopped"
    assert handle.counters.reconnects == 3
    reconnecting = [info for s, info in statuses if s == "reconnecting"]
    assert [i["retry_in_s"] for i in reconnecting] == [0.01, 0.02, 0.04]
    assert "ended the stream" in reconnecting[0]["error"]
    assert "refused" in reconnecting[1]["error"]
    assert handle.is_done


@pytest.mark.timeout(30)
def test_frame_indices_continue_across_reconnects(hub_and_statuses):
    hub, _ = hub_and_statuses
    source = ScriptedSource([2, 2, 2, "forever"])
    hub.add(source, stride=1)
    seen = []
    original = hub.offer
    hub.offer = lambda h, frame: (seen.append(frame.frame_index), original(h, frame))
    wait_until(lambda: len(seen) > 10, 10, message="frames")
    hub.remove("cam")
    assert seen[:10] == list(range(seen[0], seen[0] + 10))


class FlakyCamera:
    """A fake cv2.VideoCapture: the 1st device delivers 5 frames then is unplugged, the 2nd
    cannot be opened, the 3rd streams."""

    def __init__(self):
        self.generation = 0

    def __call__(self, device):
        from tests.unit.test_webcam_source import FakeCapture

        self.generation += 1
        frames = {1: 5, 2: 0, 3: 10**9}.get(self.generation, 10**9)
        return FakeCapture(device, frames=frames, is_opened=self.generation != 2)


@pytest.mark.timeout(30)
def test_an_unplugged_webcam_is_reopened(hub_and_statuses):
    from producers.webcam_source import WebcamSource

    hub, statuses = hub_and_statuses
    camera = FlakyCamera()
    handle = hub.add(WebcamSource("webcam:0", "cam", open_capture=camera), stride=2)
    wait_until(lambda: handle.counters.frames_read > 50, 10, message="frames after replug")
    hub.remove("cam")
    names = [s for s, _ in statuses]
    assert names[:3] == ["connecting", "running", "reconnecting"]
    assert "running" in names[3:] and names[-1] == "stopped"
    assert camera.generation == 3 and handle.counters.reconnects == 2
    assert handle.counters.frames_sampled == (handle.counters.frames_read + 1) // 2
