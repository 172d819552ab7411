"""What the dashboard is handed by app/: upload scoring, frame reading and the control client.

The dashboard reads Redis itself and nothing else; everything that loads the model, decodes a
video or talks to a running service arrives through these (built in ``app/dashboard.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from detector.model_card import ModelCard
from detector.upload_result import FaceCrop, UploadResult


class UploadScoring(Protocol):
    """Scores uploads and single frames the way the workers do, and explains face crops."""

    max_bytes: int

    def score(self, filename: str | None, contents: str | None) -> UploadResult: ...

    def score_frame(self, label: str, frame_index: int,
                    frame_bgr: np.ndarray) -> UploadResult: ...

    def explain(self, crops: Sequence[FaceCrop]) -> list[tuple[FaceCrop, np.ndarray]]: ...

    def card(self) -> ModelCard: ...

    def too_big_message(self, filename: str, size_bytes: int) -> str: ...


@dataclass(frozen=True)
class DashboardServices:
    """The dashboard's tools from app/.

    Attributes:
        uploads: upload and frame scoring (the model loads on first use).
        read_frame: ``read_frame(path, frame_index) -> (h, w, 3) uint8 BGR``; raises SourceError.
        send_control: ``send_control(op, stream_id, url, stride) -> reply dict``; raises
            DetectorError when no service answers, redis.RedisError / OSError when Redis is gone.
    """

    uploads: UploadScoring
    read_frame: Callable[[str, int], np.ndarray]
    send_control: Callable[[str, str, str | None, int | None], dict[str, Any]]
