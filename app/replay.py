"""Batch replay of video files: lossless scoring through the pool and a JSON/CSV report."""

from __future__ import annotations

import csv
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from detector.collector import StreamState
from detector.config import Config
from detector.redis_keys import SCHEMA_VERSION
from detector.sampling import sampled_count
from detector.scoring import verdict
from producers.file_source import FileSource, stream_id_for_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayItem:
    path: Path
    stream_id: str


def plan_items(paths: Sequence[str], ids: Sequence[str] | None) -> list[ReplayItem]:
    """Pair files with stream ids; default ids are file stems, made unique with ``-2``, ``-3``."""
    from detector.errors import ConfigError

    if ids and len(ids) != len(paths):
        raise ConfigError(f"--id was given {len(ids)} time(s) for {len(paths)} file(s); give one per file")
    items: list[ReplayItem] = []
    used: set[str] = set()
    for i, path in enumerate(paths):
        stream_id = ids[i] if ids else stream_id_for_path(path)
        base, n = stream_id, 2
        while stream_id in used:
            stream_id, n = f"{base}-{n}", n + 1
        used.add(stream_id)
        items.append(ReplayItem(Path(path), stream_id))
    return items


def file_report(item: ReplayItem, state: StreamState | None, threshold: float) -> dict[str, Any]:
    """One file's entry in the report."""
    if state is None:
        return {"path": str(item.path), "stream_id": item.stream_id, "status": "failed",
                "error": "not started", "frames_total": 0, "frames_sampled": 0,
                "frames_scored": 0, "frames_with_faces": 0, "video_score": None,
                "label": None, "frames": []}
    status = {"finished": "ok", "failed": "failed"}.get(state.status, "interrupted")
    score = state.video_score()
    frames = sorted(state.frames, key=lambda r: r.frame_index)
    return {
        "path": str(item.path),
        "stream_id": item.stream_id,
        "status": status,
        "error": state.error,
        "frames_total": state.counters.get("frames_read", 0),
        "frames_sampled": state.counters.get("frames_sampled", 0),
        "frames_scored": state.frames_scored,
        "frames_with_faces": state.frames_with_faces,
        "video_score": score,
        "label": verdict(score, threshold) if status == "ok" else None,
        "frames": [record.to_json() for record in frames],
    }


def build_report(items: Sequence[ReplayItem], states: Sequence[StreamState | None],
                 threshold: float, model: str, stride: int) -> dict[str, Any]:
    files = [file_report(item, state, threshold) for item, state in zip(items, states)]
    labels = [f["label"] for f in files if f["status"] == "ok"]
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "threshold": threshold,
        "stride": stride,
        "created_at": time.time(),
        "files": files,
        "summary": {
            "files": len(files),
            "failed": sum(1 for f in files if f["status"] != "ok"),
            "fake": labels.count("FAKE"),
            "real": labels.count("REAL"),
            "no_face": labels.count("NO_FACE"),
        },
    }


CSV_COLUMNS = ("path", "stream_id", "status", "frames_total", "frames_sampled",
               "frames_with_faces", "video_score", "label", "error", "frame_scores")


def write_csv(report: dict[str, Any], path: Path) -> None:
    """One row per file; ``frame_scores`` is ``index:score`` pairs separated by spaces
    (``index:`` alone for a frame without a face)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for f in report["files"]:
            scores = " ".join(
                f"{r['frame_index']}:{'' if r['frame_score'] is None else round(r['frame_score'], 6)}"
                for r in f["frames"]
            )
            writer.writerow({**{k: f.get(k) for k in CSV_COLUMNS if k != "frame_scores"},
                             "frame_scores": scores})


def run_replay(config: Config, paths: Sequence[str], *, ids: Sequence[str] | None = None,
               redis_url: str | None = None, report_path: Path | None = None,
               csv_path: Path | None = None, show_progress: bool | None = None) -> int:
    """Score ``paths`` losslessly through the pool; write the report; 0 if every file is ok."""
    from rich.console import Console

    from app.service import Service

    items = plan_items(paths, ids)
    console = Console(stderr=True)
    show_progress = console.is_terminal if show_progress is None else show_progress
    service = Service(config, redis_url=redis_url, keep_frames=True)
    interrupted = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        console.print("[yellow]Interrupted: finishing frames in flight (Ctrl-C again to force)")

    signal.signal(signal.SIGINT, on_sigint)
    try:
        service.start()
        log.info("Redis at %s", service.redis_url)
        for item in items:
            service.add_source(FileSource(item.path, item.stream_id))
        with _Progress(items, config.sampling.stride, console, show_progress,
                       frame_count_hint=lambda sid: getattr(
                           (service.hub.handle(sid) or _NoHandle).source, "frame_count_hint", None)
                       ) as progress:
            service.wait_streams([i.stream_id for i in items], stop=interrupted,
                                 on_progress=progress.update)
    finally:
        service.stop(drain=True)
        signal.signal(signal.SIGINT, previous)
    states = [service.collector.stream(item.stream_id) for item in items]
    report = build_report(items, states, service.collector.threshold,
                          service.collector.model_id, config.sampling.stride)
    if report_path is not None:
        Path(report_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if csv_path is not None:
        write_csv(report, Path(csv_path))
    print_summary(report, console)
    if service.fatal_error:
        console.print(f"error: {service.fatal_error}")
        return 2
    return 0 if report["summary"]["failed"] == 0 and not interrupted.is_set() else 1


def print_summary(report: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title=f"replay ({report['model']}, threshold {report['threshold']:.2f})")
    for column in ("file", "status", "frames", "sampled", "with faces", "score", "label"):
        table.add_column(column)
    for f in report["files"]:
        score = "—" if f["video_score"] is None else f"{f['video_score']:.3f}"
        status = f["status"] if not f["error"] else f"{f['status']}: {f['error']}"
        table.add_row(Path(f["path"]).name, status, str(f["frames_total"]), str(f["frames_sampled"]),
                      str(f["frames_with_faces"]), score, f["label"] or "—")
    console.print(table)


class _Progress:
    """A rich progress bar per file (sampled frames scored), shown on terminals only."""

    def __init__(self, items: Sequence[ReplayItem], stride: int, console, enabled: bool,
                 frame_count_hint=lambda stream_id: None):
        self._frame_count_hint = frame_count_hint
        self._enabled = enabled
        self._items = items
        self._stride = stride
        self._console = console
        self._tasks: dict[str, Any] = {}
        self._progress = None

    def __enter__(self) -> "_Progress":
        if self._enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeRemainingColumn(),
                                      console=self._console, transient=False)
            self._progress.start()
            for item in self._items:
                self._tasks[item.stream_id] = self._progress.add_task(item.path.name, total=None)
        return self

    def update(self, states: Sequence[StreamState | None]) -> None:
        if self._progress is None:
            return
        for item, state in zip(self._items, states):
            if state is None:
                continue
            total = state.expected_frames
            if total is None:
                hint = self._frame_count_hint(item.stream_id)
                total = sampled_count(hint, self._stride) if hint else None
            self._progress.update(self._tasks[item.stream_id], completed=state.frames_scored,
                                  total=total if total is not None else None)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


class _NoHandle:
    source = None
