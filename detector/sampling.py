"""Which frames are scored: every ``stride``-th decoded frame, optionally capped and spread."""

from __future__ import annotations

DEFAULT_STRIDE = 4   # sampling.stride's default: score every 4th decoded frame


def is_sampled(frame_index: int, stride: int) -> bool:
    """True for frames ``0, stride, 2*stride, …``.

    Raises:
        ValueError: ``stride < 1`` or a negative index.
    """
    if stride < 1:
        raise ValueError(f"expected stride >= 1, got {stride}")
    if frame_index < 0:
        raise ValueError(f"expected frame_index >= 0, got {frame_index}")
    return frame_index % stride == 0


def sampled_count(frames_total: int, stride: int) -> int:
    """How many of ``frames_total`` frames are sampled with ``stride``."""
    if stride < 1:
        raise ValueError(f"expected stride >= 1, got {stride}")
    return (max(0, frames_total) + stride - 1) // stride


def sampled_indices(frames_total: int, stride: int, max_count: int | None = None) -> list[int]:
    """The sampled frame indices of a ``frames_total``-frame video (:func:`is_sampled`), at most
    ``max_count`` of them evenly spread (first and last included); None: all of them.

    Raises:
        ValueError: ``stride < 1`` or ``max_count < 1``.
    """
    if stride < 1:
        raise ValueError(f"expected stride >= 1, got {stride}")
    indices = list(range(0, max(0, frames_total), stride))
    return indices if max_count is None else spread_evenly(indices, max_count)


def spread_evenly(indices: list[int], max_count: int) -> list[int]:
    """At most ``max_count`` of ``indices``, evenly spread, first and last included."""
    if max_count < 1:
        raise ValueError(f"expected max_count >= 1, got {max_count}")
    if len(indices) <= max_count:
        return list(indices)
    if max_count == 1:
        return [indices[0]]
    step = (len(indices) - 1) / (max_count - 1)
    return [indices[round(i * step)] for i in range(max_count)]
