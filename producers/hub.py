"""The producer hub: one reader thread per source, sampling and backpressure, and one sender
thread that round-robins the streams' buffers onto the pool's ZeroMQ PUSH socket.

With frame rings (detector/frame_ring.py), a sampled frame is written once into a slot of its
stream's ring and only its header crosses ZeroMQ; without them the pixels travel inline.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from detector.errors import SourceError
from detector.frame_ring import FrameRing, FrameRings
from detector.inflight import InFlightLedger
from detector.sampling import is_sampled
from detector.stream_status import StreamStatus
from detector.wire import DetectRequest, FrameMessage
from producers.backpressure import DROP_OLDEST, LOSSLESS, FrameBuffer
from producers.base import Source

log = logging.getLogger(__name__)

LIVE_SPARE_SLOTS = 4

@dataclass
class StreamCounters:
    """What a producer has done with one stream so far (mutated by its reader thread only)."""

    frames_read: int = 0
    frames_sampled: int = 0
    frames_dropped: int = 0
    frames_sent: int = 0
    frames_resent: int = 0
    reconnects: int = 0


@dataclass
class StreamHandle:
    source: Source
    stride: int
    buffer: FrameBuffer
    counters: StreamCounters = field(default_factory=StreamCounters)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    nonce: str = ""
    last_thumbnail_s: float = 0.0
    is_done: bool = False
    # live credit (see ProducerHub._has_credit): results seen, frames given up as lost
    last_scored: int = 0
    frames_lost: int = 0
    credit_blocked_since_s: float | None = None
    ring: FrameRing | None = None  # this stream's shared-memory slots, made at its first frame
    has_ring_failed: bool = False  # no ring could be made: its frames go inline


StatusCallback = Callable[[str, str, dict], None]
ReaderLoop = Callable[["ProducerHub", StreamHandle], None]


class ProducerHub:
    """Reads sources and pushes sampled frames to the worker pool.

    Args:
        socket: a bound or connected ZeroMQ PUSH socket (used by the sender thread only).
        on_status: called as ``on_status(stream_id, status, info)`` from reader threads; info
            holds counters and, for ``finished``/``failed``, ``frames_sampled`` and ``error``.
        thumbnail_interval_s: at most one frame per stream per interval asks for a thumbnail.
        live_buffer_frames: capacity of a live stream's drop-oldest buffer.
        scored_count: ``scored_count(stream_id)`` → results received so far for the stream; with
            it, a live stream keeps at most ``live_max_in_flight`` frames in ZeroMQ and the
            workers, so a slow pool makes its buffer drop the oldest frames instead of queueing
            stale ones. None: no limit.
        live_max_in_flight: frames of one live stream sent but not yet scored.
        lost_after_s: frames without a result for this long count as lost (a worker died).
        on_live_thumbnail_sent: called with each live frame that asked for a thumbnail, once it
            is handed to ZeroMQ (the service keeps it for the dashboard's "why").
        ledger: every frame is written into it before it is sent; file frames stay there until
            their result comes back and are sent again ``resend_after_s`` after each send (a
            hung worker) or at once after :meth:`worker_lost` (a dead one). With ``rings``, it
            must release their slots (``InFlightLedger(release_slot=rings.release)``, the
            default).
        file_max_in_flight: file frames of one stream sent and not yet answered.
        live_reader: the reader loop of live sources (``producers.live.make_live_reader``, which
            imports this module, so it is handed in); None: live sources are refused.
        detect_plan: ``detect_plan(stream_id, frame_index)`` → how the worker should find the
            frame's faces (the stream's tracker, asked just before the frame is sent); None or
            a None answer: full detection.
        may_send_file_frame: ``may_send_file_frame(stream_id)`` → whether a file stream's next
            frame may be sent now (tracked files wait for the previous frame's result).
        rings: where sampled frames are written for local workers (one ring per stream, made
            at its first sampled frame); None: pixels travel inline in the ZeroMQ message. A
            full ring makes a live stream drop the frame (counted) and a file wait.
    """

    def __init__(
        self,
        socket: zmq.Socket,
        on_status: StatusCallback,
        thumbnail_interval_s: float = 1.0,
        live_buffer_frames: int = 2,
        file_buffer_frames: int = 4,
        scored_count: Callable[[str], int] | None = None,
        live_max_in_flight: int = 2,
        lost_after_s: float = 5.0,
        on_live_thumbnail_sent: Callable[[FrameMessage], None] | None = None,
        ledger: InFlightLedger | None = None,
        resend_after_s: float = 30.0,
        file_max_in_flight: int = 64,
        live_reader: ReaderLoop | None = None,
        detect_plan: Callable[[str, int], DetectRequest | None] | None = None,
        may_send_file_frame: Callable[[str], bool] | None = None,
        rings: FrameRings | None = None,
    ):
        self._socket = socket
        self._rings = rings
        self._on_status = on_status
        self._thumbnail_interval_s = thumbnail_interval_s
        self._live_buffer_frames = live_buffer_frames
        self._file_buffer_frames = file_buffer_frames
        self._scored_count = scored_count
        self._live_max_in_flight = live_max_in_flight
        self._lost_after_s = lost_after_s
        self._on_live_thumbnail_sent = on_live_thumbnail_sent
        self.ledger = ledger or InFlightLedger(release_slot=rings.release if rings else None)
        self._resend_after_s = resend_after_s
        self._file_max_in_flight = file_max_in_flight
        self._detect_plan = detect_plan
        self._may_send_file_frame = may_send_file_frame
        self._last_resend_check_s = 0.0
        self._streams: dict[str, StreamHandle] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="zmq-sender", daemon=True)
        self._sender.start()
        self._reader_loops: dict[bool, ReaderLoop] = {False: run_file_reader}
        if live_reader is not None:
            self._reader_loops[True] = live_reader

    # --- public API -------------------------------------------------------------------------
    def add(self, source: Source, stride: int, nonce: str | None = None) -> StreamHandle:
        """Start reading ``source``; frames ``0, stride, 2*stride, …`` go to the pool, stamped
        with ``nonce`` (default: a fresh run of the stream in the ledger)."""
        with self._lock:
            existing = self._streams.get(source.stream_id)
            if existing is not None and not existing.is_done:
                raise SourceError(f"stream id {source.stream_id!r} is already running")
            policy = DROP_OLDEST if source.is_live else LOSSLESS
            capacity = self._live_buffer_frames if source.is_live else self._file_buffer_frames
            handle = StreamHandle(source, stride,
                                  FrameBuffer(capacity, policy, on_drop=self._release_slot))
            handle.nonce = nonce if nonce is not None else self.ledger.open_stream(source.stream_id)
            self._streams[source.stream_id] = handle
        loop = self._reader_loops.get(source.is_live)
        if loop is None:
            raise SourceError(f"no reader for {'live' if source.is_live else 'file'} sources")
        handle.thread = threading.Thread(
            target=self._read, args=(loop, handle), name=f"reader-{source.stream_id}", daemon=True
        )
        handle.thread.start()
        return handle

    def _read(self, loop: ReaderLoop, handle: StreamHandle) -> None:
        """Run a reader loop; when it ends, give back the slots of frames it never sent, and
        retire the stream's ring (removed once the frames in flight are answered)."""
        try:
            loop(self, handle)
        finally:
            for message in handle.buffer.drain():
                self._release_slot(message)
            if handle.ring is not None:
                handle.ring.retire()

    def _release_slot(self, message: FrameMessage) -> None:
        """Give back the slot of a frame that will not be sent (dropped, or its stream ended)."""
        if message.slot is not None and self._rings is not None:
            self._rings.release(message.slot)

    def remove(self, stream_id: str, timeout_s: float = 5.0) -> bool:
        """Stop reading a stream; frames already sent are still scored. False if unknown."""
        with self._lock:
            handle = self._streams.get(stream_id)
        if handle is None:
            return False
        handle.stop.set()
        handle.buffer.close()
        if handle.thread is not None:
            handle.thread.join(timeout_s)
        self._drop(handle)
        return True

    def _drop(self, handle: StreamHandle) -> None:
        """Forget a handle whose reader has ended: it holds the source (and its decoder)."""
        if handle.thread is not None and handle.thread.is_alive():
            return  # a reader stuck in a read; dropped when a later add or remove finds it done
        with self._lock:
            if self._streams.get(handle.source.stream_id) is handle:
                del self._streams[handle.source.stream_id]

    def handles(self) -> list[StreamHandle]:
        with self._lock:
            return list(self._streams.values())

    def handle(self, stream_id: str) -> StreamHandle | None:
        with self._lock:
            return self._streams.get(stream_id)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop every reader, then the sender."""
        for handle in self.handles():
            handle.stop.set()
            handle.buffer.close()
        for handle in self.handles():
            if handle.thread is not None:
                handle.thread.join(timeout_s)
        self._stop.set()
        self._wakeup.set()
        self._sender.join(timeout_s)

    # --- used by reader loops ---------------------------------------------------------------
    def report(self, handle: StreamHandle, status: StreamStatus, **info) -> None:
        counters = handle.counters
        handle.counters.frames_dropped = handle.buffer.dropped
        info = {
            "frames_read": counters.frames_read,
            "frames_sampled": counters.frames_sampled,
            "frames_dropped": counters.frames_dropped,
            "reconnects": counters.reconnects,
            **info,
        }
        try:
            self._on_status(handle.source.stream_id, status, info)
        except Exception:  # a sink failure must not kill a reader
            log.exception("status callback failed for stream %s", handle.source.stream_id)

    def offer(self, handle: StreamHandle, frame) -> None:
        """Count a decoded frame and queue it if it is sampled (blocking for lossless)."""
        counters = handle.counters
        counters.frames_read += 1
        if not is_sampled(frame.frame_index, handle.stride):
            return
        counters.frames_sampled += 1
        slot = None
        ring = self._ring_for(handle, frame.shape)
        if ring is not None:
            index = self._claim(handle, ring)
            if index is None:  # a live stream whose ring is full, or a file being stopped
                if handle.source.is_live:
                    handle.buffer.count_drop()
                counters.frames_dropped = handle.buffer.dropped
                return
            slot, image = ring.view(index, frame.shape)
            frame.bgr_into(image)  # converted straight into the slot
        else:
            image = frame.image_bgr
        now = time.monotonic()
        want_thumbnail = now - handle.last_thumbnail_s >= self._thumbnail_interval_s
        if want_thumbnail:
            handle.last_thumbnail_s = now
        message = FrameMessage(
            stream_id=handle.source.stream_id,
            frame_index=frame.frame_index,
            pts_s=frame.pts_s,
            capture_time_s=frame.capture_time_s,
            image_bgr=image,
            want_thumbnail=want_thumbnail,
            nonce=handle.nonce,
            slot=slot,
        )
        is_queued = False
        while not handle.stop.is_set():
            if handle.buffer.put(message, timeout_s=0.2):
                is_queued = True
                break
        if not is_queued:
            self._release_slot(message)
        counters.frames_dropped = handle.buffer.dropped
        self._wakeup.set()

    def _ring_for(self, handle: StreamHandle, shape: tuple[int, int, int]) -> FrameRing | None:
        """The stream's ring, made (or made again, larger) for a frame of ``shape``; None: go
        inline."""
        if self._rings is None or handle.has_ring_failed:
            return None
        nbytes = shape[0] * shape[1] * shape[2]
        ring = handle.ring
        if ring is not None and nbytes <= ring.slot_bytes:
            return ring
        if ring is not None:
            ring.retire()  # the frames grew (a camera reconnected at a higher resolution)
        # As many slots as the stream can hold at once: its buffer and its frames in flight
        # (for live streams a few spare, for frames given up as lost until they expire).
        in_flight = (self._live_max_in_flight + LIVE_SPARE_SLOTS if handle.source.is_live
                     else self._file_max_in_flight)
        slot_count = handle.buffer.capacity + in_flight
        try:
            handle.ring = self._rings.new_ring(nbytes, slot_count)
        except OSError as exc:
            log.warning("stream %s: its frames go to the workers inline: no frame ring of %d "
                        "slots of %d bytes fits in %s (%s)", handle.source.stream_id,
                        min(slot_count, self._rings.max_slots), nbytes, self._rings.folder,
                        exc.strerror or exc)
            handle.ring, handle.has_ring_failed = None, True
        return handle.ring

    @staticmethod
    def _claim(handle: StreamHandle, ring: FrameRing) -> int | None:
        """A free slot: at once or never for a live stream, waiting for one for a file."""
        if handle.source.is_live:
            return ring.claim(timeout_s=0.0)
        while not handle.stop.is_set():
            slot = ring.claim(timeout_s=0.2)
            if slot is not None:
                return slot
        return None

    def wait_sent(self, handle: StreamHandle, timeout_s: float | None = None) -> bool:
        """Wait until the stream's buffer is empty (all sampled frames handed to ZeroMQ)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while len(handle.buffer) and not handle.stop.is_set():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return not len(handle.buffer)

    # --- sender -----------------------------------------------------------------------------
    def _send_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLOUT)
        while not self._stop.is_set():
            try:
                sent_any = self._send_round(poller)
            except Exception:  # the one sender thread must outlive any failure
                log.exception("sender: one round failed; going on")
                sent_any = False
            if not sent_any:
                self._wakeup.wait(0.05)
                self._wakeup.clear()

    def _send_round(self, poller: zmq.Poller) -> bool:
        """Overdue resends, then at most one frame of each stream that has credit."""
        sent_any = self._resend_overdue(poller)
        for handle in self.handles():
            if handle.source.is_live:
                if not self._has_credit(handle):
                    continue
            elif self.ledger.open_count(handle.source.stream_id) >= self._file_max_in_flight:
                continue
            elif (self._may_send_file_frame is not None
                  and not self._may_send_file_frame(handle.source.stream_id)):
                continue
            message = handle.buffer.get_nowait()
            if message is None:
                continue
            message = self._with_plan(message)
            self.ledger.sent(message, keep=not handle.source.is_live)
            kept = self._thumbnail_frame(handle, message)  # before its result can free the slot
            if self._send(poller, message):
                handle.counters.frames_sent += 1
                sent_any = True
                self._live_thumbnail_sent(kept)
        return sent_any

    def _with_plan(self, message: FrameMessage) -> FrameMessage:
        """The frame with its detection plan (a resent file frame keeps the one it had)."""
        if self._detect_plan is None:
            return message
        try:
            plan = self._detect_plan(message.stream_id, message.frame_index)
        except Exception:  # a tracker failure costs the hint, never the frame
            log.exception("stream %s: no detection plan for frame %d; detecting in full",
                          message.stream_id, message.frame_index)
            plan = None
        return message if plan is None else dataclasses.replace(message, detect=plan)

    def _send(self, poller: zmq.Poller, message: FrameMessage) -> bool:
        parts = message.encode()
        while not self._stop.is_set():
            if poller.poll(100):
                self._socket.send_multipart(parts, copy=False)
                return True
        return False

    def _resend_overdue(self, poller: zmq.Poller) -> bool:
        """Send again the file frames whose results are overdue (at most every 0.2 s)."""
        now = time.monotonic()
        if now - self._last_resend_check_s < 0.2:
            return False
        self._last_resend_check_s = now
        overdue = self.ledger.overdue(self._resend_after_s, now)
        if overdue:
            log.warning("sending %d frames again: their results did not come back within "
                        "%.0f s or their worker died", len(overdue), self._resend_after_s)
        for message in overdue:
            if not self._send(poller, message):
                return False
            handle = self.handle(message.stream_id)
            if handle is not None:
                handle.counters.frames_resent += 1
        return bool(overdue)

    def worker_lost(self) -> None:
        """A worker died: the file frames it may have held are sent again at once."""
        self.ledger.expire_kept()
        self._last_resend_check_s = 0.0
        self._wakeup.set()

    def _thumbnail_frame(self, handle: StreamHandle, message: FrameMessage) -> FrameMessage | None:
        """The live frame to hand to ``on_live_thumbnail_sent``, if this one asks for a
        thumbnail: with its own pixels, since its slot is written again once it is answered."""
        if (self._on_live_thumbnail_sent is None or not message.want_thumbnail
                or not handle.source.is_live):
            return None
        if message.slot is None:
            return message
        return dataclasses.replace(message, image_bgr=message.image_bgr.copy(), slot=None)

    def _live_thumbnail_sent(self, message: FrameMessage | None) -> None:
        if message is None:
            return
        try:
            self._on_live_thumbnail_sent(message)
        except Exception:  # keeping a frame must never stop the sender
            log.exception("keeping the thumbnail frame of %s failed", message.stream_id)

    def _has_credit(self, handle: StreamHandle) -> bool:
        """May the sender hand this live stream's next frame to ZeroMQ?"""
        if self._scored_count is None:
            return True
        scored = self._scored_count(handle.source.stream_id)
        if scored != handle.last_scored:
            handle.last_scored = scored
            handle.credit_blocked_since_s = None
        in_flight = handle.counters.frames_sent - scored - handle.frames_lost
        if in_flight < self._live_max_in_flight:
            handle.credit_blocked_since_s = None
            return True
        now = time.monotonic()
        if handle.credit_blocked_since_s is None:
            handle.credit_blocked_since_s = now
        elif now - handle.credit_blocked_since_s > self._lost_after_s:
            log.info("stream %s: %d frames got no result within %.0f s; counting them lost",
                     handle.source.stream_id, in_flight, self._lost_after_s)
            handle.frames_lost += in_flight
            handle.credit_blocked_since_s = None
            self.ledger.release_live(handle.source.stream_id)
            return True
        return False


