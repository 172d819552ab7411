"""What scoring one uploaded item (or one frame of a stream) found, as the dashboard shows it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceCrop:
    """One face crop as the model saw it."""

    frame_index: int
    fake_probability: float
    crop_rgb: np.ndarray   # (s, s, 3) uint8 RGB, s = card.input_size_px


@dataclass(frozen=True)
class UploadResult:
    """An uploaded item scored through the workers' code path.

    ``frame_scores[i]`` is None when frame ``frame_indices[i]`` had no face; ``score`` is None
    (verdict NO_FACE) when no frame had one.
    """

    filename: str
    kind: str
    frame_indices: tuple[int, ...]
    frame_scores: tuple[float | None, ...]
    score: float | None
    verdict: str
    threshold: float
    crops: tuple[FaceCrop, ...]

    @property
    def faces_found(self) -> int:
        return sum(1 for s in self.frame_scores if s is not None)
