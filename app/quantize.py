"""``quantize``: export the int8 LiteRT file of a published model, measure its parity with float32
through the pipeline's scoring path (and bfloat16's, where this machine computes it natively),
write the numbers and the chosen precision into the card.

Run it again whenever the weights change (``train`` rewrites the card without the int8 keys, so
a retrained model serves float32 until it is re-quantized and measured).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import tomllib
from pathlib import Path

from detector.config import Config
from detector.face_detect import make_face_detector
from detector.frame_scorer import FrameScorer
from detector.model_card import ModelCard, card_path_for, load_model_card, write_model_card
from detector.runtime_kinds import BFLOAT16, INT8, KERAS, LITERT, LITERT_INT8, OPENVINO_BF16
from detector.training.faces import FallbackPolicy
from detector.training.quantize import choose_precision
from detector.worker import resolve_face_detector_kind

log = logging.getLogger(__name__)


def weights_digest(path: Path) -> str:
    """The first 16 hex digits of the weights file's SHA-256 (which weights were measured)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _say(message: str) -> None:
    print(message, flush=True)


def _score_set(name: str, labels: Path, scorers: dict[str, FrameScorer], max_frames: int,
               stride: int):
    """Score one labels file with each scorer; returns ``{precision: items}``."""
    from app.evaluate import evaluate_items, read_labels

    rows = read_labels(labels)
    out = {}
    step = max(1, len(rows) // 10)
    for precision, scorer in scorers.items():
        started = time.perf_counter()

        def progress(done: int, total: int, precision=precision) -> None:
            if done % step == 0 or done == total:
                _say(f"  {name} {precision}: {done}/{total} items")

        out[precision] = evaluate_items(scorer, rows, labels.parent, max_frames, stride,
                                        FallbackPolicy(), on_item=progress)
        _say(f"  {name} {precision}: scored in {time.perf_counter() - started:.0f} s "
             f"({scorer.runtime.name})")
    return out


def run_quantize(config: Config, models_dir: Path, cache_dir: Path,
                 dev_labels: Path | None, holdout_labels: Path | None, samples: int = 300,
                 seed: int = 0, threads: int = 0, max_frames: int = 32,
                 stride: int | None = None, float_blocks: tuple[str, ...] = ()) -> dict:
    """Export ``<name>.int8.tflite`` beside the card, measure parity, update the card.

    Args:
        config: the configuration (model name, face detector settings).
        models_dir: the folder of the card and weights.
        cache_dir: the ``prepare --landmarks`` cache (representative real faces).
        dev_labels: the dev ``labels.csv`` (item AUC of both), or ``None``.
        holdout_labels: the held-out pseudo-fake ``labels.csv``, or ``None``.
        samples: representative crops (half real, half their pseudo-fakes).
        float_blocks: Keras block prefixes kept float32 (a mixed export; empty = full-integer).
    The precision written is the fastest one whose parity held: int8, then bfloat16 (measured
    only where OpenVINO runs it natively; a card measured elsewhere loses its ``bf16_parity``),
    else float32.

    Returns:
        what was written: ``{"card": path, "tflite_int8": path, "precision": ..., "parity": {...},
        "bf16_parity": {...} | None}``.
    Raises:
        ModelError: the card or weights are missing or do not load.
        FileNotFoundError / ValueError: the cache or a labels file is missing or empty.
    """
    from detector.runtime import build_model, export_tflite_int8, float_ops, native_stderr_silenced
    from detector.training.quantize import representative_crops

    card_path = card_path_for(models_dir, config.model.name)
    card = load_model_card(card_path)
    for name, labels in (("dev", dev_labels), ("holdout", holdout_labels)):
        if labels is not None and not Path(labels).is_file():
            raise FileNotFoundError(f"{name} labels file {labels} not found")
    _say(f"[1/4] representative set: {samples} crops from {cache_dir} "
         f"({card.crop_rule} crop, margin {card.face_margin:g}, {card.input_size_px} px)")
    crops = representative_crops(cache_dir, card, samples, seed)
    int8_name = f"{card.name}.int8.tflite"
    int8_path = Path(models_dir) / int8_name
    # The new file stays a candidate until its parity is measured: a run that fails half-way
    # leaves the card and the int8 file it names as they were.
    candidate = int8_path.with_name(int8_name + ".candidate")
    digest = weights_digest(card.weights_path)
    _say(f"[2/4] int8 export of {card.weights_path.name} from {len(crops)} crops → {int8_path} "
         "(a minute or two)")
    started = time.perf_counter()
    model = build_model(card)
    try:
        with native_stderr_silenced(not log.isEnabledFor(logging.DEBUG)):  # converter chatter
            export_tflite_int8(model, candidate, card.normalise(crops), float_blocks)
        _say(f"  {candidate.stat().st_size / 2**20:.1f} MB in {time.perf_counter() - started:.0f} s")
        summary = _measure(config, card, candidate, dev_labels, holdout_labels, threads,
                           max_frames, stride or config.sampling.stride)
        if weights_digest(card.weights_path) != digest:
            raise ValueError(f"{card.weights_path} changed while quantize ran: run it again")
        candidate.replace(int8_path)
    finally:
        candidate.unlink(missing_ok=True)
    parity = {"float_runtime": summary["float_runtime"], "weights_sha256": digest,
              "representative_crops": int(len(crops)), "float_blocks": list(float_blocks),
              "float_ops": len(float_ops(int8_path)), **summary[INT8]["parity"]}
    bf16 = summary.get(BFLOAT16)
    bf16_parity = None if bf16 is None else {
        "float_runtime": summary["float_runtime"], "runtime": OPENVINO_BF16,
        "openvino": summary["openvino"], "weights_sha256": digest, **bf16["parity"]}
    precision = choose_precision(summary[INT8]["precision"],
                                 bf16["precision"] if bf16 is not None else "")
    raw = tomllib.loads(card_path.read_text(encoding="utf-8"))
    raw.update({"tflite_int8": int8_name, "precision": precision, "int8_parity": parity})
    if bf16_parity is None:
        raw.pop("bf16_parity", None)
    else:
        raw["bf16_parity"] = bf16_parity
    write_model_card(card_path, raw)
    load_model_card(card_path)  # what was written reads back
    _say(format_parity(parity, INT8))
    if bf16_parity is None:
        _say(f"bfloat16: not measured ({summary['bf16_skipped']})")
    else:
        _say(format_parity(bf16_parity, BFLOAT16))
    _say(f'precision = "{precision}"; card {card_path}')
    return {"card": card_path, "tflite_int8": int8_path, "precision": precision,
            "parity": parity, "bf16_parity": bf16_parity}


def _measure(config: Config, card: ModelCard, int8_file: Path, dev_labels: Path | None,
             holdout_labels: Path | None, threads: int, max_frames: int, stride: int) -> dict:
    """Score the labelled sets with float32, with ``int8_file`` and, where this machine computes
    bfloat16 natively, with OpenVINO in bfloat16; :func:`parity_summary` of each candidate
    (``{"int8": ..., "bfloat16": ... or absent}``), plus ``float_runtime``."""
    from app.evaluate import compute_metrics
    from detector.runtime import load_runtime, native_bfloat16
    from detector.training.quantize import SetParity, frame_differences, parity_summary

    int8_card = dataclasses.replace(card, tflite_int8_path=Path(int8_file).resolve())
    has_tflite = card.tflite_path is not None and card.tflite_path.is_file()
    float_kind = LITERT if has_tflite else KERAS
    bf16_skipped = native_bfloat16() if has_tflite else "the card has no float32 .tflite file"
    detector = make_face_detector(resolve_face_detector_kind(config, card),
                                  yunet_model=config.resolve_path(config.faces.yunet_model),
                                  detect_width_px=config.faces.detect_width_px,
                                  min_face_px=config.faces.min_face_px,
                                  max_faces=config.faces.max_faces,
                                  yunet_runtime=config.faces.yunet_runtime, threads=threads)
    scorers = {"float32": FrameScorer(card, detector, load_runtime(card, float_kind, threads)),
               INT8: FrameScorer(int8_card, detector,
                                 load_runtime(int8_card, LITERT_INT8, threads))}
    if not bf16_skipped:
        scorers[BFLOAT16] = FrameScorer(card, detector, load_runtime(card, OPENVINO_BF16, threads))
    sets: dict[str, list[SetParity]] = {p: [] for p in scorers if p != "float32"}
    for step, (name, labels) in enumerate((("dev", dev_labels), ("holdout", holdout_labels)),
                                          start=3):
        if labels is None:
            _say(f"[{step}/4] {name} set: not given, skipped")
            continue
        _say(f"[{step}/4] {name} set {labels}: scoring with float32 ({float_kind}), "
             + " and ".join(sets))
        items = _score_set(name, Path(labels), scorers, max_frames, stride)
        aucs = {p: compute_metrics(i, card.threshold, resamples=0)["item_auc"]
                for p, i in items.items()}
        counted = sum(1 for i in items["float32"] if i.error is None and i.score is not None)
        for precision, found in sets.items():
            found.append(SetParity(name, aucs["float32"], aucs[precision], counted,
                                   frame_differences(items["float32"], items[precision])))
    summary = {"float_runtime": float_kind,
               **{p: parity_summary(found, candidate=p) for p, found in sets.items()}}
    if bf16_skipped:
        summary["bf16_skipped"] = bf16_skipped
    else:
        import openvino

        summary["openvino"] = openvino.__version__.split("-")[0]
    return summary


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_parity(parity: dict, candidate: str = INT8) -> str:
    """One parity table (``candidate`` against float32) as plain text, with its decision."""
    lines = [f"{'set':<10} {'items':>5} {'AUC float32':>11} {'AUC ' + candidate:>13} {'delta':>8}"]
    for name in ("dev", "holdout"):
        if f"{name}_item_auc_float32" not in parity:
            continue
        f32, other = parity[f"{name}_item_auc_float32"], parity[f"{name}_item_auc_{candidate}"]
        delta = None if f32 is None or other is None else other - f32
        lines.append(f"{name:<10} {parity[f'{name}_items']:>5} {_fmt(f32):>11} {_fmt(other):>13} "
                     f"{'n/a' if delta is None else f'{delta:+.4f}':>8}")
    if parity.get("frames"):
        lines.append(f"|{candidate} - fp32| calibrated frame scores over {parity['frames']} frames: "
                     f"median {parity['frame_abs_diff_median']:.4f}, "
                     f"p99 {parity['frame_abs_diff_p99']:.4f}, max {parity['frame_abs_diff_max']:.4f}")
    decision = parity["decision"]
    held = decision.startswith(f"{candidate}:")
    lines.append(f"{candidate} parity " + ("holds" if held else
                                          "fails: " + decision.split(": ", 1)[-1]))
    return "\n".join(lines)
