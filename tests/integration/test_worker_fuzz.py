"""Fuzz a real worker over real ZeroMQ: 10,000 malformed, truncated, oversized and
wrong-version frame messages, and hostile shared-memory references (slots out of range, rings
that are no rings of this service, path traversal); none may crash it, all are counted, and it
still scores, inline and from its ring."""

from __future__ import annotations

import json
import logging
import random
import time

import numpy as np
import pytest

from detector.frame_ring import DEFAULT_RING_PARENT, FrameRings, is_tmpfs
from detector.wire import (
    MAX_HEADER_BYTES,
    MAX_RING_SLOTS,
    MAX_SIDE_PX,
    SCHEMA_VERSION,
    FrameMessage,
    ResultMessage,
    WorkerStats,
    decode_worker_output,
)
from tests.conftest import serve_worker, wait_until

pytestmark = [
    pytest.mark.slow, pytest.mark.timeout(300),
    pytest.mark.skipif(not is_tmpfs(DEFAULT_RING_PARENT), reason="/dev/shm is not a tmpfs here"),
]
RING_SLOTS = 4
RING_SLOT_PX = 12  # the ring's slots hold 12×12 frames

N_MESSAGES = 10_000


def valid_parts(rng: random.Random) -> tuple[dict, bytes]:
    height, width = rng.randint(1, 12), rng.randint(1, 12)
    header = {
        "schema_version": SCHEMA_VERSION, "kind": "frame", "stream_id": f"fuzz{rng.randint(0, 9)}",
        "frame_index": rng.randint(0, 1000), "pts_s": rng.random(), "capture_time_s": time.time(),
        "shape": [height, width, 3], "dtype": "uint8", "want_thumbnail": rng.random() < 0.5,
    }
    return header, bytes(height * width * 3)


HUGE_INT = 10**400  # valid JSON; float() of it overflows
# Values each field must refuse.
BAD_VALUES = {
    "stream_id": [None, True, 5, "", "x" * 201, "x" * 65, "a\nb", "../etc", ".", "a b", [], {}],
    "frame_index": [None, True, -1, 3.5, "1", [], {}],
    "pts_s": [True, "0.5", [], {}, HUGE_INT],
    "capture_time_s": [None, True, "1", [], -1, -1e308, HUGE_INT],
    "shape": [None, True, [], [1, 2], [1, 2, 3, 4], "4x6", [1.5, 2, 3], [True, 1, 3], [0, 5, 3],
              [-1, 5, 3]],
    "dtype": [None, "float32", 1, "uint16"],
    "nonce": [5, True, [], {}, "n" * 65],
}
# Shared-memory references each worker must refuse (``{ring}``: the worker's real ring).
BAD_PAYLOADS = [
    {"ring": "../../../etc/passwd"}, {"ring": "/dev/shm/{ring}"}, {"ring": "{ring}/../{ring}"},
    {"ring": "../{ring}"}, {"ring": "{ring}\x00"}, {"ring": "RING-0123456789ABCDEF"},
    {"ring": "ring-0123456789abcdef"},  # well-formed, but no such ring
    {"ring": "sem.mp-0123456789"}, {"ring": ""}, {"ring": None}, {"ring": ["{ring}"]},
    {"slot": RING_SLOTS}, {"slot": MAX_RING_SLOTS - 1}, {"slot": MAX_RING_SLOTS}, {"slot": -1},
    {"slot": 2**64}, {"slot": True}, {"slot": "0"}, {"slot": 0.0}, {"slot": None},
    {"generation": -1}, {"generation": 2**63}, {"generation": HUGE_INT}, {"generation": "0"},
    {"format": "yuv420p"}, {"format": "rgb24"}, {"format": None},
    {"kind": "SHM"}, {"kind": "mmap"}, {"path": "/etc/passwd"}, {"offset": 0},
]


