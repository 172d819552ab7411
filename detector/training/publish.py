"""Publish a run: the epoch chosen on dev, its weights, its card (calibrated on dev) and its log."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from detector.model_card import write_model_card
from detector.training.evaluation import calibrate_on_dev
from detector.training.prepare import DEV_CONTEXT_SETTINGS, DEV_SETTINGS, TRAIN_SETTINGS
from detector.training.sbi import SERVING_CROP_MARGIN
from detector.training.settings import MEAN_RGB, STD_RGB, TrainSettings
from detector.training.train import RunState, architecture

log = logging.getLogger(__name__)


def final_size(state: RunState) -> int:
    """The input size of the run's last finished epoch."""
    return state.history[-1]["input_size_px"]


def choose_epoch(state: RunState, final_size_only: bool = True) -> dict:
    """The epoch with the best dev item AUC (ties → later), among epochs at the final size."""
    size = final_size(state)
    candidates = [h for h in state.history
                  if h["dev_item_auc"] is not None
                  and (not final_size_only or h["input_size_px"] == size)]
    if not candidates:
        return state.history[-1]
    return max(candidates, key=lambda h: (h["dev_item_auc"], h["epoch"]))


def last_epochs(state: RunState, count: int) -> list[dict]:
    """The last ``count`` finished epochs at the final input size (fewer if the run has fewer)."""
    size = final_size(state)
    at_final_size = [h for h in state.history if h["input_size_px"] == size]
    return at_final_size[-count:]


def chosen_by_number(state: RunState, epoch: int) -> dict:
    """The history record of finished epoch ``epoch``, which must be at the final size."""
    for record in state.history:
        if record["epoch"] == epoch:
            if record["input_size_px"] != final_size(state):
                raise ValueError(f"epoch {epoch} ran at {record['input_size_px']} px, not the "
                                 f"run's final {final_size(state)} px")
            return record
    done = [h["epoch"] for h in state.history]
    raise ValueError(f"the run has no finished epoch {epoch} (finished: "
                     f"{', '.join(map(str, done)) or 'none'})")


def average_checkpoints(model, paths: list[Path]) -> None:
    """Load into ``model`` the mean of the checkpoints in ``paths`` (same architecture).

    Averaging the weights of the last epochs of one run (as in stochastic weight averaging) gives
    a model that is less at the mercy of where the last steps happened to land; one epoch's dev
    AUC moved by up to 0.2 from epoch to epoch here. Float variables, batch-norm statistics
    included, are averaged; any integer state (a random generator's seed) is taken from the last.
    """
    import numpy as np

    if not paths:
        raise ValueError("no checkpoints to average")
    total: list | None = None
    for path in paths:
        model.load_weights(str(path))
        weights = model.get_weights()
        if total is None:
            total = [w.astype(np.float64) if w.dtype.kind == "f" else w for w in weights]
            continue
        total = [t + w if w.dtype.kind == "f" else w for t, w in zip(total, weights)]
    model.set_weights([(t / len(paths)).astype(w.dtype) if w.dtype.kind == "f" else t
                       for t, w in zip(total, model.get_weights())])


def soup_parents(state: RunState, epoch: int, others: Sequence[Path]) -> list[dict]:
    """Check that each run in ``others`` can be averaged with ``state``'s run at ``epoch``.

    A weight soup (Wortsman et al. 2022) averages runs that differ only in their seed: the same
    start, recipe and schedule, so their weights stay close enough for the mean to be a model.
    Returns one record per other run (its folder's name, seed, and history), for the log.

    Raises:
        ValueError: a run has other settings than the seed, a seed already in the soup, or no
            finished ``epoch``.
    """
    ignored = {"seed"}
    mine = {k: v for k, v in state.settings.items() if k not in ignored}
    seeds = {state.settings.get("seed")}
    parents = []
    for run_dir in others:
        other = RunState.load(run_dir)
        theirs = {k: v for k, v in other.settings.items() if k not in ignored}
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if differ:
            raise ValueError(f"{run_dir} was trained with other settings ({', '.join(differ)}); "
                             "a soup averages runs that differ only in their seed")
        if other.settings.get("seed") in seeds:
            raise ValueError(f"{run_dir} has the same seed as a run it would be averaged with")
        seeds.add(other.settings.get("seed"))
        chosen_by_number(other, epoch)
        parents.append({"run": Path(run_dir).name, "seed": other.settings.get("seed"),
                        "epoch": epoch, "history": other.history})
    return parents


