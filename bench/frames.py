"""Micro-benchmark: what a sampled 720p frame costs between the producer and a worker.

Two parts, side by side in one run:

1. **Colour conversion at the source.** 720p H.264 decoded with PyAV: decoding alone, the BGR
   conversion by FFmpeg's swscale (``to_ndarray("bgr24")``) and by OpenCV from the I420 planes
   (what ``detector.video.picture_to_bgr`` does for untagged and BT.601 pictures since
   2026-12-02) per frame. Before issue 11 every decoded frame was converted; now only the
   sampled ones (1 in ``--stride``).
2. **Hand-over to a worker**, over a real ``ipc://`` PUSH socket to a worker process: *inline*
   (the pixels in the ZeroMQ message, zero-copy send and receive) against *shm* (the frame
   written once into a shared-memory ring slot, the header alone sent, the slot released when
   the worker acknowledges it, as the in-flight ledger does). The worker reads each frame as a
   worker does first (a resize to 640 wide, what the face detector sees). At most
   ``--in-flight`` frames are unacknowledged, like a live stream's credit. CPU time is each
   process's own (``time.process_time``: all its threads, ZeroMQ's I/O thread included).

    python bench/frames.py --frames 300 --label "under load" --json bench/frames.json

Speed is reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import zmq  # noqa: E402

from detector.frame_ring import FrameRings, RingReader  # noqa: E402
from detector.wire import FrameMessage, SlotRef  # noqa: E402
from producers.synthetic import load_face_bgr, make_frame, write_h264_clip  # noqa: E402

WIDTH, HEIGHT = 1280, 720


def time_conversion(frames: int, folder: Path) -> dict:
    """Per-frame decode and BGR conversion of a 720p H.264 clip (ms)."""
    import av

    clip = write_h264_clip(folder / "clip.h264", frames, WIDTH, HEIGHT)

    def decode(convert: bool) -> tuple[float, int]:
        with av.open(str(clip)) as container:
            started = time.process_time()
            count = 0
            for frame in container.decode(video=0):
                if convert:
                    frame.to_ndarray(format="bgr24")
                count += 1
            return (time.process_time() - started) * 1000.0 / count, count

    def decode_i420() -> tuple[float, float]:
        """The I420 alternative: planes copied out by PyAV, BGR made by OpenCV (a worker's job)."""
        planes_s = bgr_s = 0.0
        count = 0
        with av.open(str(clip)) as container:
            for frame in container.decode(video=0):
                started = time.process_time()
                yuv = frame.to_ndarray(format="yuv420p")
                middle = time.process_time()
                cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
                planes_s += middle - started
                bgr_s += time.process_time() - middle
                count += 1
        return planes_s * 1000.0 / count, bgr_s * 1000.0 / count

    decode(False)  # warm the page cache and the decoder
    decode_ms, count = decode(False)
    with_bgr_ms, _ = decode(True)
    planes_ms, cv2_bgr_ms = decode_i420()
    return {"frames": count, "decode_ms": round(decode_ms, 3),
            "bgr24_conversion_ms": round(with_bgr_ms - decode_ms, 3),
            "i420_planes_ms": round(planes_ms, 3), "i420_to_bgr_cv2_ms": round(cv2_bgr_ms, 3)}


def worker_main(frames_endpoint: str, acks_endpoint: str, ring_folder: str | None, count: int,
                out) -> None:
    """The worker side: receive, read the pixels (resize to 640 wide), acknowledge."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.connect(frames_endpoint)
    push = context.socket(zmq.PUSH)
    push.connect(acks_endpoint)
    reader = RingReader(ring_folder) if ring_folder else None
    push.send(b"ready")
    first = pull.recv_multipart(copy=False)  # the clock starts at the first frame
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    frames = first
    for index in range(count):
        if index:
            frames = pull.recv_multipart(copy=False)
        parts = [frames[0].bytes, *(f.buffer for f in frames[1:])]
        message = FrameMessage.decode(parts, reader)
        small = cv2.resize(message.image_bgr, (640, 360), interpolation=cv2.INTER_AREA)
        if reader is not None and not reader.is_current(message.slot):
            raise SystemExit("a slot was written again while it was read")
        ack = {"i": message.frame_index, "v": int(small[0, 0, 0])}
        if message.slot is not None:
            ack["slot"] = [message.slot.ring, message.slot.slot, message.slot.generation]
        push.send_json(ack)
    out.put({"cpu_s": time.process_time() - started_cpu,
             "wall_s": time.perf_counter() - started_wall})
    pull.close(0)
    push.close(0)
    context.term()


def run_transfer(mode: str, images: list[np.ndarray], count: int, in_flight: int,
                 folder: Path) -> dict:
    """Send ``count`` frames to a worker process, ``mode`` = inline or shm; per-frame costs."""
    rings = FrameRings.create(max_slots=in_flight + 2) if mode == "shm" else None
    if mode == "shm" and rings is None:
        raise SystemExit("/dev/shm is not a tmpfs here: no shared-memory measurement")
    ring = rings.new_ring(images[0].nbytes, in_flight + 2) if rings else None
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 64)
    frames_endpoint = f"ipc://{folder}/frames-{mode}"
    push.bind(frames_endpoint)
    acks = context.socket(zmq.PULL)
    acks_endpoint = f"ipc://{folder}/acks-{mode}"
    acks.bind(acks_endpoint)
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    worker = mp.Process(target=worker_main, args=(
        frames_endpoint, acks_endpoint, str(rings.folder) if rings else None, count, out))
    worker.start()
    assert acks.recv() == b"ready"
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    outstanding = 0
    for index in range(count):
        while outstanding >= in_flight:
            ack = acks.recv_json()
            outstanding -= 1
            if rings is not None:
                rings.release(SlotRef(*ack["slot"]))
        image = images[index % len(images)]
        if ring is not None:
            ref, view = ring.write(ring.claim(timeout_s=None), image)
            message = FrameMessage("bench", index, None, time.time(), view, slot=ref)
        else:
            message = FrameMessage("bench", index, None, time.time(), image)
        push.send_multipart(message.encode(), copy=False)
        outstanding += 1
    while outstanding:
        ack = acks.recv_json()
        outstanding -= 1
        if rings is not None:
            rings.release(SlotRef(*ack["slot"]))
    service_cpu_s = time.process_time() - started_cpu
    wall_s = time.perf_counter() - started_wall
    worker_stats = out.get(timeout=60)
    worker.join(30)
    push.close(0)
    acks.close(0)
    context.term()
    if rings is not None:
        rings.close()
    return {
        "mode": mode, "frames": count,
        "service_cpu_ms_per_frame": round(service_cpu_s * 1000.0 / count, 3),
        "worker_cpu_ms_per_frame": round(worker_stats["cpu_s"] * 1000.0 / count, 3),
        "wall_ms_per_frame": round(wall_s * 1000.0 / count, 3),
        "message_bytes": sum(memoryview(p).nbytes for p in message.encode()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per hand-over run")
    parser.add_argument("--decode-frames", type=int, default=120, help="frames of the clip")
    parser.add_argument("--in-flight", type=int, default=4, help="unacknowledged frames at most")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per mode")
    parser.add_argument("--label", default="", help="e.g. 'idle' or 'under load'")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    face = load_face_bgr()
    images = [make_frame(i * 7, WIDTH, HEIGHT, face) for i in range(8)]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-frames-") as tmp:
        folder = Path(tmp)
        conversion = time_conversion(args.decode_frames, folder)
        runs: dict[str, list[dict]] = {"inline": [], "shm": []}
        for _ in range(args.repeats):  # alternated, so a load change hits both modes alike
            for mode in ("inline", "shm"):
                runs[mode].append(run_transfer(mode, images, args.frames, args.in_flight, folder))
    best = {mode: min(results, key=lambda r: r["service_cpu_ms_per_frame"] + r["worker_cpu_ms_per_frame"])
            for mode, results in runs.items()}
    stride = args.stride
    conversion_ms = conversion["bgr24_conversion_ms"]
    report = {
        "label": args.label,
        "machine": {"cpus": os.cpu_count(), "load_avg_before": load_before,
                    "load_avg_after": os.getloadavg()},
        "frame": [HEIGHT, WIDTH, 3],
        "conversion": {**conversion, "stride": stride,
                       "conversion_ms_per_sampled_frame_before": round(conversion_ms * stride, 3),
                       "conversion_ms_per_sampled_frame_now": round(conversion_ms, 3)},
        "handover": runs,
        "best": best,
    }
    label = f" ({args.label})" if args.label else ""
    print(f"720p frames{label}; load average {load_before[0]:.2f} before, "
          f"{report['machine']['load_avg_after'][0]:.2f} after")
    print(f"decode {conversion['decode_ms']:.2f} ms/frame; BGR conversion {conversion_ms:.2f} ms/frame: "
          f"per sampled frame at stride {stride}, {conversion_ms * stride:.2f} ms before "
          f"(every frame converted), {conversion_ms:.2f} ms now")
    print(f"I420 instead: planes copied out {conversion['i420_planes_ms']:.2f} ms + OpenCV to BGR "
          f"{conversion['i420_to_bgr_cv2_ms']:.2f} ms = "
          f"{conversion['i420_planes_ms'] + conversion['i420_to_bgr_cv2_ms']:.2f} ms/frame")
    print(f"{'hand-over':<10} {'service CPU':>12} {'worker CPU':>11} {'wall':>9} {'message':>11}")
    for mode, result in best.items():
        print(f"{mode:<10} {result['service_cpu_ms_per_frame']:>9.3f} ms {result['worker_cpu_ms_per_frame']:>8.3f} ms "
              f"{result['wall_ms_per_frame']:>6.3f} ms {result['message_bytes']:>9} B")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
