"""Shared-memory frame rings: sampled frames handed to local workers without crossing ZeroMQ.

One ring per producer stream: a file on tmpfs (``/dev/shm``) in the service's private folder,
mapped by the service read-write and by its local workers read-only. ZeroMQ then carries only
the frame header with a :class:`detector.wire.SlotRef` (ring name, slot, generation).

File layout (little-endian, docs/wire.md)::

    0      8 bytes  magic b"DFRING01"
    8      u32      slot_count
    12     u32      0 (reserved)
    16     u64      slot_bytes        (a multiple of 4096)
    24     u64      data_offset       (a multiple of 4096)
    64     u64[slot_count] generation of each slot
    data_offset + i * slot_bytes      slot i: height × width × 3 bytes BGR, row-major

A slot is *claimed* by the producer, written once, referenced by one frame message, and
*released* when the frame's result is answered, the frame is dropped, its stream ends, or its
worker is lost. Releasing adds one to the slot's generation, so a message that still names the
old generation is known to be stale (:meth:`RingReader.is_current`).
"""

from __future__ import annotations

import collections
import logging
import mmap
import os
import secrets
import shutil
import stat
import struct
import tempfile
import threading
from pathlib import Path

import numpy as np

from detector.errors import WireFormatError
from detector.wire import RING_NAME_PREFIX, SlotRef

log = logging.getLogger(__name__)

RING_MAGIC = b"DFRING01"
_HEADER = struct.Struct("<8sIIQQ")
_GENERATIONS_OFFSET = 64
_PAGE_BYTES = 4096
RING_FOLDER_PREFIX = "deepfake-frames-"
DEFAULT_RING_PARENT = Path("/dev/shm")
MAX_MAPPED_RINGS = 32  # a worker keeps at most this many rings mapped (least recently used go)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _data_offset(slot_count: int) -> int:
    return _round_up(_GENERATIONS_OFFSET + 8 * slot_count, _PAGE_BYTES)


def is_tmpfs(path: Path) -> bool:
    """Whether ``path`` lies on a tmpfs mount (memory, not disk), from ``/proc/self/mounts``."""
    try:
        resolved = str(Path(path).resolve())
        best, best_type = "", ""
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best):
                    best, best_type = point, fields[2]
        return best_type == "tmpfs"
    except OSError:
        return False


