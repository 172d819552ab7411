"""Pure metrics: ROC AUC, bootstrap confidence intervals, threshold selection, accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted as half).

    Args:
        labels: 1 = FAKE (positive), 0 = REAL.
        scores: higher = more likely FAKE.
    Returns:
        the AUC, or None when one class is absent.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"expected labels and scores of one length, got {y.shape} and {s.shape}")
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_scores = s[order]
    # Average ranks over ties.
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    value: float | None
    low: float | None
    high: float | None
    resamples: int

    def as_dict(self) -> dict:
        return {"value": self.value, "ci95": [self.low, self.high], "resamples": self.resamples}

    def text(self) -> str:
        if self.value is None:
            return "n/a"
        if self.low is None:
            return f"{self.value:.3f}"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_auc(
    labels: Sequence[int],
    scores: Sequence[float],
    groups: Sequence[str] | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """AUC with a 95% percentile bootstrap interval.

    Resamples whole groups when ``groups`` is given (items of one video or person move together,
    which widens the interval honestly), single items otherwise. Resamples missing a class are
    skipped.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    value = roc_auc(y, s)
    if value is None or resamples < 1:
        return Interval(value, None, None, 0)
    return _bootstrap(value, lambda index: roc_auc(y[index], s[index]), len(y), groups,
                      resamples, seed)


def bootstrap_auc_difference(
    labels: Sequence[int],
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    groups: Sequence[str] | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """AUC of ``scores_b`` minus AUC of ``scores_a`` on the same items, with a paired interval.

    Each resample draws one set of groups (or items) and scores both models on it, so what the
    two share (which items are hard) cancels: the interval is that of the difference, much
    narrower than the two models' own intervals side by side.
    """
    y = np.asarray(labels, dtype=np.int64)
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if not y.shape == a.shape == b.shape:
        raise ValueError(f"expected labels and both scores of one length, got {y.shape}, "
                         f"{a.shape} and {b.shape}")
    auc_a, auc_b = roc_auc(y, a), roc_auc(y, b)
    if auc_a is None or auc_b is None:
        return Interval(None, None, None, 0)
    value = auc_b - auc_a
    if resamples < 1:
        return Interval(value, None, None, 0)

    def difference(index: np.ndarray) -> float | None:
        first = roc_auc(y[index], a[index])
        return None if first is None else roc_auc(y[index], b[index]) - first

    return _bootstrap(value, difference, len(y), groups, resamples, seed)


def _bootstrap(value: float, statistic, n: int, groups: Sequence[str] | None, resamples: int,
               seed: int) -> Interval:
    """``value`` with the 2.5/97.5 percentiles of ``statistic`` over resampled item indices
    (resamples where it is None, e.g. one class missing, are skipped)."""
    rng = np.random.default_rng(seed)
    clusters = _clusters(n, groups)
    estimates = []
    for _ in range(resamples):
        picks = rng.integers(0, len(clusters), len(clusters))
        estimate = statistic(np.concatenate([clusters[p] for p in picks]))
        if estimate is not None:
            estimates.append(estimate)
    if not estimates:
        return Interval(value, None, None, 0)
    low, high = np.percentile(estimates, [2.5, 97.5])
    return Interval(value, float(low), float(high), len(estimates))


def _clusters(n: int, groups: Sequence[str] | None) -> list[np.ndarray]:
    """Indices that resample together: one per item, or one per group."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    keys: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        keys.setdefault(str(g), []).append(i)
    return [np.asarray(v) for v in keys.values()]


def accuracy_at(labels: Sequence[int], scores: Sequence[float], threshold: float) -> float | None:
    """Share of items whose verdict (FAKE at ``score >= threshold``) matches the label."""
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return None
    predicted = (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)
    return float((predicted == y).mean())


def balanced_accuracy_at(labels: Sequence[int], scores: Sequence[float], threshold: float) -> float | None:
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if (y == 1).sum() == 0 or (y == 0).sum() == 0:
        return None
    tpr = float((s[y == 1] >= threshold).mean())
    tnr = float((s[y == 0] < threshold).mean())
    return (tpr + tnr) / 2.0


def select_threshold(labels: Sequence[int], scores: Sequence[float]) -> float:
    """The threshold that maximises balanced accuracy (Youden's J), placed midway between
    neighbouring scores and clipped to (0.01, 0.99); 0.5 when a class is missing."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if (y == 1).sum() == 0 or (y == 0).sum() == 0:
        return 0.5
    unique = np.unique(s)
    candidates = np.concatenate([[unique[0] - 1e-6], (unique[:-1] + unique[1:]) / 2.0,
                                 [unique[-1] + 1e-6]])
    best, best_value = 0.5, -1.0
    for threshold in candidates:
        value = balanced_accuracy_at(y, s, float(threshold))
        if value is not None and value > best_value + 1e-12:
            best, best_value = float(threshold), value
    return float(np.clip(best, 0.01, 0.99))
