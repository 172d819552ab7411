"""The model subcommands (`prepare`, `train`, `evaluate`, `quantize`), registered on the main
parser."""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable
from pathlib import Path

from app.cli_config import load_cli_config
from detector.config import Config, with_overrides
from detector.errors import TrainingDataError

log = logging.getLogger(__name__)

DEFAULT_DATA_ROOT = Path("../shared/data")
DEFAULT_CACHE_DIR = Path(".cache/faces")
SHARED_YUNET = Path("../shared/models/face_detection_yunet.onnx")
DEFAULT_LANDMARK_MODEL = Path("models/face_landmark.tflite")


_config = load_cli_config   # the same loader as every other subcommand (app/cli_config.py)


def _yunet_path(config: Config) -> Path:
    """The configured YuNet file, or the shared research copy when that is all there is."""
    configured = config.resolve_path(config.faces.yunet_model)
    if not configured.is_file() and SHARED_YUNET.is_file():
        log.info("YuNet not at %s; using %s", configured, SHARED_YUNET)
        return SHARED_YUNET.resolve()
    return configured


def _training_detector(config: Config):
    from detector.face_detect import make_face_detector

    return make_face_detector("yunet", yunet_model=_yunet_path(config),
                              detect_width_px=config.faces.detect_width_px,
                              min_face_px=config.faces.min_face_px,
                              max_faces=config.faces.max_faces,
                              yunet_runtime=config.faces.yunet_runtime)


def _split_path(config: Config, args: argparse.Namespace) -> Path:
    if args.split:
        return Path(args.split)
    return config.resolve_path(config.model.dir) / f"{config.model.name}.split.csv"


def _import_tensorflow_quietly() -> None:
    """Import Keras/TensorFlow with file descriptor 2 silenced: its C++ start-up chatter
    (oneDNN, CUDA drivers) ignores TF_CPP_MIN_LOG_LEVEL and would come before any one-line
    error (``-vv`` shows it)."""
    from detector.runtime import native_stderr_silenced

    with native_stderr_silenced(not log.isEnabledFor(logging.DEBUG)):
        import keras  # noqa: F401


def _plain_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Training code says what is wrong with ValueError / FileNotFoundError (missing data,
    an empty cache, a run folder with other settings, a bad schedule); the CLI shows that
    sentence, not a traceback (``-vv`` logs the traceback)."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ValueError, FileNotFoundError) as exc:
            log.debug("%s failed", command.__name__, exc_info=True)
            raise TrainingDataError(str(exc)) from None

    return run


# --- prepare ----------------------------------------------------------------------------------
@_plain_errors
def prepare_command(args: argparse.Namespace) -> int:
    """Detect and crop faces of the training and dev media into the cache (idempotent)."""
    from detector.training.prepare import prepare_training_data, write_holdout_eval_set

    config = _config(args)
    detector = _training_detector(config)
    split = _split_path(config, args)
    landmark_model = None
    layouts: tuple[str, ...] = ("crop",)
    if args.landmarks:
        from detector.training.landmarks import LandmarkModel

        landmark_model = LandmarkModel(args.landmark_model)
        layouts = ("context",) if args.landmarks_only else ("crop", "context")
    summaries = prepare_training_data(Path(args.data_root), Path(args.cache_dir), split, detector,
                                      holdout_fraction=args.holdout_fraction,
                                      include_dev=not args.no_dev,
                                      show_progress=not args.no_progress,
                                      landmark_model=landmark_model, layouts=layouts)
    for part, s in summaries.items():
        print(f"{part}: {s.processed} files cropped ({s.crops} crops, {s.fallbacks} whole-image "
              f"fallbacks, {s.without_face} without a face), {s.cached_before} already cached, "
              f"{len(s.errors)} unreadable")
        for error in s.errors[:10]:
            print(f"  {error}")
    if args.holdout_set:
        count = write_holdout_eval_set(Path(args.data_root), split, Path(args.holdout_set),
                                       detector, show_progress=not args.no_progress,
                                       landmark_model=landmark_model)
        print(f"held-out evaluation set: {count} rows in {Path(args.holdout_set) / 'labels.csv'}")
    return 0


