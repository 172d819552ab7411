import threading
import time

import pytest

from producers.backpressure import DROP_OLDEST, LOSSLESS, FrameBuffer


def test_drop_oldest_keeps_the_newest_and_counts_drops():
    buffer = FrameBuffer(2, DROP_OLDEST)
    for i in range(5):
        assert buffer.put(i)
    assert buffer.dropped == 3
    assert [buffer.get_nowait(), buffer.get_nowait(), buffer.get_nowait()] == [3, 4, None]


def test_lossless_blocks_until_room_and_never_drops():
    buffer = FrameBuffer(1, LOSSLESS)
    assert buffer.put("a")
    assert buffer.put("b", timeout_s=0.05) is False  # full: the writer waits
    got = []

    def reader():
        time.sleep(0.1)
        got.append(buffer.get_nowait())

    thread = threading.Thread(target=reader)
    thread.start()
    assert buffer.put("b", timeout_s=5)
    thread.join()
    assert got == ["a"] and buffer.get_nowait() == "b" and buffer.dropped == 0


def test_close_wakes_a_blocked_writer():
    buffer = FrameBuffer(1, LOSSLESS)
    buffer.put(1)
    threading.Timer(0.05, buffer.close).start()
    assert buffer.put(2, timeout_s=5) is False


@pytest.mark.parametrize("capacity,policy", [(0, LOSSLESS), (1, "drop_newest")])
def test_bad_buffer_settings(capacity, policy):
    with pytest.raises(ValueError):
        FrameBuffer(capacity, policy)
