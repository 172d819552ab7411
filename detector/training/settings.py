"""Settings of one training run: the resolution schedule, learning rate, recipe; kept in ``state.json``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from detector.training.self_blend import BLEND_RECIPES

MEAN_RGB = (0.5, 0.5, 0.5)  # EfficientNet-Lite's own input scaling: pixels to [-1, 1]
STD_RGB = (0.5, 0.5, 0.5)
INITS = ("lite0", "random")
# v1/v2 blend square crops inside the face box (detector.training.self_blend); v3 is the published recipe
# on context crops with landmarks (detector.training.sbi), cropped with the "box" rule.
# v3x, v3x75, v3x100: recipe v3 where this share of the pseudo-fakes are cross-identity blends instead
CROSS_IDENTITY_SHARE = {"v3": 0.0, "v3x": 0.5, "v3x75": 0.75, "v3x100": 1.0}
CONTEXT_RECIPES = tuple(CROSS_IDENTITY_SHARE)
RECIPES = (*BLEND_RECIPES, *CONTEXT_RECIPES)
MAX_FROZEN_STAGES = 6  # of B0's seven stages: stage 7, the 1x1 head and the classifier always train
V3_EVAL_PX = 224  # v3's held-out pairs and dev crops are cut at this size, then resized


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one run; written into ``state.json`` and the training metrics."""

    schedule: tuple[tuple[int, int], ...] = ((128, 2), (160, 10), (224, 2))  # (input_size_px, epochs)
    images_per_epoch: int = 4000
    batch_size: int = 32
    learning_rate: float = 4e-4
    min_learning_rate: float = 2e-5
    weight_decay: float = 1e-5
    init: str = "lite0"
    activation: str = "relu6"
    use_se: bool = True
    dropout_rate: float = 0.2
    drop_connect_rate: float = 0.1
    utkface_share: float = 0.4
    holdout_pairs: int = 300
    seed: int = 0
    init_weights: str | None = None  # start from these weights (a previous run) instead of init
    blend_recipe: str = "v1"  # a key of detector.training.self_blend.BLEND_RECIPES
    # Freeze the stem and the first N stages (0 = none, at most MAX_FROZEN_STAGES) for every
    # epoch but the last ``unfreeze_last_epochs``: frozen layers skip their gradients
    # (bench/train_speed.py).
    frozen_stages: int = 0
    unfreeze_last_epochs: int = 0
    # Sharpness-aware minimisation around AdamW (the published recipe's optimiser wrapper):
    # the radius of its ascent step; 0 = plain AdamW steps (detector.training.sam).
    sam_rho: float = 0.0
    # Recipe v3 and its cross-identity variants: the share of pairs scaled down together and
    # back up before the JPEG step (faces filmed smaller), detector.training.sbi; 0 = none.
    pair_downscale: float = 0.0
    # Cross-identity pairs: how many faces of other people are drawn at random for each
    # target; the one whose landmarks are nearest (pose and expression alike) is the source.
    cross_candidates: int = 48
    # L2-SP in AdamW's decoupled form: after every step each trainable weight moves toward its
    # value in ``init_weights`` by learning rate x this x (weight - initial); 0 = no pull.
    anchor_strength: float = 0.0

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"expected init in {INITS}, got {self.init!r}")
        if not self.schedule or any(s % 32 or s < 32 or e < 1 for s, e in self.schedule):
            raise ValueError(
                f"expected a schedule of (size multiple of 32, epochs >= 1), got {self.schedule}"
            )
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"expected an even batch_size >= 2, got {self.batch_size}")
        if self.blend_recipe not in RECIPES:
            raise ValueError(
                f"expected blend_recipe in {sorted(RECIPES)}, got {self.blend_recipe!r}"
            )
        if not 0.0 <= self.utkface_share <= 1.0:
            raise ValueError(f"expected 0 <= utkface_share <= 1, got {self.utkface_share}")
        if not 0 <= self.frozen_stages <= MAX_FROZEN_STAGES:
            raise ValueError(
                f"expected 0 <= frozen_stages <= {MAX_FROZEN_STAGES}, got {self.frozen_stages}"
            )
        if self.unfreeze_last_epochs < 0:
            raise ValueError(f"expected unfreeze_last_epochs >= 0, got {self.unfreeze_last_epochs}")
        if not 0.0 <= self.sam_rho <= 1.0:
            raise ValueError(f"expected 0 <= sam_rho <= 1, got {self.sam_rho}")
        if not 0.0 <= self.pair_downscale <= 1.0:
            raise ValueError(f"expected 0 <= pair_downscale <= 1, got {self.pair_downscale}")
        if self.cross_candidates < 1:
            raise ValueError(f"expected cross_candidates >= 1, got {self.cross_candidates}")
        if self.anchor_strength < 0:
            raise ValueError(f"expected anchor_strength >= 0, got {self.anchor_strength}")
        if self.anchor_strength and not self.init_weights:
            raise ValueError("anchor_strength pulls toward init_weights, so it needs them")
        if self.anchor_strength * self.learning_rate > 1:
            raise ValueError("anchor_strength x learning_rate must be at most 1 (a pull past the "
                             f"initial weights), got {self.anchor_strength * self.learning_rate}")
        if self.pair_downscale and not self.uses_context:
            raise ValueError("pair_downscale applies to the context recipes "
                             f"({', '.join(CONTEXT_RECIPES)}), not {self.blend_recipe!r}")

    def frozen_prefixes_at(self, epoch: int) -> tuple[str, ...]:
        """Name prefixes of the layers frozen in 0-based ``epoch`` (empty: all train)."""
        if not self.frozen_stages or epoch >= self.total_epochs - self.unfreeze_last_epochs:
            return ()
        return ("stem_", *(f"block{stage}" for stage in range(1, self.frozen_stages + 1)))

    @property
    def uses_context(self) -> bool:
        """Whether this run's recipe blends context crops with landmarks (the v3 cache)."""
        return self.blend_recipe in CONTEXT_RECIPES

    @property
    def total_epochs(self) -> int:
        return sum(epochs for _, epochs in self.schedule)

    def size_at(self, epoch: int) -> int:
        """Input size of 0-based ``epoch``."""
        done = 0
        for size, epochs in self.schedule:
            done += epochs
            if epoch < done:
                return size
        return self.schedule[-1][0]

    def learning_rate_at(self, epoch: int) -> float:
        """Cosine decay from ``learning_rate`` to ``min_learning_rate`` over all epochs."""
        progress = epoch / max(1, self.total_epochs - 1)
        return self.min_learning_rate + 0.5 * (self.learning_rate - self.min_learning_rate) * (
            1.0 + math.cos(math.pi * progress)
        )


def parse_schedule(text: str) -> tuple[tuple[int, int], ...]:
    """``"128:1,160:7"`` → ``((128, 1), (160, 7))``."""
    try:
        pairs = tuple(
            (int(size), int(epochs))
            for size, epochs in (part.split(":") for part in text.split(",") if part.strip())
        )
    except ValueError:
        raise ValueError(f"expected a schedule like 128:1,160:7, got {text!r}") from None
    if not pairs:
        raise ValueError(f"expected a schedule like 128:1,160:7, got {text!r}")
    return pairs



def jsonable(settings: TrainSettings) -> dict:
    return json.loads(json.dumps(asdict(settings)))
