"""Named backpressure policies for the per-stream frame buffer.

- ``lossless`` (files): the reader blocks while the buffer is full; nothing is dropped.
- ``drop_oldest`` (live cameras): a full buffer discards its oldest frame so the newest is
  scored; every discarded frame is counted.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

LOSSLESS = "lossless"
DROP_OLDEST = "drop_oldest"
POLICIES = (LOSSLESS, DROP_OLDEST)


class FrameBuffer(Generic[T]):
    """A bounded FIFO with a backpressure policy; thread-safe.

    ``on_drop`` is called with each item a drop-oldest buffer discards (outside its lock), so
    what the item holds (a shared-memory slot) is given back.
    """

    def __init__(self, capacity: int, policy: str, on_drop: Callable[[T], object] | None = None):
        if capacity < 1:
            raise ValueError(f"expected capacity >= 1, got {capacity}")
        if policy not in POLICIES:
            raise ValueError(f"expected policy in {POLICIES}, got {policy!r}")
        self.capacity = capacity
        self.policy = policy
        self.dropped = 0
        self._on_drop = on_drop
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Condition()
        self._closed = False

    def put(self, item: T, timeout_s: float | None = None) -> bool:
        """Add ``item``. Lossless: wait for room (False if closed or timed out). Drop-oldest:
        never waits; returns True."""
        if self.policy == DROP_OLDEST:
            with self._lock:
                oldest = None
                if len(self._items) >= self.capacity:
                    oldest = self._items.popleft()
                    self.dropped += 1
                self._items.append(item)
            if oldest is not None and self._on_drop is not None:
                self._on_drop(oldest)
            return True
        with self._lock:
            has_room = self._lock.wait_for(
                lambda: self._closed or len(self._items) < self.capacity, timeout=timeout_s
            )
            if self._closed or not has_room:
                return False
            self._items.append(item)
            return True

    def count_drop(self) -> None:
        """Count a frame dropped before it reached the buffer (no free shared-memory slot)."""
        with self._lock:
            self.dropped += 1

    def drain(self) -> list[T]:
        """Take every item out (its stream stopped before they were sent)."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._lock.notify_all()
            return items

    def get_nowait(self) -> T | None:
        with self._lock:
            if not self._items:
                return None
            item = self._items.popleft()
            self._lock.notify_all()
            return item

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        """Wake blocked writers; later puts fail."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
