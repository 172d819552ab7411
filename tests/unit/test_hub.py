"""The hub's live credit: at most N frames of a live stream in flight, the rest dropped oldest-first."""

from __future__ import annotations

import pytest
import zmq

from detector.config import SourcesConfig
from detector.wire import FrameMessage
from producers.base import SourceFrame
from producers.hub import ProducerHub
from producers.live import make_live_reader
from tests.conftest import wait_until
from tests.unit.test_live import ScriptedSource


@pytest.fixture
def pool_sockets():
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.bind("inproc://pool")
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect("inproc://pool")
    hubs = []
    yield push, pull, hubs
    for hub in hubs:
        hub.close()
    push.close(0)
    pull.close(0)
    context.term()


def make_hub(push, hubs, scored: dict, lost_after_s: float = 60.0) -> ProducerHub:
    hub = ProducerHub(push, lambda *args: None, live_buffer_frames=2,
                      scored_count=lambda stream_id: scored.get(stream_id, 0),
                      live_max_in_flight=2, lost_after_s=lost_after_s,
                      live_reader=make_live_reader(SourcesConfig(reconnect_min_s=0.01)))
    hubs.append(hub)
    return hub


def received_indices(pull) -> list[int]:
    indices = []
    while pull.poll(100):
        indices.append(FrameMessage.decode(pull.recv_multipart()).frame_index)
    return indices


@pytest.mark.timeout(30)
def test_a_slow_pool_makes_a_live_stream_drop_instead_of_queueing(pool_sockets):
    push, pull, hubs = pool_sockets
    scored = {"cam": 0}
    hub = make_hub(push, hubs, scored)
    # given a camera and a pool that has scored nothing yet
    handle = hub.add(ScriptedSource(["forever"]), stride=1)
    wait_until(lambda: handle.counters.frames_read > 60, 10, message="frames read")
    # then only two frames went out; the rest were dropped oldest-first and counted
    assert handle.counters.frames_sent == 2
    assert handle.buffer.dropped >= 50
    first = received_indices(pull)
    assert len(first) == 2
    # when the pool scores them, the next frames sent are fresh ones, not the queued past
    scored["cam"] = 2
    wait_until(lambda: handle.counters.frames_sent == 4, 5, message="two more sent")
    later = received_indices(pull)
    assert len(later) == 2 and min(later) > max(first) + 40


@pytest.mark.timeout(30)
def test_frames_without_results_are_counted_lost_and_sending_resumes(pool_sockets):
    push, pull, hubs = pool_sockets
    hub = make_hub(push, hubs, scored={}, lost_after_s=0.2)
    handle = hub.add(ScriptedSource(["forever"]), stride=1)
    wait_until(lambda: handle.counters.frames_sent >= 6, 10, message="sending resumed")
    assert handle.frames_lost >= 4


@pytest.mark.timeout(30)
def test_files_are_not_limited(pool_sockets):
    push, pull, hubs = pool_sockets
    hub = make_hub(push, hubs, scored={})
    source = ScriptedSource([10])
    source.is_live = False
    handle = hub.add(source, stride=1)
    wait_until(lambda: handle.counters.frames_sent == 10, 10, message="all file frames sent")
    assert len(received_indices(pull)) == 10 and handle.buffer.dropped == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("live", [True, False])
def test_only_live_thumbnail_frames_are_handed_over_once_sent(pool_sockets, live):
    push, pull, hubs = pool_sockets
    kept: list[FrameMessage] = []
    hub = ProducerHub(push, lambda *args: None, thumbnail_interval_s=0.0,
                      on_live_thumbnail_sent=kept.append,
                      live_reader=make_live_reader(SourcesConfig(reconnect_min_s=0.01)))
    hubs.append(hub)
    source = ScriptedSource(["forever"] if live else [8])
    source.is_live = live
    handle = hub.add(source, stride=2)
    wait_until(lambda: handle.counters.frames_sent >= 4, 10, message="frames sent")
    hub.remove(source.stream_id)
    kept = list(kept)  # everything handed over so far was sent before this point
    sent = received_indices(pull)
    if live:
        assert kept and all(m.want_thumbnail for m in kept)
        assert {m.frame_index for m in kept} <= set(sent)
        assert all(m.image_bgr is not None for m in kept)
    else:
        assert kept == []


@pytest.mark.timeout(30)
def test_the_sender_survives_a_failing_round(pool_sockets, caplog):
    push, pull, hubs = pool_sockets
    calls = {"n": 0}

    def scored_count(stream_id):
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RuntimeError("boom")  # a bug anywhere in one sending round
        return 10**6

    hub = ProducerHub(push, lambda *args: None, scored_count=scored_count,
                      live_reader=make_live_reader(SourcesConfig(reconnect_min_s=0.01)))
    hubs.append(hub)
    # given a sender whose first rounds fail
    hub.add(ScriptedSource(["forever"]), stride=1)
    # then it logs them and goes on sending
    wait_until(lambda: pull.poll(100), 10, message="a frame after the failing rounds")
    assert "sender: one round failed" in caplog.text
    assert hub._sender.is_alive()


