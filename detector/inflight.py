"""The ledger of frames sent to the worker pool and not yet answered.

The producer hub writes each frame into it just before handing the frame to ZeroMQ; the
collector accepts a result only when it answers an open entry — same stream, same frame index,
same per-stream-run nonce — and closes the entry, so a result is counted at most once and a
result nobody asked for (forged, late from an earlier run of the stream id, or a duplicate of a
resent frame) is dropped and counted. File frames stay in the ledger until answered, so they
can be sent again when a worker dies or hangs (docs/threat-model.md, docs/wire.md).

A frame whose pixels wait in a shared-memory slot (detector/frame_ring.py) holds that slot while
its entry is open: the slot is released when the entry is answered, when its stream run ends,
when a live entry expires, and, for live frames, when a worker is lost. File frames keep their
slot until answered, so a resend names the same slot.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from detector.wire import FrameMessage, SlotRef


@dataclass
class _Entry:
    nonce: str
    sent_s: float
    message: FrameMessage | None  # kept for file frames (they may be sent again), else None
    sends: int = 1
    slot: SlotRef | None = None  # the shared-memory slot its pixels wait in, until released


class InFlightLedger:
    """Thread-safe map ``(stream id, frame index) → open entry``.

    Args:
        live_expiry_s: a live frame's entry is forgotten after this long without a result
            (live frames are never sent again; this bounds the ledger's memory).
        release_slot: frees a frame's shared-memory slot (``FrameRings.release``); called
            outside the ledger's lock, at most once per entry.
    """

    def __init__(self, live_expiry_s: float = 60.0,
                 release_slot: Callable[[SlotRef], object] | None = None):
        self._live_expiry_s = live_expiry_s
        self._release_slot = release_slot
        self._nonces: dict[str, str] = {}
        self._open: dict[str, dict[int, _Entry]] = {}
        self._lock = threading.Lock()
        self.rejected = 0
        self.resent = 0

    def open_stream(self, stream_id: str) -> str:
        """Start a run of ``stream_id``: a fresh nonce; entries of an earlier run are dropped."""
        nonce = secrets.token_hex(8)
        with self._lock:
            self._nonces[stream_id] = nonce
            dropped = self._open.get(stream_id, {})
            self._open[stream_id] = {}
        self._release(self._take_slots(dropped.values()))
        return nonce

    def close_stream(self, stream_id: str) -> None:
        """Forget a stream that ended: its late results are then refused."""
        with self._lock:
            self._nonces.pop(stream_id, None)
            dropped = self._open.pop(stream_id, {})
        self._release(self._take_slots(dropped.values()))

    def nonce(self, stream_id: str) -> str | None:
        with self._lock:
            return self._nonces.get(stream_id)

    def sent(self, message: FrameMessage, keep: bool) -> bool:
        """Record a frame about to be handed to ZeroMQ (``keep``: hold it for a resend).
        False when its stream run is over: nobody waits for it, and its slot is released."""
        now = time.monotonic()
        with self._lock:
            entries = self._open.get(message.stream_id)
            is_open = entries is not None and self._nonces.get(message.stream_id) == message.nonce
            if is_open:
                entry = entries.get(message.frame_index)
                if entry is None:
                    entries[message.frame_index] = _Entry(
                        message.nonce, now, message if keep else None, slot=message.slot)
                else:
                    entry.sent_s = now
                    entry.sends += 1
        if not is_open and message.slot is not None:
            self._release([message.slot])
        return is_open

    def answer(self, stream_id: str, frame_index: int, nonce: str) -> bool:
        """Close the entry a result answers; False (and counted) when there is none."""
        with self._lock:
            entries = self._open.get(stream_id)
            entry = entries.get(frame_index) if entries is not None else None
            if entry is None or not secrets.compare_digest(entry.nonce, nonce):
                self.rejected += 1
                return False
            del entries[frame_index]
        self._release(self._take_slots([entry]))
        return True

    def lowest_open(self, stream_id: str) -> int | None:
        """The lowest frame index of the stream still waiting for its result, or None."""
        with self._lock:
            entries = self._open.get(stream_id)
            return min(entries) if entries else None

    def open_count(self, stream_id: str) -> int:
        with self._lock:
            return len(self._open.get(stream_id, ()))

    def overdue(self, after_s: float, now_s: float | None = None) -> list[FrameMessage]:
        """Kept (file) frames sent at least ``after_s`` ago, oldest first; each is stamped as
        sent now, so it is returned again only after another ``after_s``. Live entries older
        than ``live_expiry_s`` are forgotten on the way."""
        now = time.monotonic() if now_s is None else now_s
        due: list[tuple[float, FrameMessage]] = []
        expired: list[_Entry] = []
        with self._lock:
            for entries in self._open.values():
                for index in list(entries):
                    entry = entries[index]
                    age = now - entry.sent_s
                    if entry.message is None:
                        if age >= self._live_expiry_s:
                            expired.append(entries.pop(index))
                    elif age >= after_s:
                        due.append((entry.sent_s, entry.message))
                        entry.sent_s = now
            self.resent += len(due)
            slots = self._take_slots(expired)
        self._release(slots)
        due.sort(key=lambda item: item[0])
        return [message for _, message in due]

    def expire_kept(self) -> None:
        """A worker died: make every kept (file) frame overdue now, and release the slots of
        live frames in flight (it may have held any of them; they are never sent again). A
        live frame another worker is still scoring keeps its entry, so its result still counts;
        if its slot is written again meanwhile, that worker answers it as stale."""
        with self._lock:
            live: list[_Entry] = []
            for entries in self._open.values():
                for entry in entries.values():
                    if entry.message is not None:
                        entry.sent_s = float("-inf")
                    else:
                        live.append(entry)
            slots = self._take_slots(live)
        self._release(slots)

    def release_live(self, stream_id: str) -> int:
        """Release the slots of ``stream_id``'s live frames in flight (the hub counted them
        lost); returns how many. Their entries stay until answered or expired."""
        with self._lock:
            entries = self._open.get(stream_id, {})
            slots = self._take_slots([e for e in entries.values() if e.message is None])
        self._release(slots)
        return len(slots)

    @staticmethod
    def _take_slots(entries: Iterable[_Entry]) -> list[SlotRef]:
        """The slots these entries hold, which they then no longer hold (under the lock)."""
        slots = []
        for entry in entries:
            if entry.slot is not None:
                slots.append(entry.slot)
                entry.slot = None
        return slots

    def _release(self, slots: list[SlotRef]) -> None:
        if self._release_slot is None:
            return
        for slot in slots:
            self._release_slot(slot)
