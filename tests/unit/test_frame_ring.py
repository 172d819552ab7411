"""Shared-memory frame rings: slot lifecycle, generations, and what a worker refuses to map."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from detector.errors import WireFormatError
from detector.frame_ring import DEFAULT_RING_PARENT, FrameRing, FrameRings, RingReader, is_tmpfs
from detector.wire import SlotRef

pytestmark = pytest.mark.skipif(not is_tmpfs(DEFAULT_RING_PARENT),
                                reason="/dev/shm is not a tmpfs here")


@pytest.fixture
def rings():
    made = FrameRings.create(max_slots=8)
    assert made is not None
    yield made
    made.close()


def image(value: int, shape=(4, 6, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


def test_the_folder_and_ring_files_are_private_to_the_user(rings):
    ring = rings.new_ring(72, slot_count=3)
    assert stat.S_IMODE(os.stat(rings.folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(ring.path).st_mode) == 0o600
    assert ring.path.parent == rings.folder and ring.slot_bytes == 4096
    assert is_tmpfs(rings.folder)


def test_a_written_slot_is_read_by_a_worker_until_it_is_released(rings):
    ring = rings.new_ring(72, slot_count=3)
    reader = RingReader(rings.folder)
    # given a frame written into a slot
    slot = ring.claim()
    ref, view = ring.write(slot, image(7))
    assert view.base is not None and ring.slots_in_use == 1
    # then a worker reads its pixels, read-only, and the slot is current
    pixels = reader.view(ref, (4, 6, 3))
    assert (pixels == 7).all() and not pixels.flags.writeable
    assert reader.is_current(ref)
    # when its result is answered, the slot is free and the worker's reference is stale
    assert rings.release(ref)
    assert not reader.is_current(ref) and ring.slots_in_use == 0
    assert not rings.release(ref)  # a second answer frees nothing
    # and the slot, written again, has a new generation
    again = None
    for _ in range(3):
        index = ring.claim()
        again, _ = ring.write(index, image(9))
        if index == slot:
            break
    assert again.slot == slot and again.generation == ref.generation + 1


def test_released_slots_are_reused_last_and_a_full_ring_claims_nothing(rings):
    ring = rings.new_ring(72, slot_count=3)
    refs = [ring.write(ring.claim(), image(i))[0] for i in range(3)]
    assert ring.claim(timeout_s=0.0) is None  # full
    rings.release(refs[1])
    rings.release(refs[0])
    assert [ring.claim(), ring.claim()] == [1, 0]  # oldest released first
    assert rings.slot_counts() == (5, 2)


def test_a_retired_ring_is_removed_when_its_last_slot_is_free(rings):
    ring = rings.new_ring(72, slot_count=2)
    ref, _ = ring.write(ring.claim(), image(1))
    ring.retire()
    assert ring.path.exists() and ring.claim(timeout_s=0.0) is None
    rings.release(ref)
    assert not ring.path.exists() and rings.rings() == []
    assert rings.slot_counts() == (1, 1)


def test_close_removes_the_folder():
    made = FrameRings.create(max_slots=2)
    ring = made.new_ring(72, slot_count=2)
    ring.write(ring.claim(), image(1))
    made.close()
    assert not made.folder.exists()


def test_a_frame_larger_than_the_slot_is_refused(rings):
    ring = rings.new_ring(72, slot_count=2)
    with pytest.raises(ValueError, match="at most 4096 bytes"):
        ring.write(ring.claim(), image(0, (64, 64, 3)))


def test_a_non_tmpfs_parent_means_no_rings(tmp_path):
    if is_tmpfs(tmp_path):
        pytest.skip("the test folder is on tmpfs here")
    assert FrameRings.create(4, parent=tmp_path) is None


def _reader_error(folder: Path, ref: SlotRef, shape=(4, 6, 3)) -> str:
    with pytest.raises(WireFormatError) as caught:
        RingReader(folder).view(ref, shape)
    return str(caught.value)


def test_what_a_worker_refuses_to_map(rings):
    ring = rings.new_ring(72, slot_count=2)
    ref, _ = ring.write(ring.claim(), image(1))
    folder = rings.folder
    # a slot beyond the ring, a frame larger than a slot, a ring that does not exist
    assert "slot below 2" in _reader_error(folder, SlotRef(ring.name, 2, 0))
    assert "does not fit" in _reader_error(folder, ref, (64, 64, 3))
    assert "does not exist" in _reader_error(folder, SlotRef("ring-" + "0" * 16, 0, 0))
    # a symbolic link in the folder, even to a real ring
    link = folder / ("ring-" + "1" * 16)
    link.symlink_to(ring.path)
    assert "cannot be opened" in _reader_error(folder, SlotRef(link.name, 0, 0))
    # a file others can read, and a file that is no ring
    loose = folder / ("ring-" + "2" * 16)
    loose.write_bytes(ring.path.read_bytes())
    loose.chmod(0o644)
    assert "not private" in _reader_error(folder, SlotRef(loose.name, 0, 0))
    fake = folder / ("ring-" + "3" * 16)
    fake.write_bytes(b"\0" * 8192)
    fake.chmod(0o600)
    assert "no valid ring header" in _reader_error(folder, SlotRef(fake.name, 0, 0))
    short = folder / ("ring-" + "4" * 16)
    short.write_bytes(b"DFRING01")
    short.chmod(0o600)
    assert "too short" in _reader_error(folder, SlotRef(short.name, 0, 0))


def test_a_worker_forgets_rings_that_were_removed(rings):
    ring = rings.new_ring(72, slot_count=2)
    ref, _ = ring.write(ring.claim(), image(1))
    reader = RingReader(rings.folder)
    reader.view(ref, (4, 6, 3))
    assert reader.forget_removed() == 0
    ring.retire()
    rings.release(ref)
    assert reader.forget_removed() == 1
    assert not reader.is_current(ref)


def test_a_direct_ring_needs_a_slot():
    with pytest.raises(ValueError, match="slot_count >= 1"):
        FrameRing(DEFAULT_RING_PARENT, 0, 10)


@pytest.mark.parametrize("pool,has_rings", [
    ({}, True),  # auto = private ipc:// sockets
    ({"frames_endpoint": "ipc:///tmp/pool-frames", "results_endpoint": "ipc:///tmp/pool-results"}, True),
    ({"shared_memory": False}, False),
    ({"frames_endpoint": "tcp://127.0.0.1:5555", "results_endpoint": "tcp://127.0.0.1:5556"}, False),
])
def test_shared_memory_only_where_no_remote_worker_can_join(pool, has_rings):
    from app.service import Service
    from detector.config import config_from_dict

    rings = Service(config_from_dict({"pool": pool}))._make_rings()
    try:
        assert (rings is not None) == has_rings
    finally:
        if rings is not None:
            rings.close()