def malformed_message(rng: random.Random) -> list[bytes]:
    """One message that must be refused; every branch is a different way to be wrong."""
    header, pixels = valid_parts(rng)
    kind = rng.randrange(19)
    if kind == 0:  # random bytes
        return [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(1, 3))]
    if kind == 1:  # wrong schema version (True == 1 in Python, but not on the wire)
        header["schema_version"] = rng.choice([0, 3, 99, -1, "1", "2", 1.5, 2.5, None, True,
                                               HUGE_INT])
    elif kind == 2:  # wrong kind
        header["kind"] = rng.choice(["result", "worker_stats", "", None, 7, "FRAME"])
    elif kind == 3:  # a field missing
        del header[rng.choice(["stream_id", "frame_index", "capture_time_s", "shape"])]
    elif kind == 4:  # a field of the wrong type or out of range
        name = rng.choice(sorted(BAD_VALUES))
        header[name] = rng.choice(BAD_VALUES[name])
    elif kind == 5:  # shape lies about the pixel count
        height, width, _ = header["shape"]
        header["shape"] = [height + rng.randint(1, 5), width, 3]
    elif kind == 6:  # truncated pixels
        return [json.dumps(header).encode(), pixels[: max(0, len(pixels) - rng.randint(1, 9))]]
    elif kind == 7:  # truncated header
        raw = json.dumps(header).encode()
        return [raw[: rng.randint(0, len(raw) - 1)], pixels]
    elif kind == 8:  # oversized header
        header["stream_id"] = "s" * (MAX_HEADER_BYTES + rng.randint(1, 100))
    elif kind == 9:  # oversized frame (larger than MAX_SIDE_PX)
        header["shape"] = [MAX_SIDE_PX + 1, rng.randint(1, 4), 3]
        pixels = bytes(3 * header["shape"][0] * header["shape"][1])
    elif kind == 10:  # wrong part count
        parts = [json.dumps(header).encode(), pixels]
        return parts[:1] if rng.random() < 0.5 else parts + [b"extra"]
    elif kind == 11:  # not a JSON object
        return [json.dumps(rng.choice([[], 1, "frame", None, [header]])).encode(), pixels]
    elif kind == 12:  # not UTF-8
        return [b"\xff\xfe" + json.dumps(header).encode(), pixels]
    elif kind == 13:  # a channel count other than 3, or another dtype
        header["shape"] = [header["shape"][0], header["shape"][1], rng.choice([1, 4, 0, -3])]
        header["dtype"] = rng.choice(["uint8", "float32", "uint16"])
        if header["shape"][2] == 3:
            header["dtype"] = "float32"
    elif kind == 16:  # a hostile shared-memory reference
        payload = {**SLOT, **rng.choice(BAD_PAYLOADS)}
        header["payload"] = {k: v.replace("{ring}", RING_NAME[0]) if isinstance(v, str) else v
                             for k, v in payload.items()}
        return [json.dumps(header).encode()]
    elif kind == 17:  # a frame larger than the ring's slots, or shared memory and pixels too
        header["payload"] = dict(SLOT)
        if rng.random() < 0.5:
            header["shape"] = [RING_SLOT_PX * 10, RING_SLOT_PX * 10, 3]
            return [json.dumps(header).encode()]
        return [json.dumps(header).encode(), pixels]
    elif kind == 18:  # a payload that is no object, or inline without pixels
        header["payload"] = rng.choice(["shm", 1, [SLOT], {"kind": "inline"}, {"kind": None}])
        return [json.dumps(header).encode()]
    elif kind == 14:  # an integer too long for Python to parse (> 4300 digits)
        raw = json.dumps(header).replace(f'"frame_index": {header["frame_index"]}',
                                         '"frame_index": ' + "7" * 5000)
        return [raw.encode(), pixels]
    else:  # JSON with non-finite numbers (Python's json reads NaN and Infinity)
        name = rng.choice(["capture_time_s", "pts_s", "frame_index"])
        header[name] = "@"
        raw = json.dumps(header).replace('"@"', rng.choice(["NaN", "Infinity", "-Infinity"]))
        return [raw.encode(), pixels]
    return [json.dumps(header).encode(), pixels]


RING_NAME = [""]  # the fuzzed worker's ring, once made
SLOT = {"kind": "shm", "ring": "", "slot": 0, "generation": 0, "format": "bgr24"}


@pytest.fixture
def pool(make_config):
    config = make_config(workers={"max_batch": 4, "max_wait_ms": 10})
    rings = FrameRings.create(max_slots=RING_SLOTS)
    ring = rings.new_ring(RING_SLOT_PX * RING_SLOT_PX * 3, RING_SLOTS)
    RING_NAME[0] = SLOT["ring"] = ring.name
    with serve_worker(config, "fuzz", rings) as served:
        yield served.push, served.pull, served.worker, served.thread, served.crashed, ring


def test_ten_thousand_bad_messages_are_counted_and_the_worker_still_scores(pool, caplog):
    push, pull, worker, thread, crashed, ring = pool
    caplog.set_level(logging.ERROR, logger="detector.worker")  # 10,000 warnings are expected
    rng = random.Random(5)
    # given 10,000 messages that are each wrong in some way
    for _ in range(N_MESSAGES):
        push.send_multipart(malformed_message(rng))
    # when they have all been received
    wait_until(lambda: worker.malformed_messages >= N_MESSAGES or crashed, 120,
               message="all bad messages received")
    # then the worker is alive and counted each one
    assert not crashed, f"the worker crashed: {crashed[0]!r}"
    assert thread.is_alive()
    assert worker.malformed_messages == N_MESSAGES
    # and a valid frame afterwards is still scored, and the stats report the count
    image = np.zeros((64, 64, 3), np.uint8)
    push.send_multipart(FrameMessage("good", 7, 0.25, time.time(), image).encode())
    result, stats = None, None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (result is None or stats is None):
        if pull.poll(200):
            message = decode_worker_output(pull.recv_multipart())
            if isinstance(message, ResultMessage):
                result = message
            elif isinstance(message, WorkerStats) and message.malformed_messages == N_MESSAGES:
                stats = message
    assert result is not None and (result.stream_id, result.frame_index) == ("good", 7)
    assert result.error is None and result.faces == ()
    assert stats is not None and stats.worker_id == "fuzz"
    assert worker.frames_scored == 1
    # and so is a frame waiting in its ring, after all those hostile references to it
    ref, view = ring.write(ring.claim(), np.zeros((RING_SLOT_PX, RING_SLOT_PX, 3), np.uint8))
    push.send_multipart(FrameMessage("good", 8, 0.5, time.time(), view, slot=ref).encode())
    wait_until(lambda: worker.frames_scored == 2, 30, message="the ring's frame scored")
    assert worker.malformed_messages == N_MESSAGES and worker.stale_frames == 0