class FrameRing:
    """The producer's side of one ring: claim a slot, write a frame into it, release it.

    Thread-safe: the reader thread claims and writes, the collector and sender threads release.

    Args:
        folder: the service's private ring folder (mode 0700).
        slot_count: slots in the ring.
        slot_bytes: bytes per slot (rounded up to whole pages); larger frames do not fit.

    Raises:
        OSError: the file cannot be made or its space reserved (tmpfs full).
    """

    def __init__(self, folder: Path, slot_count: int, slot_bytes: int):
        if slot_count < 1:
            raise ValueError(f"expected slot_count >= 1, got {slot_count}")
        self.name = f"{RING_NAME_PREFIX}{secrets.token_hex(8)}"
        self.path = Path(folder) / self.name
        self.slot_count = slot_count
        self.slot_bytes = _round_up(max(1, slot_bytes), _PAGE_BYTES)
        self._data_offset = _data_offset(slot_count)
        size = self._data_offset + slot_count * self.slot_bytes
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            # Reserve the memory now: writing into a hole of a full tmpfs would be a SIGBUS.
            os.posix_fallocate(fd, 0, size)
            self._map = mmap.mmap(fd, size)
        except BaseException:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)
        _HEADER.pack_into(self._map, 0, RING_MAGIC, slot_count, 0, self.slot_bytes, self._data_offset)
        self._generations = np.ndarray((slot_count,), np.uint64, buffer=self._map,
                                       offset=_GENERATIONS_OFFSET)
        self._free: collections.deque[int] = collections.deque(range(slot_count))
        self._in_use: set[int] = set()
        self._cond = threading.Condition()
        self._is_retiring = False
        self.is_closed = False
        self.claimed = 0
        self.released = 0

    @property
    def slots_in_use(self) -> int:
        with self._cond:
            return len(self._in_use)

    def claim(self, timeout_s: float | None = 0.0) -> int | None:
        """A free slot, waiting up to ``timeout_s`` for one (None: forever); None when the
        ring stays full or is retired. Free slots are handed out oldest-released first, so a
        just-released slot is the last to be written again."""
        with self._cond:
            has_free = self._cond.wait_for(
                lambda: self._free or self._is_retiring, timeout=timeout_s)
            if not has_free or self._is_retiring:
                return None
            slot = self._free.popleft()
            self._in_use.add(slot)
            self.claimed += 1
            return slot

    def write(self, slot: int, image_bgr: np.ndarray) -> tuple[SlotRef, np.ndarray]:
        """Copy ``image_bgr`` into a claimed ``slot``.

        Returns:
            the reference a frame message carries, and the slot's pixels as an array (the
            service keeps it while the frame is in flight; it must not outlive the claim).
        Raises:
            ValueError: the slot is not claimed, or the image is not uint8 BGR or too large.
        """
        if image_bgr.dtype != np.uint8:
            raise ValueError(f"expected a (height, width, 3) uint8 image, got {image_bgr.shape}")
        ref, view = self.view(slot, image_bgr.shape)
        np.copyto(view, image_bgr)
        return ref, view

    def view(self, slot: int, shape: tuple[int, ...]) -> tuple[SlotRef, np.ndarray]:
        """A claimed ``slot``'s pixels as a ``shape`` = ``(height, width, 3)`` uint8 array to
        write a frame into (a source converts straight into it), and its reference.

        Raises:
            ValueError: the slot is not claimed, or the shape is not BGR or too large.
        """
        shape = tuple(int(v) for v in shape)
        if len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
            raise ValueError(f"expected a (height, width, 3) uint8 image, got {shape}")
        nbytes = shape[0] * shape[1] * 3
        if nbytes > self.slot_bytes:
            raise ValueError(f"expected at most {self.slot_bytes} bytes, got {nbytes}")
        with self._cond:
            if slot not in self._in_use:
                raise ValueError(f"expected a claimed slot, got {slot}")
            generation = int(self._generations[slot])
        view = np.ndarray(shape, np.uint8, buffer=self._map,
                          offset=self._data_offset + slot * self.slot_bytes)
        return SlotRef(self.name, slot, generation), view

    def release(self, ref: SlotRef) -> bool:
        """Free the slot ``ref`` names if it still holds that frame; False if it was already
        released (a result answering a frame twice, a drop after a worker loss …)."""
        with self._cond:
            if (self.is_closed or ref.slot not in self._in_use
                    or int(self._generations[ref.slot]) != ref.generation):
                return False
            self._generations[ref.slot] = ref.generation + 1
            self._in_use.discard(ref.slot)
            self._free.append(ref.slot)
            self.released += 1
            self._cond.notify_all()
            if self._is_retiring and not self._in_use:
                self._unlink()
            return True

    def retire(self) -> None:
        """No more frames will be written: remove the file as soon as every slot is free."""
        with self._cond:
            self._is_retiring = True
            self._cond.notify_all()
            if not self._in_use:
                self._unlink()

    def _unlink(self) -> None:
        """Remove the file; the mapping lives on until no array refers to it."""
        if self.is_closed:
            return
        self.is_closed = True
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._generations = None
        try:
            self._map.close()
        except BufferError:
            pass  # a frame still refers to a slot (a stream stopped mid-flight): unmapped later
        log.debug("frame ring %s removed (%d frames written)", self.name, self.claimed)


class FrameRings:
    """The service's rings, all in one private folder on tmpfs.

    Args:
        folder: the folder (made by :meth:`create`).
        max_slots: the most slots one ring may have.
    """

    def __init__(self, folder: Path, max_slots: int):
        self.folder = Path(folder)
        self.max_slots = max_slots
        self._rings: dict[str, FrameRing] = {}
        self._lock = threading.Lock()
        self._removed_claims = 0
        self._removed_releases = 0

    @classmethod
    def create(cls, max_slots: int, parent: Path = DEFAULT_RING_PARENT) -> FrameRings | None:
        """A fresh private folder (0700) under ``parent``; None (frames then go inline) when
        ``parent`` is missing or not tmpfs, or the folder cannot be made."""
        if not Path(parent).is_dir() or not is_tmpfs(Path(parent)):
            log.info("frames go to the workers inline: %s is not a tmpfs folder", parent)
            return None
        try:
            folder = tempfile.mkdtemp(prefix=RING_FOLDER_PREFIX, dir=parent)
        except OSError as exc:
            log.warning("frames go to the workers inline: cannot make a folder in %s (%s)",
                        parent, exc.strerror or exc)
            return None
        return cls(Path(folder), max_slots)

    def new_ring(self, slot_bytes: int, slot_count: int) -> FrameRing:
        """A ring of ``slot_count`` (at most ``max_slots``) slots of ``slot_bytes``.

        Raises:
            OSError: tmpfs is full or the folder is gone.
        """
        ring = FrameRing(self.folder, min(slot_count, self.max_slots), slot_bytes)
        with self._lock:
            self._prune()
            self._rings[ring.name] = ring
        return ring

    def _prune(self) -> None:
        """Forget the removed rings (under the lock); nothing claims or releases in them."""
        for name in [n for n, r in self._rings.items() if r.is_closed]:
            ring = self._rings.pop(name)
            self._removed_claims += ring.claimed
            self._removed_releases += ring.released

    def slot_counts(self) -> tuple[int, int]:
        """``(claimed, released)`` slots over every ring so far: equal when none is in use."""
        with self._lock:
            self._prune()
            rings = list(self._rings.values())
            claimed, released = self._removed_claims, self._removed_releases
        return (claimed + sum(r.claimed for r in rings), released + sum(r.released for r in rings))

    def release(self, ref: SlotRef) -> bool:
        """Free the slot ``ref`` names (see :meth:`FrameRing.release`)."""
        with self._lock:
            ring = self._rings.get(ref.ring)
        return ring.release(ref) if ring is not None else False

    def rings(self) -> list[FrameRing]:
        """The rings not yet removed."""
        with self._lock:
            self._prune()
            return list(self._rings.values())

    def close(self) -> None:
        """Remove every ring and the folder (the service is stopping)."""
        with self._lock:
            rings, self._rings = list(self._rings.values()), {}
        for ring in rings:
            with ring._cond:
                ring._is_retiring = True
                ring._unlink()
                ring._cond.notify_all()
        shutil.rmtree(self.folder, ignore_errors=True)


