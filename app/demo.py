"""``deepfake-detector demo``: the whole spine on a clip it makes itself, scores printed live.

It writes a short video of a real, public-domain face (producers/assets), starts the service with
an embedded Redis, subscribes to the score channel like any consumer would, and prints each
message as it arrives.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import redis

from app.service import Service
from detector.config import Config
from detector.errors import DetectorError
from detector.stream_status import StreamStatus
from producers.file_source import FileSource
from producers.synthetic import write_video

log = logging.getLogger(__name__)

DEMO_DIR = Path(".cache/demo")
LATENCY_NOTE = (
    "latency = time from reading a frame to its score. A file is replayed losslessly: it is "
    "read faster than the workers score, so frames wait in the queue and latency climbs "
    "(to about 2 s on a small CPU) while no frame is dropped. A live camera drops old frames "
    "instead and stays near the model's own time.")


def _print_row(score: dict) -> None:
    frame_score = "—" if score["frame_score"] is None else f"{score['frame_score']:.3f}"
    rolling = "—" if score["rolling_score"] is None else f"{score['rolling_score']:.3f}"
    print(f"{score['stream_id']:<8}{score['frame_index']:>6}{len(score['faces']):>6}"
          f"{frame_score:>12}{rolling:>9}  {score['verdict']:<8}"
          f"{score['latency_ms']:>7.0f}ms", flush=True)


def run_demo(config: Config, frames: int = 240) -> int:
    clip = DEMO_DIR / f"demo_{frames}.mp4"
    if not clip.is_file():
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
        write_video(clip, frames, width=1280, height=720, fps=30)
    service = Service(config)
    service.start()
    try:
        print(f"demo: {clip} ({frames} frames, every {config.sampling.stride}th scored) → "
              f"{config.workers.resolved_count()} worker(s) → Redis {service.redis_url}", flush=True)
        print("waiting for the workers to load the model…", flush=True)
        if not service.wait_ready():
            raise DetectorError(service.fatal_error or "no worker became ready within 120 s")
        subscriber = redis.Redis.from_url(service.redis_url, socket_timeout=5)
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(service.keys.scores_channel)
        state = service.add_source(FileSource(clip, "demo"))
        print(LATENCY_NOTE, flush=True)
        print(f"{'stream':<8}{'frame':>6}{'faces':>6}{'frame score':>12}{'rolling':>9}  "
              f"{'verdict':<8}{'latency':>9}", flush=True)
        # Workers finish batches out of order; rows are held back until the frames before
        # them have arrived, so that they print in frame order.
        pending: dict[int, dict] = {}
        next_index = 0
        latencies_ms: list[float] = []
        while True:
            message = pubsub.get_message(timeout=0.5)
            if message is None:
                if state.done.is_set():
                    break
                continue
            score = json.loads(message["data"])
            if score.get("stream_id") != "demo":
                continue
            pending[score["frame_index"]] = score
            while next_index in pending:
                row = pending.pop(next_index)
                latencies_ms.append(row["latency_ms"])
                _print_row(row)
                next_index += config.sampling.stride
        for index in sorted(pending):   # only if a frame was lost on the way
            _print_row(pending[index])
        pubsub.close()
        final = service.collector.status_record(state)
        video_score = final.video_score
        shown = "— (no face)" if video_score is None else f"{float(video_score):.3f}"
        print(f"demo finished: {state.frames_scored} frames scored, video score "
              f"{shown}, label {final.label} "
              "(the demo face is a real photograph)", flush=True)
        if latencies_ms:
            print(f"latency: first frame {latencies_ms[0]:.0f} ms, last {latencies_ms[-1]:.0f} ms, "
                  f"highest {max(latencies_ms):.0f} ms (see the note above)", flush=True)
    finally:
        service.stop()
    return 0 if state.status == StreamStatus.FINISHED else 1
