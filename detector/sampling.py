"""Which frames are scored: every ``stride``-th decoded frame, optionally capped and spread."""

from __future__ import annotations


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