def publish_model(
    state: RunState,
    run_dir: Path,
    models_dir: Path,
    name: str,
    dev_labels: Path | None,
    cache_dir: Path,
    version: str = "0.1.0",
    face_margin: float = TRAIN_SETTINGS.face_margin,
    export_litert: bool = False,
    average_last: int = 0,
    epoch: int | None = None,
    soup_with: tuple[Path, ...] = (),
) -> Path:
    """Copy the chosen epoch's weights to ``models/<name>.weights.h5``, calibrate the threshold on
    dev, write the card ``models/<name>.toml`` and ``models/<name>.train_metrics.json``.

    ``average_last = K`` publishes the mean of the last K epochs' weights (at the final size)
    instead of the single epoch with the best dev AUC; ``epoch = N`` publishes epoch N (a
    finished epoch at the final size) whatever its dev AUC. ``soup_with`` (with ``epoch``) names
    other run folders, the same recipe with other seeds, whose epoch N is averaged in too.

    Returns:
        the card path.
    """
    settings = TrainSettings(**{**state.settings,
                                "schedule": tuple(tuple(p) for p in state.settings["schedule"])})
    if average_last > 0 and epoch is not None:
        raise ValueError("publish either one named epoch or the mean of the last epochs, not both")
    if soup_with and epoch is None:
        raise ValueError("a soup averages one named epoch of each run: give --epoch")
    if epoch is not None:
        chosen, epochs = chosen_by_number(state, epoch), [epoch]
    elif average_last > 0:
        averaged = last_epochs(state, average_last)
        chosen, epochs = averaged[-1], [h["epoch"] for h in averaged]
    else:
        chosen = choose_epoch(state)
        epochs = [chosen["epoch"]]
    parents = soup_parents(state, epoch, soup_with) if soup_with else []
    size = chosen["input_size_px"]
    model = architecture(settings, size)
    average_checkpoints(model, [Path(run_dir) / f"epoch_{e}.weights.h5" for e in epochs]
                        + [Path(p) / f"epoch_{epoch}.weights.h5" for p in soup_with])
    dev_cache = DEV_CONTEXT_SETTINGS if settings.uses_context else DEV_SETTINGS
    calibration = (calibrate_on_dev(model, dev_labels, cache_dir, size, dev_cache,
                                    fit_temperature=settings.uses_context)
                   if dev_labels else {"threshold": 0.5, "temperature": 1.0, "items": 0,
                                       "dev_item_auc_cache": None})
    if settings.uses_context:  # v3 is cropped like the published recipe's test crops
        face_margin, crop_rule = SERVING_CROP_MARGIN, "box"
    else:
        crop_rule = "square"
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    weights_name = f"{name}.weights.h5"
    model.save_weights(str(models_dir / weights_name))
    tflite_name = None
    if export_litert:
        from detector.runtime import export_tflite

        tflite_name = f"{name}.tflite"
        export_tflite(model, models_dir / tflite_name)
    card_path = models_dir / f"{name}.toml"
    write_model_card(card_path, {
        "name": name, "version": version, "architecture": "efficientnet_b0",
        "weights": weights_name, "tflite": tflite_name, "input_size_px": size,
        "mean_rgb": list(MEAN_RGB), "std_rgb": list(STD_RGB), "face_detector": "yunet",
        "face_margin": face_margin, "crop_rule": crop_rule,
        "temperature": calibration["temperature"], "threshold": round(calibration["threshold"], 4),
        "trained": True, "activation": settings.activation, "use_se": settings.use_se,
        "initialisation": settings.init,
        "training_data": "../shared/data/train/real (research / non-commercial terms)",
    })
    summary = {"settings": state.settings, "chosen_epoch": chosen["epoch"],
               "averaged_epochs": epochs, "soup_with": parents,
               "calibration": calibration, "history": state.history}
    (models_dir / f"{name}.train_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    what = f"epoch {epochs[0]}" if len(epochs) == 1 else f"mean of epochs {epochs[0]}-{epochs[-1]}"
    if parents:
        what += f" averaged with {len(parents)} other seed(s)"
    log.info("published %s (%s, %d px, threshold %.3f)", card_path, what, size,
             calibration["threshold"])
    return card_path
