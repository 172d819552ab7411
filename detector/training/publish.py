"""Publish a run: the epoch chosen on dev, its weights, its card (calibrated on dev) and its log."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from detector.efficientnet import EfficientNetB0Classifier
from detector.model_card import write_model_card
from detector.training.evaluation import calibrate_on_dev
from detector.training.prepare import DEV_CONTEXT_SETTINGS, DEV_SETTINGS, TRAIN_SETTINGS
from detector.training.sbi import SERVING_CROP_MARGIN
from detector.training.settings import MEAN_RGB, STD_RGB, TrainSettings
from detector.training.train import RunState

log = logging.getLogger(__name__)


def choose_epoch(state: RunState, final_size_only: bool = True) -> dict:
    """The epoch with the best dev item AUC (ties → later), among epochs at the final size."""
    final_size = state.history[-1]["input_size_px"]
    candidates = [h for h in state.history
                  if h["dev_item_auc"] is not None
                  and (not final_size_only or h["input_size_px"] == final_size)]
    if not candidates:
        return state.history[-1]
    return max(candidates, key=lambda h: (h["dev_item_auc"], h["epoch"]))



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
) -> Path:
    """Copy the chosen epoch's weights to ``models/<name>.weights.h5``, calibrate the threshold on
    dev, write the card ``models/<name>.toml`` and ``models/<name>.train_metrics.json``.

    Returns:
        the card path.
    """
    settings = TrainSettings(**{**state.settings,
                                "schedule": tuple(tuple(p) for p in state.settings["schedule"])})
    chosen = choose_epoch(state)
    size = chosen["input_size_px"]
    model = EfficientNetB0Classifier(size, activation=settings.activation, use_se=settings.use_se)
    model.load_weights(str(Path(run_dir) / f"epoch_{chosen['epoch']}.weights.h5"))
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
               "calibration": calibration, "history": state.history}
    (models_dir / f"{name}.train_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("published %s (epoch %d, %d px, threshold %.3f)", card_path, chosen["epoch"], size,
             calibration["threshold"])
    return card_path