def run_file_reader(hub: ProducerHub, handle: StreamHandle) -> None:
    """Reader loop of a file source: read to the end once, losslessly."""
    source = handle.source
    hub.report(handle, StreamStatus.CONNECTING, source=source.display_url, kind="file")
    try:
        source.open()
        hub.report(handle, StreamStatus.RUNNING, source=source.display_url, kind="file")
        for frame in source.frames():
            if handle.stop.is_set():
                break
            hub.offer(handle, frame)
    except SourceError as exc:
        # The collector logs the failure once, for every kind of failure; not here as well.
        log.debug("stream %s failed: %s", source.stream_id, exc)
        handle.is_done = True
        hub.report(handle, StreamStatus.FAILED, error=str(exc))
        return
    except Exception as exc:  # one broken stream must not stop the others
        log.exception("stream %s: unexpected reader error", source.stream_id)
        handle.is_done = True
        hub.report(handle, StreamStatus.FAILED, error=f"{source.display_url}: unexpected error ({exc})")
        return
    finally:
        source.close()
    hub.wait_sent(handle)
    handle.is_done = True
    status = StreamStatus.STOPPED if handle.stop.is_set() else StreamStatus.DRAINING
    hub.report(handle, status, eof=True, frames_sent=handle.counters.frames_sent)