class RecordingFileSource:
    """A real FileSource that keeps every frame it yields, to look at them afterwards."""

    is_live = False

    def __init__(self, path):
        from producers.file_source import FileSource

        self._source = FileSource(path, "recorded")
        self.stream_id = self._source.stream_id
        self.display_url = self._source.display_url
        self.yielded = []

    def open(self):
        self._source.open()

    def frames(self):
        for frame in self._source.frames():
            self.yielded.append(frame)
            yield frame

    def close(self):
        self._source.close()


@pytest.mark.timeout(60)
def test_only_sampled_frames_are_converted_to_bgr(pool_sockets, face_video):
    from producers.synthetic import read_index

    push, pull, hubs = pool_sockets
    hub = make_hub(push, hubs, scored={})
    source = RecordingFileSource(face_video)
    # given a 42-frame file read with stride 4
    handle = hub.add(source, stride=4)
    wait_until(lambda: handle.is_done, 30, message="the file read to its end")
    # then every frame was read and counted, but only frames 0, 4, … 40 became BGR arrays
    assert handle.counters.frames_read == 42 and handle.counters.frames_sampled == 11
    converted = [frame.frame_index for frame in source.yielded if frame.is_converted]
    assert converted == list(range(0, 42, 4))
    # and the frames sent carry the right pixels
    sent = []
    while pull.poll(100):
        message = FrameMessage.decode(pull.recv_multipart())
        sent.append((message.frame_index, read_index(message.image_bgr)))
    assert sent == [(i, i) for i in range(0, 42, 4)]


@pytest.fixture
def small_rings():
    from detector.frame_ring import DEFAULT_RING_PARENT, FrameRings, is_tmpfs

    if not is_tmpfs(DEFAULT_RING_PARENT):
        pytest.skip("/dev/shm is not a tmpfs here")
    rings = FrameRings.create(max_slots=2)
    yield rings
    rings.close()


def received(pull, rings) -> list[FrameMessage]:
    from detector.frame_ring import RingReader

    reader = RingReader(rings.folder)
    messages = []
    while pull.poll(100):
        messages.append(FrameMessage.decode(pull.recv_multipart(), reader))
    return messages


@pytest.mark.timeout(30)
def test_a_live_stream_whose_ring_is_full_drops_and_counts_the_frame(pool_sockets, small_rings):
    push, pull, hubs = pool_sockets
    # given a camera with a ring of 2 slots, a credit of 4 frames in flight and nothing scored
    hub = ProducerHub(push, lambda *args: None, live_buffer_frames=2, scored_count=lambda s: 0,
                      live_max_in_flight=4, lost_after_s=60.0, rings=small_rings,
                      live_reader=make_live_reader(SourcesConfig(reconnect_min_s=0.01)))
    hubs.append(hub)
    handle = hub.add(ScriptedSource(["forever"]), stride=1)
    wait_until(lambda: handle.counters.frames_read > 40, 10, message="frames read")
    # then two frames went out through the ring and the others were dropped, each counted
    sent = received(pull, small_rings)
    assert len(sent) == 2 and all(m.slot is not None for m in sent)
    assert handle.ring.slot_count == 2 and handle.ring.slots_in_use == 2
    assert handle.counters.frames_dropped >= 30
    assert handle.buffer.dropped == handle.counters.frames_dropped
    # when the stream stops and its run ends, every slot is free and the ring file is gone
    hub.remove("cam")
    hub.ledger.close_stream("cam")
    assert small_rings.rings() == []
    claimed, released = small_rings.slot_counts()
    assert claimed == released >= 2


@pytest.mark.timeout(30)
def test_a_file_whose_ring_is_full_waits_and_loses_nothing(pool_sockets, small_rings):
    from producers.synthetic import make_frame, read_index

    push, pull, hubs = pool_sockets
    hub = ProducerHub(push, lambda *args: None, rings=small_rings,
                      live_reader=make_live_reader(SourcesConfig(reconnect_min_s=0.01)))
    hubs.append(hub)
    source = ScriptedSource([12])
    source.is_live = False
    source.frames = lambda: (SourceFrame(i, None, 1.0, make_frame(i, 320, 32, None)) for i in range(12))
    nonce = hub.ledger.open_stream("cam")
    # given a 12-frame file with a ring of 2 slots and no result yet
    handle = hub.add(source, stride=1, nonce=nonce)
    first = []
    wait_until(lambda: first.extend(received(pull, small_rings)) or len(first) >= 2, 10,
               message="two frames sent")
    # then the reader waits: no third frame, nothing dropped
    assert not pull.poll(300) and handle.counters.frames_sent == 2
    assert handle.buffer.dropped == 0 and handle.ring.slots_in_use == 2
    # when each frame's result comes back, its slot carries the next frame, until the end
    got = list(first)
    for answered in range(12):
        wait_until(lambda n=answered: got.extend(received(pull, small_rings)) or len(got) > n, 10,
                   message=f"frame {answered} sent")
        message = got[answered]
        assert read_index(message.image_bgr) == message.frame_index  # its own pixels
        assert hub.ledger.answer("cam", message.frame_index, nonce)
    assert [m.frame_index for m in got] == list(range(12))
    wait_until(lambda: handle.is_done, 10, message="the file read to its end")
    wait_until(lambda: small_rings.rings() == [], 5, message="the ring removed")
    assert small_rings.slot_counts() == (12, 12) and handle.buffer.dropped == 0
