"""Live benchmark: N concurrent RTSP cameras (720p, 30 fps, served locally) through the service.

N rises step by step (``--streams 1,2,4,…``); each step runs ``--duration`` seconds (after a
warm-up) and stops the climb once p95 capture→Redis latency passes ``--max-p95-ms`` or drops
pass ``--max-drop`` of sampled frames. Per step: sampled and scored frames/s, drops, latency
p50/p95, the mean per-frame stage times (which stage limits), and CPU use of the service process
(capture + decode + collector), the workers and the whole machine. Prints a table and writes
JSON. Speed is reported, never asserted.

    python bench/live.py --streams 1,2,4,8,12 --duration 60 --json bench/live.json

Needs GStreamer's RTSP server (scripts/apt-packages.txt) and, for ``--detector yunet`` (the
default), faces.yunet_model or ../shared/models/face_detection_yunet.onnx.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from detector.config import Config, config_from_dict, config_to_dict, load_config  # noqa: E402
from detector.model_card import card_path_for  # noqa: E402

SHARED_YUNET = ROOT.parent / "shared" / "models" / "face_detection_yunet.onnx"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- CPU accounting from /proc (no psutil here) -------------------------------------------------
def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


@dataclasses.dataclass
class CpuSample:
    wall_s: float
    service_s: float
    workers_s: float
    server_s: float
    machine: tuple[float, float]


def sample_cpu(service, server_pid: int) -> CpuSample:
    return CpuSample(time.monotonic(), process_cpu_s(os.getpid()),
                     sum(process_cpu_s(pid) for pid in service.worker_pids().values()),
                     process_cpu_s(server_pid), machine_cpu())


def cpu_use(start: CpuSample, end: CpuSample) -> dict:
    """CPU use over an interval, in cores (1.0 = one core busy the whole time)."""
    wall_s = max(end.wall_s - start.wall_s, 1e-6)
    busy = end.machine[0] - start.machine[0]
    total = max(end.machine[1] - start.machine[1], 1.0)
    cores = os.cpu_count() or 1
    service, workers = (end.service_s - start.service_s) / wall_s, (end.workers_s - start.workers_s) / wall_s
    server = (end.server_s - start.server_s) / wall_s
    machine_cores = cores * busy / total
    return {
        "service_cores": service,
        "workers_cores": workers,
        "rtsp_server_cores": server,
        "machine_busy_pct": 100.0 * busy / total,
        # Everything else that ran meanwhile (another job on a shared machine): the load a
        # number was measured under.
        "other_cores": max(0.0, machine_cores - service - workers - server),
    }


# --- scores as they are published -------------------------------------------------------------
class ScoreListener:
    """Collects every published score message (latency, stage times, batch size)."""

    def __init__(self, redis_url: str, channel: str):
        import redis

        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub()
        self._pubsub.subscribe(channel)
        self._messages: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-scores", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message and message.get("type") == "message":
                with self._lock:
                    self._messages.append(json.loads(message["data"]))

    def take(self) -> list[dict]:
        with self._lock:
            messages, self._messages = self._messages, []
        return messages

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
        self._client.close()


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


# --- one step ---------------------------------------------------------------------------------
def run_step(service, server, listener: ScoreListener, n_streams: int, warmup_s: float,
             duration_s: float) -> dict:
    """Attach ``n_streams`` cameras, measure ``duration_s`` after ``warmup_s``, detach them."""
    from producers.factory import make_source

    ids = [f"cam{i}" for i in range(n_streams)]
    for i, stream_id in enumerate(ids):
        service.add_source(make_source(server.url(i), stream_id, service.config.sources))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            (s := service.collector.stream(i)) is not None and s.status == "running" for i in ids):
        time.sleep(0.2)
    time.sleep(warmup_s)

    def counters() -> dict[str, dict]:
        out = {}
        for stream_id in ids:
            handle = service.hub.handle(stream_id)
            state = service.collector.stream(stream_id)
            out[stream_id] = {
                "read": handle.counters.frames_read, "sampled": handle.counters.frames_sampled,
                "dropped": handle.buffer.dropped, "scored": state.frames_scored,
                "reconnects": handle.counters.reconnects,
            }
        return out

    listener.take()
    load_before = os.getloadavg()[0]
    before, cpu_before = counters(), sample_cpu(service, server.process.pid)
    window_start = time.time()
    time.sleep(duration_s)
    after, cpu_after = counters(), sample_cpu(service, server.process.pid)
    messages = [m for m in listener.take() if m.get("capture_time", 0) >= window_start]
    for stream_id in ids:
        service.remove_stream(stream_id)

    def total(name: str) -> int:
        return sum(after[i][name] - before[i][name] for i in ids)

    sampled = total("sampled")
    latencies = [m["latency_ms"] for m in messages if m.get("latency_ms") is not None]
    stages = {}
    names = dict.fromkeys(["queue", "detect", "crop", "classify"])  # then any others, in order
    for m in messages:
        names.update(dict.fromkeys(m.get("timings_ms") or {}))
    for stage in names:
        values = [m["timings_ms"][stage] for m in messages if stage in (m.get("timings_ms") or {})]
        stages[stage] = float(np.mean(values)) if values else None
    batch_sizes = [m["batch_size"] for m in messages if m.get("batch_size")]
    per_stream_read_fps = [(after[i]["read"] - before[i]["read"]) / duration_s for i in ids]
    cpu = cpu_use(cpu_before, cpu_after)
    read, scored = total("read"), total("scored")
    return {
        "streams": n_streams,
        "duration_s": duration_s,
        "read_fps_total": total("read") / duration_s,
        "read_fps_min_stream": min(per_stream_read_fps),
        "sampled_fps": sampled / duration_s,
        "scored_fps": total("scored") / duration_s,
        "dropped": total("dropped"),
        "drop_fraction": total("dropped") / sampled if sampled else None,
        "reconnects": total("reconnects"),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "scores_published": len(messages),
        "mean_batch_size": float(np.mean(batch_sizes)) if batch_sizes else None,
        "stage_mean_ms": stages,
        "cpu": cpu,
        # CPU time per frame: the service decodes every frame it reads (and converts, sends and
        # collects the sampled ones); the workers' is per scored frame.
        "service_cpu_ms_per_read_frame": 1000.0 * cpu["service_cores"] * duration_s / read if read else None,
        "workers_cpu_ms_per_scored_frame": 1000.0 * cpu["workers_cores"] * duration_s / scored if scored else None,
        "load_avg_1min_before": load_before,
    }


def limiting_stage(step: dict, fps: int) -> str:
    """A one-line guess at what limits a step, from its rates, stage times and CPU use."""
    stages = {k: v for k, v in step["stage_mean_ms"].items() if v is not None and k != "queue"}
    cpu = step["cpu"]
    worst = max(stages, key=stages.get) if stages else None
    pool_behind = step["scored_fps"] < 0.95 * step["sampled_fps"] or (step["drop_fraction"] or 0) > 0.01
    if pool_behind and worst is not None:
        return (f"worker pool: {worst} {stages[worst]:.0f} ms/frame on "
                f"{cpu['workers_cores']:.2f} worker cores")
    if step["read_fps_min_stream"] < 0.9 * fps:
        return f"capture/decode (a stream read only {step['read_fps_min_stream']:.0f} fps)"
    queue = step["stage_mean_ms"].get("queue")
    if worst is not None and queue is not None and queue > sum(stages.values()):
        return f"queueing before the workers ({queue:.0f} ms; slowest stage {worst})"
    if worst is not None:
        return f"not saturated; slowest stage {worst} ({stages[worst]:.1f} ms/frame)"
    return "unknown (no scores)"


# --- setup --------------------------------------------------------------------------------------
def build_config(args, tmp_path: Path) -> Config:
    base = load_config(args.config)
    raw = config_to_dict(base)
    raw["redis"]["url"] = ""
    raw["redis"]["embedded_port"] = 0
    raw["metrics"]["enabled"] = False
    raw["sampling"]["stride"] = args.stride
    raw["model"]["dir"] = str(base.resolve_path(base.model.dir))
    yunet = base.resolve_path(base.faces.yunet_model)
    if not yunet.is_file() and SHARED_YUNET.is_file():
        yunet = SHARED_YUNET
    raw["faces"]["yunet_model"] = str(yunet)
    raw["faces"]["detector"] = args.detector
    if args.detector == "yunet" and not yunet.is_file():
        print(f"YuNet not found at {yunet}: using the Haar cascade instead", flush=True)
        raw["faces"]["detector"] = "haar"
    has_card = card_path_for(Path(raw["model"]["dir"]), base.model.name).is_file()
    if args.random_model or not has_card:
        from bench.pipeline import make_random_model

        size = args.random_model or 224
        print(f"model: random-weight B0 at {size} px (timing only)", flush=True)
        raw["model"] = {"name": make_random_model(tmp_path, size, with_tflite=True),
                        "dir": str(tmp_path)}
    if args.runtime is not None:
        raw["workers"]["runtime"] = args.runtime
    if args.workers is not None:
        raw["workers"]["count"] = args.workers
    if args.max_batch is not None:
        raw["workers"]["max_batch"] = args.max_batch
    if args.frames_hwm is not None:
        raw["pool"]["frames_hwm"] = args.frames_hwm
    return config_from_dict(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="config.toml (default ./config.toml)")
    parser.add_argument("--streams", default="1,2,4,6,8,12,16",
                        help="comma-separated stream counts to try, rising")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--stride", type=int, default=4, help="score every Nth frame")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--detector", choices=("yunet", "haar"), default="yunet")
    parser.add_argument("--random-model", type=int, metavar="SIZE", default=None,
                        help="a random-weight B0 at this input size instead of the configured model")
    parser.add_argument("--runtime", default=None,
                        help="workers.runtime for this run (e.g. litert-int8); default the config's")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--frames-hwm", type=int, default=None,
                        help="pool.frames_hwm: frames ZeroMQ may queue per worker before the "
                             "live buffers start dropping the oldest")
    parser.add_argument("--max-p95-ms", type=float, default=500.0)
    parser.add_argument("--max-drop", type=float, default=0.05)
    parser.add_argument("--json", type=Path, default=Path("bench/live.json"))
    parser.add_argument("--label", default="", help="a name for this run, kept in the JSON "
                        "(e.g. the commit, 'before' / 'after')")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app.service import Service
    from producers.synthetic import write_h264_clip
    from tests.rtsp_server import RtspServerProcess, rtsp_server_missing_reason

    reason = rtsp_server_missing_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    counts = sorted({int(v) for v in args.streams.split(",") if v.strip()})
    load_at_start = os.getloadavg()
    print(f"load average before the run: {' '.join(f'{v:.2f}' for v in load_at_start)}", flush=True)
    steps = []
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        tmp_path = Path(tmp)
        config = build_config(args, tmp_path)
        print(f"writing a {args.width}×{args.height} {args.fps} fps clip …", flush=True)
        clip = write_h264_clip(tmp_path / "clip.h264", 4 * args.fps, args.width, args.height,
                               args.fps, keyframe_interval=args.fps)
        server = RtspServerProcess(clip, mounts=max(counts), fps=args.fps).start()
        service = Service(config).start()
        listener = None
        try:
            if not service.wait_ready(300):
                raise SystemExit(f"workers did not start: {service.fatal_error}")
            while service.workers_ready() < config.workers.resolved_count():
                time.sleep(0.2)
            listener = ScoreListener(service.redis_url, service.keys.scores_channel)
            for n in counts:
                print(f"step: {n} streams, {args.duration:.0f} s …", flush=True)
                step = run_step(service, server, listener, n, args.warmup, args.duration)
                step["limited_by"] = limiting_stage(step, args.fps)
                steps.append(step)
                print_row(step)
                p95 = step["latency_p95_ms"]
                drops = step["drop_fraction"]
                if p95 is None or p95 > args.max_p95_ms or (drops or 0) > args.max_drop:
                    print(f"stopping: p95 {p95} ms / drops {drops} past the limits", flush=True)
                    break
                time.sleep(2)  # let detached streams wind down
        finally:
            if listener is not None:
                listener.close()
            service.stop(drain=False)
            server.stop()

    passing = [s for s in steps if s["latency_p95_ms"] is not None
               and s["latency_p95_ms"] <= args.max_p95_ms and (s["drop_fraction"] or 0) <= args.max_drop]
    result = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": load_at_start,
                    "load_avg_at_end": os.getloadavg()},
        "label": args.label,
        "clip": {"width": args.width, "height": args.height, "fps": args.fps},
        "stride": args.stride, "detector": config.faces.detector, "model": config.model.name,
        # (getattr: the same script also measures commits from before tracking and shared memory)
        "runtime": config.workers.runtime,
        "tracking_full_every": getattr(getattr(config, "tracking", None), "full_every", None),
        "shared_memory": getattr(config.pool, "shared_memory", False),
        "workers": config.workers.resolved_count(), "max_batch": config.workers.max_batch,
        "frames_hwm": config.pool.frames_hwm,
        "limits": {"p95_ms": args.max_p95_ms, "drop_fraction": args.max_drop},
        "max_streams_within_limits": max((s["streams"] for s in passing), default=0),
        "steps": steps,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"JSON written to {args.json}")
    return 0


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = (f"{'N':>3} {'read/s':>7} {'sampled/s':>9} {'scored/s':>8} {'drops':>6} {'drop%':>6} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'batch':>5} {'svc cores':>9} {'wrk cores':>9} "
          f"{'other':>5} {'machine%':>8}  limited by")


def print_row(step: dict) -> None:
    cpu = step["cpu"]
    drop_pct = None if step["drop_fraction"] is None else 100 * step["drop_fraction"]
    print(f"{step['streams']:>3} {step['read_fps_total']:>7.0f} {step['sampled_fps']:>9.1f} "
          f"{step['scored_fps']:>8.1f} {step['dropped']:>6} {_fmt(drop_pct, '.1f'):>6} "
          f"{_fmt(step['latency_p50_ms'], '.0f'):>7} {_fmt(step['latency_p95_ms'], '.0f'):>7} "
          f"{_fmt(step['mean_batch_size'], '.1f'):>5} {cpu['service_cores']:>9.2f} "
          f"{cpu['workers_cores']:>9.2f} {cpu.get('other_cores', 0.0):>5.2f} "
          f"{cpu['machine_busy_pct']:>8.0f}  "
          f"{step.get('limited_by', '')}", flush=True)


def print_table(result: dict) -> None:
    print()
    print(f"{result['clip']['width']}×{result['clip']['height']} @ {result['clip']['fps']} fps, "
          f"stride {result['stride']}, detector {result['detector']}, model {result['model']}, "
          f"{result['workers']} workers × batch {result['max_batch']}, frames_hwm "
          f"{result['frames_hwm']}, {result['machine']['cpus']} CPUs")
    print(HEADER)
    for step in result["steps"]:
        print_row(step)
    print_stage_table(result["steps"])
    print(f"max streams within p95 ≤ {result['limits']['p95_ms']:.0f} ms and drops ≤ "
          f"{100 * result['limits']['drop_fraction']:.0f}%: {result['max_streams_within_limits']}")


def print_stage_table(steps: list[dict]) -> None:
    """Where the time goes per step: mean ms per frame in each worker stage, and CPU ms per frame
    in the service (per read frame) and the workers (per scored frame)."""
    names = list(dict.fromkeys(name for step in steps for name in step["stage_mean_ms"]))
    print()
    print(f"{'N':>3} " + " ".join(f"{name + ' ms':>12}" for name in names)
          + f" {'svc cpu ms/read':>15} {'wrk cpu ms/scored':>17} {'load1':>5}")
    for step in steps:
        print(f"{step['streams']:>3} "
              + " ".join(f"{_fmt(step['stage_mean_ms'].get(name), '.1f'):>12}" for name in names)
              + f" {_fmt(step.get('service_cpu_ms_per_read_frame'), '.2f'):>15}"
              + f" {_fmt(step.get('workers_cpu_ms_per_scored_frame'), '.1f'):>17}"
              + f" {_fmt(step.get('load_avg_1min_before'), '.1f'):>5}")


if __name__ == "__main__":
    raise SystemExit(main())
