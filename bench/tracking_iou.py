"""Do tracked boxes stay on the face? Region search vs full detection on every sampled frame.

A clip is read in order (generated: faces that move, leave and enter; or ``--video``). Each
sampled frame is planned by the service's own tracker (``detector/tracking.py``) and searched
the way a worker would (``frame_scorer.detect_planned``: in full, or only near each track); the same
frame is also searched in full. On every frame planned as ``track``, each track the tracker
hinted is compared with the best-overlapping full detection: a frame passes when every hinted
track was found with IoU ≥ ``--min-iou`` (a track the region search lost while the full search
still sees its face fails the frame). It also times the detector per frame in each mode (on
this machine as it is, other jobs included: "under load"). Prints a table, writes JSON.

    python bench/tracking_iou.py --json bench/tracking_iou.json

Speed is reported, never asserted; ``tests/integration/test_tracking_iou.py`` asserts the IoU bar.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detector.boxes import box_iou  # noqa: E402
from detector.config import TrackingConfig  # noqa: E402
from detector.face_detect import FaceDetector, make_face_detector  # noqa: E402
from detector.frame_scorer import detect_planned  # noqa: E402
from detector.tracking import StreamTracker  # noqa: E402
from detector.wire import TRACK_DETECT, FaceResult  # noqa: E402
from producers.synthetic import FacePath  # noqa: E402

SHARED_YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet.onnx"

# Two faces cross a 720p frame, one leaves, one walks in (coordinates for 1280 × 720).
PATHS_720P = (FacePath(0, 239, (80, 240), (520, 300), 260),
              FacePath(0, 119, (880, 80), (1000, 140), 260),
              FacePath(150, 239, (600, 400), (420, 380), 260))


@dataclass(frozen=True)
class IouResult:
    detector: str
    frames_sampled: int
    frames_tracked: int       # planned as "track" (the rest were full detections)
    frames_passed: int        # tracked frames where every hinted track has IoU >= min_iou
    min_iou: float
    iou_median: float | None
    iou_p05: float | None
    tracks_lost: int          # hinted tracks the region search missed though full detection saw a face
    detect_full_ms: float     # median per frame
    detect_track_ms: float | None

    @property
    def pass_rate(self) -> float | None:
        return self.frames_passed / self.frames_tracked if self.frames_tracked else None


def measure(frames_bgr: Iterable[np.ndarray], detector: FaceDetector, settings: TrackingConfig,
            detector_name: str, stride: int = 4, min_iou: float = 0.8,
            max_tracks: int = 5, full_width_px: int = 640) -> IouResult:
    """Run the tracker over ``frames_bgr`` (every ``stride``-th is sampled) and compare.

    Returns:
        the counts, IoU quantiles and median detect times per mode.
    """
    tracker = StreamTracker(settings, window=8, max_tracks=max_tracks)
    ious: list[float] = []
    full_ms: list[float] = []
    track_ms: list[float] = []
    sampled = tracked = passed = lost = 0
    for index, frame in enumerate(frames_bgr):
        if index % stride:
            continue
        sampled += 1
        plan = tracker.plan(index)
        started = time.perf_counter()
        faces = detect_planned(detector, frame, plan, settings.roi_scale, settings.roi_face_px,
                               full_width_px)
        planned_ms = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        full = detector.detect(frame)
        full_ms.append((time.perf_counter() - started) * 1000.0)
        if plan.mode == TRACK_DETECT:
            tracked += 1
            track_ms.append(planned_ms)
            found = {face.track_id: face for face in faces}
            frame_ok = True
            for hint in plan.tracks:
                face = found.get(hint.track_id)
                best = max((box_iou(face.box_xyxy, f.box_xyxy) for f in full), default=0.0) \
                    if face is not None else 0.0
                if face is None:
                    # lost by the region search: a failure only if the face is still there
                    still_there = any(box_iou(hint.box_xyxy, f.box_xyxy) > 0 for f in full)
                    lost += still_there
                    frame_ok &= not still_there
                    continue
                ious.append(best)
                frame_ok &= best >= min_iou
            passed += frame_ok
        # scores are not measured here: the tracker only needs the boxes
        tracker.update(index, [FaceResult(f.box_xyxy, f.confidence, 0.0, f.track_id)
                               for f in faces])
    quantiles = np.quantile(ious, [0.05, 0.5]) if ious else None
    return IouResult(
        detector=detector_name, frames_sampled=sampled, frames_tracked=tracked,
        frames_passed=passed, min_iou=min_iou,
        iou_median=None if quantiles is None else round(float(quantiles[1]), 4),
        iou_p05=None if quantiles is None else round(float(quantiles[0]), 4),
        tracks_lost=lost,
        detect_full_ms=round(statistics.median(full_ms), 2) if full_ms else 0.0,
        detect_track_ms=round(statistics.median(track_ms), 2) if track_ms else None,
    )


def generated_frames(n_frames: int, width: int, height: int,
                     paths: tuple[FacePath, ...] = PATHS_720P) -> Iterable[np.ndarray]:
    """The frames of the generated many-face clip, encoded and decoded through H.264 (PyAV)
    like a real file; ``paths`` are scaled from 1280 × 720 to ``width`` × ``height``."""
    import tempfile

    from producers.synthetic import write_faces_video

    sx, sy = width / 1280.0, height / 720.0
    scaled = tuple(FacePath(p.first_frame, p.last_frame,
                            (int(p.start_xy[0] * sx), int(p.start_xy[1] * sy)),
                            (int(p.end_xy[0] * sx), int(p.end_xy[1] * sy)),
                            int(p.side_px * min(sx, sy))) for p in paths)
    with tempfile.TemporaryDirectory() as folder:
        clip = write_faces_video(Path(folder) / "faces.mp4", n_frames, scaled, width, height)
        yield from file_frames(clip)


def file_frames(path: Path) -> Iterable[np.ndarray]:
    from producers.file_source import FileSource

    source = FileSource(path)
    try:
        source.open()
        for frame in source.frames():
            yield frame.image_bgr
    finally:
        source.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, help="a clip to read instead of the generated one")
    parser.add_argument("--frames", type=int, default=240,
                        help="frames of the generated clip, or read from --video at most")
    parser.add_argument("--size", default="1280x720", help="generated clip WIDTHxHEIGHT")
    parser.add_argument("--detectors", default="yunet,haar")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--min-iou", type=float, default=0.8)
    parser.add_argument("--yunet", type=Path, default=SHARED_YUNET)
    parser.add_argument("--json", type=Path, help="write the results here")
    defaults = TrackingConfig()
    for name in ("full_every", "roi_scale", "roi_face_px"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(defaults, name)),
                            default=getattr(defaults, name),
                            help=f"tracking.{name} (default {getattr(defaults, name)})")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    settings = dataclasses.replace(defaults, full_every=args.full_every, roi_scale=args.roi_scale,
                                   roi_face_px=args.roi_face_px)
    results = []
    for name in args.detectors.split(","):
        if name == "yunet" and not args.yunet.is_file():
            print(f"skipping yunet: {args.yunet} not found", file=sys.stderr)
            continue
        detector = make_face_detector(name, yunet_model=args.yunet)
        frames = (itertools.islice(file_frames(args.video), args.frames) if args.video
                  else generated_frames(args.frames, width, height))
        results.append(measure(frames, detector, settings, name, args.stride, args.min_iou))
    load = os.getloadavg()[0]
    clip = (f"{args.video.name}, first {args.frames} frames" if args.video
            else f"generated {width}x{height}, {args.frames} frames")
    print(f"clip: {clip}; stride {args.stride}; tracking defaults {asdict(settings)}; "
          f"load average {load:.2f} (under load: other jobs share the CPUs)")
    print(f"{'detector':8} {'sampled':>7} {'tracked':>7} {'IoU>=' + str(args.min_iou):>9} "
          f"{'median':>6} {'p05':>6} {'lost':>4} {'full ms':>8} {'track ms':>8}")
    for r in results:
        rate = "—" if r.pass_rate is None else f"{100 * r.pass_rate:.1f} %"
        print(f"{r.detector:8} {r.frames_sampled:7d} {r.frames_tracked:7d} {rate:>9} "
              f"{r.iou_median!s:>6} {r.iou_p05!s:>6} {r.tracks_lost:4d} "
              f"{r.detect_full_ms:8.2f} {r.detect_track_ms!s:>8}")
    if args.json:
        args.json.write_text(json.dumps({
            "clip": clip, "stride": args.stride, "tracking": asdict(settings),
            "load_average_1min": round(load, 2), "cpus": os.cpu_count(),
            "results": [{**asdict(r), "pass_rate": r.pass_rate} for r in results],
        }, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
