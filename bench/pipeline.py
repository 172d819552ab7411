"""Pipeline benchmark: N synthetic 720p streams replayed at once through the worker pool.

Measures, in one run on the same machine:
  * each stage alone, per sampled frame: decode (stride frames decoded per sampled frame),
    detect, crop + classify at the pool's batch size and at batch 1, publish to Redis;
  * the end-to-end pipeline (producers → ZeroMQ → workers → Redis) with the configured batch
    size and with batch size 1: sampled frames/s and capture→Redis latency p50/p95.
Prints a table and writes JSON (``--json``). Speed is reported, never asserted.

    python bench/pipeline.py --streams 4 --frames 160 --json bench/pipeline.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from detector.config import Config, config_from_dict, config_to_dict, load_config
from detector.model_card import card_path_for
from detector.runtime_kinds import RUNTIMES


def make_random_model(folder: Path, size: int, with_tflite: bool) -> str:
    """A random-weight B0 (throughput does not depend on the weights), card trained = false."""
    import keras

    from detector.efficientnet import EfficientNetB0Classifier
    from detector.runtime import export_tflite

    keras.utils.set_random_seed(0)
    model = EfficientNetB0Classifier(size)
    model.save_weights(str(folder / "bench_b0.weights.h5"))
    tflite_line = ""
    if with_tflite:
        export_tflite(model, folder / "bench_b0.tflite")
        tflite_line = 'tflite = "bench_b0.tflite"\n'
    (folder / "bench_b0.toml").write_text(
        'name = "bench_b0"\nversion = "bench"\narchitecture = "efficientnet_b0"\n'
        f'weights = "bench_b0.weights.h5"\n{tflite_line}input_size_px = {size}\n'
        'mean_rgb = [0.485, 0.456, 0.406]\nstd_rgb = [0.229, 0.224, 0.225]\n'
        'face_detector = "haar"\nface_margin = 0.25\nthreshold = 0.5\n'
        'trained = false  # random weights: for timing only\n')
    return "bench_b0"


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def time_stages(config: Config, videos: list[Path], max_batch: int) -> dict:
    """Each stage alone, per sampled frame, in this process."""
    from detector.embedded_redis import EmbeddedRedis, connect
    from detector.records import ScoreRecord
    from detector.redis_keys import RedisKeys
    from detector.redis_sink import RedisSink
    from detector.runtime import warm_up
    from detector.sampling import is_sampled
    from detector.worker import build_frame_scorer
    from producers.file_source import FileSource

    stride = config.sampling.stride
    scorer = build_frame_scorer(config, threads=os.cpu_count() or 1)
    warm_up(scorer.runtime, scorer.card.input_size_px)

    started = time.perf_counter()
    frames, decoded = [], 0
    for frame in FileSource(videos[0]).frames():
        decoded += 1
        if is_sampled(frame.frame_index, stride):
            frames.append(frame.image_bgr)
    decode_s = (time.perf_counter() - started) / decoded * stride

    started = time.perf_counter()
    faces = scorer.detect(frames)
    detect_s = (time.perf_counter() - started) / len(frames)
    crops = scorer.crops(frames, faces)
    if len(crops) == 0:
        raise SystemExit("no face found in the benchmark frames: check the face detector")
    batch = scorer.card.normalise(crops[:max_batch])
    while len(batch) < max_batch:
        batch = np.concatenate([batch, batch])[:max_batch]
    scorer.runtime.predict(batch)

    def per_image(batch_size: int, repeats: int) -> float:
        sample = batch[:batch_size]
        started = time.perf_counter()
        for _ in range(repeats):
            scorer.runtime.predict(sample)
        return (time.perf_counter() - started) / (repeats * batch_size)

    classify_batch_s = per_image(max_batch, max(2, 64 // max_batch))
    classify_one_s = per_image(1, 32)
    faces_per_frame = len(crops) / len(frames)
    started = time.perf_counter()
    crops = scorer.crops(frames, faces)
    crop_s = (time.perf_counter() - started) / len(frames)

    with EmbeddedRedis(0) as server:
        sink = RedisSink(connect(server.url), RedisKeys("bench"), 10_000)
        message = ScoreRecord(stream_id="s", frame_index=0, pts_s=0.0, capture_time=time.time(),
                              faces=({"box_xyxy": [1, 2, 3, 4], "detector_confidence": 0.9,
                                      "fake_probability": 0.1},),
                              frame_score=0.1, rolling_score=0.1, verdict="REAL", latency_ms=10.0)
        started = time.perf_counter()
        for i in range(500):
            sink.publish_score(dataclasses.replace(message, frame_index=i))
        publish_s = (time.perf_counter() - started) / 500

    classify_frame_s = (crop_s + classify_batch_s * faces_per_frame)
    total_s = decode_s + detect_s + classify_frame_s + publish_s
    return {
        "decode_ms": decode_s * 1000, "detect_ms": detect_s * 1000,
        "crop_ms": crop_s * 1000,
        "classify_ms_per_face_batch": classify_batch_s * 1000,
        "classify_ms_per_face_batch1": classify_one_s * 1000,
        "faces_per_frame": faces_per_frame,
        "publish_ms": publish_s * 1000,
        "stages_sum_ms": total_s * 1000,
        "stages_allow_fps": 1.0 / total_s,
        "batching_speedup_classifier": classify_one_s / classify_batch_s,
        "runtime": scorer.runtime.name,
        "detector": scorer.detector.name,
    }


def run_pipeline(config: Config, videos: list[Path]) -> dict:
    """All videos at once through the service; wall time from first frame to last score."""
    import redis

    from app.service import Service
    from producers.file_source import FileSource

    service = Service(config, keep_frames=False).start()
    try:
        if not service.wait_ready(180):
            raise SystemExit(f"workers did not start: {service.fatal_error}")
        while service.workers_ready() < config.workers.resolved_count():
            time.sleep(0.1)
        started = time.perf_counter()
        ids = []
        for i, video in enumerate(videos):
            ids.append(f"s{i}")
            service.add_source(FileSource(video, f"s{i}"))
        service.wait_streams(ids)
        wall_s = time.perf_counter() - started
        client = redis.Redis.from_url(service.redis_url)
        latencies = []
        for stream_id in ids:
            for _, fields in client.xrange(service.keys.history(stream_id)):
                latencies.append(float(fields[b"latency_ms"]))
        sampled = sum(service.collector.stream(i).frames_scored for i in ids)
        failed = [i for i in ids if service.collector.stream(i).status != "finished"]
    finally:
        service.stop()
    return {
        "max_batch": config.workers.max_batch,
        "workers": config.workers.resolved_count(),
        "sampled_frames": sampled,
        "wall_s": wall_s,
        "sampled_fps": sampled / wall_s,
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "failed_streams": failed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="config.toml (default ./config.toml)")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--frames", type=int, default=160, help="frames per stream (720p, 30 fps)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--random-model", type=int, metavar="SIZE", default=None,
                        help="time a random-weight B0 at this input size instead of the configured model")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None)
    parser.add_argument("--detector", choices=("haar", "yunet"), default=None)
    parser.add_argument("--yunet", type=Path, default=None,
                        help="YuNet ONNX file (default faces.yunet_model; ../shared/models/ has a copy here)")
    parser.add_argument("--skip-batch1", action="store_true", help="skip the end-to-end batch-1 run")
    parser.add_argument("--json", type=Path, default=Path("bench/pipeline.json"))
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from producers.synthetic import write_video

    base = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp_path = Path(tmp)
        raw = config_to_dict(base)
        raw["redis"]["url"] = ""
        raw["redis"]["embedded_port"] = 0
        raw["metrics"]["enabled"] = False
        raw["model"]["dir"] = str(base.resolve_path(base.model.dir))
        raw["faces"]["yunet_model"] = str(base.resolve_path(base.faces.yunet_model))
        if args.random_model or not card_path_for(Path(raw["model"]["dir"]), base.model.name).is_file():
            size = args.random_model or 224
            raw["model"] = {"name": make_random_model(tmp_path, size, with_tflite=True), "dir": str(tmp_path)}
        if args.workers is not None:
            raw["workers"]["count"] = args.workers
        if args.max_batch is not None:
            raw["workers"]["max_batch"] = args.max_batch
        if args.runtime:
            raw["workers"]["runtime"] = args.runtime
        if args.detector:
            raw["faces"]["detector"] = args.detector
        if args.yunet:
            raw["faces"]["yunet_model"] = str(args.yunet.resolve())
        config = config_from_dict(raw)

        print(f"writing {args.streams} × {args.frames} frames of 1280×720 …", flush=True)
        videos = [write_video(tmp_path / f"s{i}.mp4", args.frames, 1280, 720) for i in range(args.streams)]

        stages = time_stages(config, videos, config.workers.max_batch)
        batched = run_pipeline(config, videos)
        batch1 = None
        if not args.skip_batch1:
            raw["workers"]["max_batch"] = 1
            batch1 = run_pipeline(config_from_dict(raw), videos)

    result = {
        "machine": {"cpus": os.cpu_count()},
        "streams": args.streams, "frames_per_stream": args.frames,
        "stride": config.sampling.stride, "model": config.model.name,
        "stages": stages, "pipeline": batched, "pipeline_batch1": batch1,
        "ratios": {
            "pipeline_vs_stages": batched["sampled_fps"] / stages["stages_allow_fps"],
            "batch_vs_batch1_pipeline": (batched["sampled_fps"] / batch1["sampled_fps"]) if batch1 else None,
            "batch_vs_batch1_classifier": stages["batching_speedup_classifier"],
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"JSON written to {args.json}")
    return 0


def print_table(result: dict) -> None:
    s, p, b, r = result["stages"], result["pipeline"], result["pipeline_batch1"], result["ratios"]
    rows = [
        ("stage alone: decode (per sampled frame)", f"{s['decode_ms']:.1f} ms"),
        (f"stage alone: detect ({s['detector']})", f"{s['detect_ms']:.1f} ms"),
        ("stage alone: crop", f"{s['crop_ms']:.2f} ms"),
        (f"stage alone: classify per face, batch {p['max_batch']} ({s['runtime']})",
         f"{s['classify_ms_per_face_batch']:.1f} ms"),
        ("stage alone: classify per face, batch 1", f"{s['classify_ms_per_face_batch1']:.1f} ms"),
        ("stage alone: publish to Redis", f"{s['publish_ms']:.2f} ms"),
        ("stages allow (1 / sum per frame)", f"{s['stages_allow_fps']:.1f} frames/s"),
        (f"pipeline: {result['streams']} streams, {p['workers']} workers, batch {p['max_batch']}",
         f"{p['sampled_fps']:.1f} frames/s"),
        ("pipeline latency p50 / p95", f"{p['latency_p50_ms']:.0f} / {p['latency_p95_ms']:.0f} ms"),
    ]
    if b:
        rows += [("pipeline: batch 1", f"{b['sampled_fps']:.1f} frames/s"),
                 ("pipeline batch 1 latency p50 / p95", f"{b['latency_p50_ms']:.0f} / {b['latency_p95_ms']:.0f} ms")]
    rows += [("ratio pipeline / stages allow (target ≥ 0.80)", f"{r['pipeline_vs_stages']:.2f}"),
             ("ratio classifier batch / batch 1 per face", f"{r['batch_vs_batch1_classifier']:.2f}×")]
    if r["batch_vs_batch1_pipeline"]:
        rows.append(("ratio pipeline batch / batch 1 (target ≥ 2)", f"{r['batch_vs_batch1_pipeline']:.2f}×"))
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value:>16}")


if __name__ == "__main__":
    raise SystemExit(main())