def fetch_landmarks_command(args: argparse.Namespace) -> int:
    """Extract MediaPipe's face-mesh model from the mediapipe wheel on PyPI."""
    from detector.training.landmarks import LANDMARK_WHEEL, fetch_landmark_model

    target = Path(args.output)
    if target.is_file() and not args.force:
        print(f"{target} already exists (--force to fetch again)")
        return 0
    fetch_landmark_model(target, wheel=Path(args.wheel) if args.wheel else None)
    print(f"wrote {target} (MediaPipe face mesh, Apache-2.0, from {LANDMARK_WHEEL})")
    return 0


# --- train ------------------------------------------------------------------------------------
def train_settings(args: argparse.Namespace):
    """The ``TrainSettings`` that ``train``'s options ask for."""
    from detector.training.settings import TrainSettings, parse_schedule

    return TrainSettings(
        schedule=parse_schedule(args.schedule),
        images_per_epoch=args.images_per_epoch,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        init=args.init,
        seed=args.seed,
        utkface_share=args.utkface_share,
        init_weights=str(args.init_weights) if args.init_weights else None,
        blend_recipe=args.blend_recipe,
        frozen_stages=args.frozen_stages,
        unfreeze_last_epochs=args.unfreeze_last,
        sam_rho=args.sam_rho,
        pair_downscale=args.pair_downscale,
        cross_candidates=args.cross_candidates,
        anchor_strength=args.anchor_strength,
    )


@_plain_errors
def train_command(args: argparse.Namespace) -> int:
    """Train (or resume), then publish the chosen epoch with its card."""
    if args.no_publish and args.publish_only:
        raise ValueError("--no-publish and --publish-only contradict each other: choose one")
    if args.no_publish and (args.epoch is not None or args.average_last or args.soup_with):
        raise ValueError("--epoch, --average-last and --soup-with choose what to publish, so they "
                         "cannot be combined with --no-publish (publish later with --publish-only)")
    config = _config(args)
    split = _split_path(config, args)
    if not split.is_file():
        raise FileNotFoundError(f"split file {split} not found: run `deepfake-detector prepare` first")
    _import_tensorflow_quietly()
    from detector.training.publish import publish_model
    from detector.training.split import read_split
    from detector.training.train import RunState, train_model

    settings = train_settings(args)
    if settings.sam_rho:
        from detector.training.sam import check_backend

        check_backend()  # before the cache is loaded
    if args.average_last < 0:
        raise ValueError(f"--average-last must be 0 or more, got {args.average_last}")
    dev_labels = Path(args.data_root) / "dev" / "labels.csv"
    run_dir = Path(args.run_dir or f"runs/{config.model.name}_{args.init}")
    if args.publish_only:
        state = RunState.load(run_dir)
    else:
        state = train_model(read_split(split), Path(args.cache_dir), run_dir, settings,
                            dev_labels if dev_labels.is_file() else None,
                            stop_after_epochs=args.stop_after)
    for record in state.history:
        dev = record["dev_item_auc"]
        print(f"epoch {record['epoch']:>2} {record['input_size_px']}px loss {record['loss']:.4f} "
              f"{record['images_per_s']:.1f} img/s holdout AUC {record['holdout_auc']['value']:.3f} "
              f"dev AUC {'n/a' if dev is None else f'{dev:.3f}'}")
    if args.no_publish:
        return 0
    models_dir = Path(args.models_dir) if args.models_dir else config.resolve_path(config.model.dir)
    card = publish_model(state, run_dir, models_dir, config.model.name,
                         dev_labels if dev_labels.is_file() else None, Path(args.cache_dir),
                         export_litert=args.litert, version=args.version,
                         average_last=args.average_last, epoch=args.epoch,
                         soup_with=tuple(Path(p) for p in args.soup_with))
    print(f"model card written to {card}")
    return 0


# --- evaluate ---------------------------------------------------------------------------------
def evaluate_command(args: argparse.Namespace) -> int:
    """Score a labelled set through the pipeline's scoring path and write the report."""
    from app.evaluate import run_evaluate
    from detector.training.faces import FallbackPolicy
    from detector.worker import build_frame_scorer

    config = _config(args)
    if args.report is not None:
        from app.outputs import check_output_path

        check_output_path(Path(args.report), "--report", create_folder=True)
    _import_tensorflow_quietly()
    if not args.yunet_model and not config.resolve_path(config.faces.yunet_model).is_file() \
            and SHARED_YUNET.is_file():
        config = with_overrides(config, faces={"yunet_model": str(SHARED_YUNET.resolve())})
    if args.models_dir:
        config = with_overrides(config, model={"dir": str(Path(args.models_dir).resolve())})
    scorer = build_frame_scorer(config, threads=args.threads)
    root = Path(args.root) if args.root else Path(args.labels).parent
    run_evaluate(scorer, Path(args.labels), root, Path(args.report) if args.report else None,
                 max_frames=args.max_frames, stride=args.stride or config.sampling.stride,
                 fallback=None if args.no_fallback else FallbackPolicy())
    return 0