class _MappedRing:
    def __init__(self, path: Path, name: str):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise WireFormatError(f"frame ring {name} does not exist (its stream ended?)") from None
        except OSError as exc:
            raise WireFormatError(f"frame ring {name} cannot be opened ({exc.strerror})") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise WireFormatError(f"frame ring {name} is not a regular file")
            if info.st_uid != os.getuid() or info.st_mode & 0o077:
                raise WireFormatError(f"frame ring {name} is not private to this user (mode 0600)")
            if info.st_size < _PAGE_BYTES:
                raise WireFormatError(f"frame ring {name} is too short ({info.st_size} bytes)")
            self._map = mmap.mmap(fd, info.st_size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, slot_count, _, slot_bytes, data_offset = _HEADER.unpack_from(self._map, 0)
        if (magic != RING_MAGIC or slot_count < 1 or data_offset != _data_offset(slot_count)
                or data_offset + slot_count * slot_bytes != info.st_size):
            raise WireFormatError(f"frame ring {name} has no valid ring header")
        self.slot_count = slot_count
        self.slot_bytes = slot_bytes
        self.data_offset = data_offset
        self.inode = (info.st_dev, info.st_ino)
        self.generations = np.ndarray((slot_count,), np.uint64, buffer=self._map,
                                      offset=_GENERATIONS_OFFSET)


class RingReader:
    """A worker's read-only view of the service's rings, mapped on first use.

    Args:
        folder: the service's ring folder (handed to local workers when they are spawned);
            a message can name a ring only by its bare name inside it.
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self._mapped: collections.OrderedDict[str, _MappedRing] = collections.OrderedDict()

    def view(self, ref: SlotRef, shape: tuple[int, int, int]) -> np.ndarray:
        """The read-only pixels of ``ref``'s slot as a ``shape`` uint8 array.

        Raises:
            WireFormatError: the ring does not exist or is not a ring of this service, the slot
                is out of range, or ``shape`` does not fit the slot.
        """
        ring = self._ring(ref.ring)
        if ref.slot >= ring.slot_count:
            raise WireFormatError(f"expected a slot below {ring.slot_count}, got {ref.slot}")
        height, width, channels = shape
        if height * width * channels > ring.slot_bytes:
            raise WireFormatError(f"shape {list(shape)} does not fit a slot of {ring.slot_bytes} bytes")
        return np.ndarray(shape, np.uint8, buffer=ring._map,
                          offset=ring.data_offset + ref.slot * ring.slot_bytes)

    def is_current(self, ref: SlotRef) -> bool:
        """Whether the slot still holds the frame ``ref`` names (its generation is unchanged)."""
        ring = self._mapped.get(ref.ring)
        return ring is not None and int(ring.generations[ref.slot]) == ref.generation

    def forget_removed(self) -> int:
        """Unmap the rings whose files are gone (their streams ended); returns how many."""
        gone = []
        for name, ring in self._mapped.items():
            try:
                info = os.stat(self.folder / name, follow_symlinks=False)
                if (info.st_dev, info.st_ino) != ring.inode:
                    gone.append(name)
            except OSError:
                gone.append(name)
        for name in gone:
            del self._mapped[name]  # unmapped when the last array of it is gone
        return len(gone)

    def _ring(self, name: str) -> _MappedRing:
        ring = self._mapped.get(name)
        if ring is not None:
            self._mapped.move_to_end(name)
            return ring
        ring = _MappedRing(self.folder / name, name)
        self._mapped[name] = ring
        while len(self._mapped) > MAX_MAPPED_RINGS:
            self._mapped.popitem(last=False)
        return ring
