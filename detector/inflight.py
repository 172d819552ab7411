"""The ledger of frames sent to the worker pool and not yet answered.

The producer hub writes each frame into it just before handing the frame to ZeroMQ; the
collector accepts a result only when it answers an open entry — same stream, same frame index,
same per-stream-run nonce — and closes the entry, so a result is counted at most once and a
result nobody asked for (forged, late from an earlier run of the stream id, or a duplicate of a
resent frame) is dropped and counted. File frames stay in the ledger until answered, so they
can be sent again when a worker dies or hangs (docs/threat-model.md, docs/wire.md).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from detector.wire import FrameMessage


@dataclass
class _Entry:
    nonce: str
    sent_s: float
    message: FrameMessage | None  # kept for file frames (they may be sent again), else None
    sends: int = 1


class InFlightLedger:
    """Thread-safe map ``(stream id, frame index) → open entry``.

    Args:
        live_expiry_s: a live frame's entry is forgotten after this long without a result
            (live frames are never sent again; this bounds the ledger's memory).
    """

    def __init__(self, live_expiry_s: float = 60.0):
        self._live_expiry_s = live_expiry_s
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
            self._open[stream_id] = {}
        return nonce

    def close_stream(self, stream_id: str) -> None:
        """Forget a stream that ended: its late results are then refused."""
        with self._lock:
            self._nonces.pop(stream_id, None)
            self._open.pop(stream_id, None)

    def nonce(self, stream_id: str) -> str | None:
        with self._lock:
            return self._nonces.get(stream_id)

    def sent(self, message: FrameMessage, keep: bool) -> None:
        """Record a frame about to be handed to ZeroMQ (``keep``: hold it for a resend)."""
        now = time.monotonic()
        with self._lock:
            entries = self._open.get(message.stream_id)
            if entries is None or self._nonces.get(message.stream_id) != message.nonce:
                return  # the stream was closed or restarted meanwhile
            entry = entries.get(message.frame_index)
            if entry is None:
                entries[message.frame_index] = _Entry(message.nonce, now, message if keep else None)
            else:
                entry.sent_s = now
                entry.sends += 1

    def answer(self, stream_id: str, frame_index: int, nonce: str) -> bool:
        """Close the entry a result answers; False (and counted) when there is none."""
        with self._lock:
            entries = self._open.get(stream_id)
            entry = entries.get(frame_index) if entries is not None else None
            if entry is None or not secrets.compare_digest(entry.nonce, nonce):
                self.rejected += 1
                return False
            del entries[frame_index]
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
        with self._lock:
            for entries in self._open.values():
                for index in list(entries):
                    entry = entries[index]
                    age = now - entry.sent_s
                    if entry.message is None:
                        if age >= self._live_expiry_s:
                            del entries[index]
                    elif age >= after_s:
                        due.append((entry.sent_s, entry.message))
                        entry.sent_s = now
            self.resent += len(due)
        due.sort(key=lambda item: item[0])
        return [message for _, message in due]

    def expire_kept(self) -> None:
        """Make every kept frame overdue now (a worker died: what it held is lost)."""
        with self._lock:
            for entries in self._open.values():
                for entry in entries.values():
                    if entry.message is not None:
                        entry.sent_s = float("-inf")