# --- quantize ---------------------------------------------------------------------------------
def _block_list(text: str) -> tuple[str, ...]:
    """``"stem,block1a"`` → ``("stem", "block1a")``; each a bare Keras layer-name prefix."""
    blocks = tuple(b.strip() for b in text.split(",") if b.strip())
    for block in blocks:
        if not block.replace("_", "").isalnum():
            raise argparse.ArgumentTypeError(f"expected block names like stem,block1a, got {block!r}")
    return blocks


@_plain_errors
def quantize_command(args: argparse.Namespace) -> int:
    """Export the int8 LiteRT file, measure its parity (and bfloat16's) with float32, write them
    into the card."""
    config = _config(args)
    _import_tensorflow_quietly()
    if not args.yunet_model and not config.resolve_path(config.faces.yunet_model).is_file() \
            and SHARED_YUNET.is_file():
        config = with_overrides(config, faces={"yunet_model": str(SHARED_YUNET.resolve())})
    from app.quantize import run_quantize

    models_dir = Path(args.models_dir) if args.models_dir else config.resolve_path(config.model.dir)
    dev_labels = args.dev_labels
    if dev_labels is None and (DEFAULT_DATA_ROOT / "dev" / "labels.csv").is_file():
        dev_labels = DEFAULT_DATA_ROOT / "dev" / "labels.csv"
    if args.samples < 2:
        raise ValueError(f"--samples must be at least 2, got {args.samples}")
    run_quantize(config, models_dir, Path(args.cache_dir), dev_labels, args.holdout_labels,
                 samples=args.samples, seed=args.seed, threads=args.threads,
                 max_frames=args.max_frames, float_blocks=tuple(args.float_blocks))
    return 0


# --- registration -----------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="config file (default: ./config.toml if present, else built-in defaults)")
    parser.add_argument("--model", help="model name (card models/NAME.toml; default model.name)")
    parser.add_argument("--yunet-model", type=Path, default=None,
                        help="YuNet ONNX file (default faces.yunet_model, else "
                             "../shared/models/face_detection_yunet.onnx when present)")
    from app.cli import add_verbosity

    add_verbosity(parser)


def _data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                        help="folder holding train/real and dev/labels.csv (default ../shared/data)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help="face cache folder, git-ignored (default .cache/faces)")
    parser.add_argument("--split", type=Path, default=None,
                        help="split CSV (default models/NAME.split.csv)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the model subcommands to ``subparsers``."""
    from detector.runtime_kinds import RUNTIMES
    from detector.training.settings import (
        CROSS_IDENTITY_SHARE,
        MAX_FROZEN_STAGES,
        RECIPES,
        TrainSettings,
    )

    default = TrainSettings()  # the train options' defaults are the settings' own

    p = subparsers.add_parser(
        "prepare", help="detect and crop training/dev faces into the cache (idempotent)",
        description="Write the person/video split (if missing) and cache YuNet face crops of "
                    "the training media and the dev set. Files already cached are skipped.")
    _common(p)
    _data(p)
    p.add_argument("--holdout-fraction", type=float, default=0.12,
                   help="share of person/video groups held out (only when the split is created)")
    p.add_argument("--no-dev", action="store_true", help="do not cache the dev set")
    p.add_argument("--holdout-set", type=Path, default=None,
                   help="also write real + self-blended images of the held-out people, with a "
                        "labels.csv, to this folder (keep it under .cache/: it holds data); with "
                        "--landmarks the fakes are recipe v3's")
    p.add_argument("--landmarks", action="store_true",
                   help="also cache context crops with face-mesh landmarks (for --blend-recipe v3; "
                        "run `fetch-landmarks` first)")
    p.add_argument("--landmarks-only", action="store_true",
                   help="with --landmarks: fill only the context cache")
    p.add_argument("--landmark-model", type=Path, default=DEFAULT_LANDMARK_MODEL,
                   help="face-mesh model (default models/face_landmark.tflite)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=prepare_command)

    p = subparsers.add_parser(
        "fetch-landmarks", help="extract MediaPipe's face-mesh model (training only) from PyPI",
        description="Download the mediapipe==0.10.21 wheel with `pip download --no-deps` (mediapipe "
                    "is not installed) and extract face_landmark.tflite (468 points, Apache-2.0), "
                    "which `prepare --landmarks` uses. Serving does not need it.")
    p.add_argument("--output", type=Path, default=DEFAULT_LANDMARK_MODEL,
                   help="where to write it (default models/face_landmark.tflite)")
    p.add_argument("--wheel", type=Path, default=None,
                   help="an already-downloaded mediapipe-0.10.21 wheel (no download)")
    p.add_argument("--force", action="store_true", help="fetch even if the file exists")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.set_defaults(func=fetch_landmarks_command)

    p = subparsers.add_parser(
        "train", help="train EfficientNet-B0 on real faces + self-blended fakes, write weights and card",
        description="Train from the face cache (run `prepare` first). Each epoch is checkpointed "
                    "in --run-dir; running again resumes. At the end the epoch with the best dev "
                    "AUC is published to models/NAME.weights.h5 with its card, the threshold "
                    "calibrated on dev.")
    _common(p)
    _data(p)
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints (default runs/NAME_INIT)")
    p.add_argument("--init", choices=("lite0", "random"), default=default.init,
                   help="initialisation: ImageNet EfficientNet-Lite0 weights or random")
    p.add_argument("--schedule", default=",".join(f"{s}:{e}" for s, e in default.schedule),
                   help="input sizes and epochs, SIZE:EPOCHS,… (low-resolution warm-up first)")
    p.add_argument("--images-per-epoch", type=int, default=default.images_per_epoch,
                   help="training images drawn per epoch (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=default.batch_size,
                   help="images per step (default %(default)s)")
    p.add_argument("--learning-rate", type=float, default=default.learning_rate,
                   help="peak learning rate (default %(default)s)")
    p.add_argument("--seed", type=int, default=default.seed, help="random seed (default %(default)s)")
    p.add_argument("--utkface-share", type=float, default=default.utkface_share,
                   help="share of training samples drawn from UTKFace chips (rest: video frames, stills)")
    p.add_argument("--init-weights", type=Path, default=None,
                   help="start from these weights (e.g. a previous run's epoch) instead of --init")
    p.add_argument("--blend-recipe", choices=RECIPES, default=default.blend_recipe,
                   help="self-blend recipe: v1 made sbi_b0 0.1.0, v2 was tried "
                        "(detector/training/self_blend.py), v3 is the published recipe on landmarks "
                        "(detector/training/sbi.py; needs `prepare --landmarks`); the share of v3's "
                        "pseudo-fakes that are cross-identity blends instead: "
                        + ", ".join(f"{name} {100 * share:.0f} %%" for name, share
                                    in CROSS_IDENTITY_SHARE.items()))
    p.add_argument("--frozen-stages", type=int, default=default.frozen_stages,
                   help=f"freeze the stem and the first N stages (0-{MAX_FROZEN_STAGES}) to train faster "
                        "(bench/train_speed.py: 1.8x at N=2 on 2 CPU cores)")
    p.add_argument("--unfreeze-last", type=int, default=default.unfreeze_last_epochs,
                   help="with --frozen-stages: train every layer in the last N epochs")
    p.add_argument("--sam-rho", type=float, default=default.sam_rho, metavar="RHO",
                   help="sharpness-aware minimisation around AdamW with this radius, as the "
                        "published recipe trains (0.05 there; about 2x the time per step; "
                        "default 0: plain AdamW)")
    p.add_argument("--pair-downscale", type=float, default=default.pair_downscale, metavar="SHARE",
                   help="recipe v3 and its cross-identity variants: scale this share of the "
                        "real/fake pairs down together (to 40-90 %% of their size) and back up "
                        "before the JPEG step, like faces filmed smaller (default %(default)s)")
    p.add_argument("--cross-candidates", type=int, default=default.cross_candidates, metavar="N",
                   help="cross-identity blends: draw N faces of other people at random and take "
                        "the one whose landmarks are nearest the target's as the source "
                        "(default %(default)s)")
    p.add_argument("--anchor-strength", type=float, default=default.anchor_strength, metavar="LAMBDA",
                   help="with --init-weights: after every step pull each trained weight toward "
                        "its initial value by learning rate x LAMBDA x the difference (L2-SP, "
                        "decoupled like AdamW's decay), so a long run stays near its start "
                        "(default 0: no pull)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many epochs (a short comparison run)")
    p.add_argument("--no-publish", action="store_true", help="train only; do not write the model")
    p.add_argument("--publish-only", action="store_true",
                   help="do not train: publish --run-dir as it stands (its best dev epoch so far)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="publish into this folder instead of model.dir (e.g. to `evaluate` a "
                        "candidate with --models-dir before it replaces the shipped model)")
    p.add_argument("--litert", action="store_true", help="also export models/NAME.tflite")
    p.add_argument("--average-last", type=int, default=0, metavar="K",
                   help="publish the mean of the last K epochs' weights (at the final size) "
                        "instead of the one epoch with the best dev AUC")
    p.add_argument("--epoch", type=int, default=None, metavar="N",
                   help="publish finished epoch N instead of the one with the best dev AUC")
    p.add_argument("--soup-with", action="append", default=[], metavar="RUN_DIR",
                   help="with --epoch N: average epoch N of this run folder (the same recipe, "
                        "another seed) into the published weights; repeatable")
    p.add_argument("--version", default="0.1.0", help="version written into the card")
    p.set_defaults(func=train_command)

    p = subparsers.add_parser(
        "evaluate", help="score a labelled set of images/videos and report AUC, accuracy, …",
        description="Score labels.csv (path,label[,dataset,method,group]) through face detection, "
                    "crop, batched inference and aggregation; write a JSON report and print a table.")
    _common(p)
    p.add_argument("--labels", type=Path, required=True, help="labels.csv")
    p.add_argument("--root", type=Path, default=None,
                   help="folder the paths are relative to (default: the labels file's folder)")
    p.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--max-frames", type=int, default=32,
                   help="frames scored per video at most, evenly spread (default 32)")
    p.add_argument("--stride", type=int, default=None,
                   help="sample every Nth video frame (default sampling.stride = 4)")
    p.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="model runtime (default workers.runtime)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = all)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="read the card from this folder instead of model.dir (a candidate "
                        "published with `train --models-dir`)")
    p.add_argument("--no-fallback", action="store_true",
                   help="do not score small near-square images without a detection as one face")
    p.set_defaults(func=evaluate_command)

    p = subparsers.add_parser(
        "quantize",
        help="export the int8 LiteRT model, measure its (and bfloat16's) parity with float32, "
             "update the card",
        description="Export models/NAME.int8.tflite (full-integer, calibrated on real faces of the "
                    "`prepare --landmarks` cache and their pseudo-fakes, cut the serving way), "
                    "score the dev and held-out sets with float32 and int8 (and with OpenVINO in "
                    "bfloat16 where this CPU computes it natively) through the pipeline, and "
                    "write the parity numbers into the card. precision (what workers.runtime = "
                    "\"auto\" runs) is \"int8\" when both of its item AUCs are within 0.01 of "
                    "float32, else \"bfloat16\" when both of those are, else \"float32\". Run "
                    "it again whenever the weights change.")
    _common(p)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                   help="face cache filled by `prepare --landmarks` (default .cache/faces)")
    p.add_argument("--dev-labels", type=Path, default=None,
                   help="dev labels.csv (default ../shared/data/dev/labels.csv when present)")
    p.add_argument("--holdout-labels", type=Path, default=None,
                   help="held-out pseudo-fake labels.csv (`prepare --holdout-set`); without it "
                        "the card keeps precision float32")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="the card's folder (default model.dir)")
    p.add_argument("--samples", type=int, default=300,
                   help="representative crops: half real faces, half their pseudo-fakes (default 300)")
    p.add_argument("--seed", type=int, default=0, help="which cached faces are drawn (default 0)")
    p.add_argument("--max-frames", type=int, default=32,
                   help="frames scored per video at most, as in evaluate (default 32)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = all)")
    p.add_argument("--float-blocks", type=_block_list, default=(),
                   help="comma-separated Keras block prefixes kept float32 (e.g. "
                        "stem,block1a,block2a,block2b): a mixed file, not full-integer; the card "
                        "lists them (default: none, full-integer)")
    p.set_defaults(func=quantize_command)
