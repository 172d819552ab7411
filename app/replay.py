"""Batch replay of video files: lossless scoring through the pool and a JSON/CSV report."""

from __future__ import annotations

import csv
import io
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.signals import handle_signals
from detector.collector import StreamState
from detector.config import Config
from detector.logs import stderr_console
from detector.redis_keys import SCHEMA_VERSION
from detector.sampling import sampled_count
from detector.scoring import verdict
from detector.stream_status import StreamStatus
from detector.stream_urls import default_stream_id
from producers.file_source import FileSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayItem:
    path: Path
    stream_id: str


def plan_items(paths: Sequence[str], ids: Sequence[str] | None) -> list[ReplayItem]:
    """Pair files with stream ids; default ids are file stems, made unique with ``-2``, ``-3``."""
    from detector.errors import ConfigError
    from detector.identifiers import stream_id_problem

    if ids and len(ids) != len(paths):
        raise ConfigError(f"--id was given {len(ids)} time(s) for {len(paths)} file(s); give one per file")
    items: list[ReplayItem] = []
    used: set[str] = set()
    for i, path in enumerate(paths):
        stream_id = ids[i] if ids else default_stream_id(str(path))
        problem = stream_id_problem(stream_id)
        if problem:
            raise ConfigError(f"--id: {problem}")
        base, n = stream_id[:58], 2
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
    status = {StreamStatus.FINISHED: "ok", StreamStatus.FAILED: "failed"}.get(state.status,
                                                                             "interrupted")
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
        "video_score": None if score is None else round(score, 6),
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


CSV_COLUMNS = ("path", "stream_id", "status", "frames_total", "frames_sampled", "frames_scored",
               "frames_with_faces", "video_score", "label", "error")
FRAMES_CSV_COLUMNS = ("path", "stream_id", "frame_index", "pts_s", "faces", "frame_score", "error")


def csv_text(report: dict[str, Any]) -> str:
    """One row per file (``video_score`` empty without a face)."""
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for f in report["files"]:
        writer.writerow({k: f.get(k) for k in CSV_COLUMNS})
    return handle.getvalue()


def frames_csv_text(report: dict[str, Any]) -> str:
    """One row per scored frame of every file, in frame order (``frame_score`` empty for a
    frame without a face; ``faces`` is the number of faces found)."""
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=FRAMES_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for f in report["files"]:
        for r in f["frames"]:
            score = r["frame_score"]
            writer.writerow({"path": f["path"], "stream_id": f["stream_id"],
                             "frame_index": r["frame_index"], "pts_s": r["pts_s"],
                             "faces": len(r["faces"]),
                             "frame_score": None if score is None else round(score, 6),
                             "error": r.get("error")})
    return handle.getvalue()


def write_csv(report: dict[str, Any], path: Path) -> Path:
    """Write :func:`csv_text` to ``path`` (or a named fallback file); returns where it went."""
    from app.outputs import write_output

    return write_output(path, csv_text(report), "CSV")


def check_outputs(report_path: Path | None, csv_path: Path | None,
                  frames_csv_path: Path | None) -> None:
    """Refuse unwritable output paths before any scoring.

    Raises:
        ConfigError: a path is a folder, in a missing folder, not writable, or named twice.
    """
    from app.outputs import check_distinct, check_output_path

    named = {"--report": report_path, "--csv": csv_path, "--frames-csv": frames_csv_path}
    for flag, path in named.items():
        if path is not None:
            check_output_path(Path(path), flag)
    check_distinct(named)


def save_outputs(report: dict[str, Any], report_path: Path | None, csv_path: Path | None,
                 frames_csv_path: Path | None) -> dict[str, Path]:
    """Write the requested files; one that cannot be written goes to a named fallback file.

    Returns:
        what was written where (``{"report": path, …}``).
    """
    from app.outputs import write_output

    written: dict[str, Path] = {}
    jobs = (("report", report_path, lambda: json.dumps(report, indent=2) + "\n"),
            ("CSV", csv_path, lambda: csv_text(report)),
            ("frames CSV", frames_csv_path, lambda: frames_csv_text(report)))
    for what, path, text in jobs:
        if path is None:
            continue
        try:
            written[what] = write_output(Path(path), text(), what.replace(" ", "-"))
        except OSError as exc:
            log.error("could not write the %s to %s or any fallback file: %s", what, path, exc)
    return written


def run_replay(config: Config, paths: Sequence[str], *, ids: Sequence[str] | None = None,
               redis_url: str | None = None, report_path: Path | None = None,
               csv_path: Path | None = None, show_progress: bool | None = None,
               frames_csv_path: Path | None = None, json_output: bool = False,
               console=None) -> int:
    """Score ``paths`` losslessly through the pool; write the report; 0 if every file is ok.

    The summary table (or, with ``json_output``, the whole report as JSON) goes to stdout;
    progress bars and messages go to ``console`` (stderr). Output paths are checked before
    anything is scored.

    Raises:
        ConfigError: bad ``ids`` or an output path that cannot be written.
    """
    from rich.console import Console

    from app.service import Service

    items = plan_items(paths, ids)
    check_outputs(report_path, csv_path, frames_csv_path)
    console = console or stderr_console()
    show_progress = console.is_terminal if show_progress is None else show_progress
    service = Service(config, redis_url=redis_url, keep_frames=True)
    interrupted = threading.Event()

    def on_sigint(signum, frame):
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        console.print("[yellow]Interrupted: finishing frames in flight (Ctrl-C again to force)")

    restore_signals = handle_signals(on_sigint, (signal.SIGINT,))
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
        restore_signals()
    states = [service.collector.stream(item.stream_id) for item in items]
    report = build_report(items, states, service.collector.threshold,
                          service.collector.model_id, config.sampling.stride)
    written = save_outputs(report, report_path, csv_path, frames_csv_path)
    if json_output:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        sys.stdout.flush()
    else:
        print_summary(report, Console(soft_wrap=False))
    if service.fatal_error:
        console.print(f"error: {service.fatal_error}", markup=False, highlight=False)
        return 2
    asked = [Path(p) for p in (report_path, csv_path, frames_csv_path) if p is not None]
    all_written = sorted(map(str, written.values())) == sorted(map(str, asked))
    ok = report["summary"]["failed"] == 0 and not interrupted.is_set() and all_written
    return 0 if ok else 1


def print_summary(report: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title=f"replay ({report['model']}, threshold {report['threshold']:.2f})")
    for column in ("file", "status", "frames", "sampled", "with faces", "score", "label"):
        table.add_column(column, no_wrap=True,
                         justify="right" if column in ("frames", "sampled", "with faces", "score")
                         else "left")
    for f in report["files"]:
        score = "—" if f["video_score"] is None else f"{f['video_score']:.3f}"
        table.add_row(Path(f["path"]).name, f["status"], str(f["frames_total"]),
                      str(f["frames_sampled"]), str(f["frames_with_faces"]), score,
                      f["label"] or "—")
    console.print(table)
    # Reasons under the table, one line each: a table column would wrap them at 80 columns.
    for f in report["files"]:
        if f["error"]:
            console.print(f"{Path(f['path']).name}: {error_without_path(f['error'], f['path'])}",
                          markup=False, highlight=False, soft_wrap=True)


def error_without_path(error: str, path: str) -> str:
    """``/a/b/gone.mp4: file not found`` → ``file not found`` (the file is already named)."""
    for prefix in (f"{path}: ", f"{Path(path)}: "):
        if error.startswith(prefix):
            return error[len(prefix):]
    return error


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

    def __enter__(self) -> _Progress:
        if self._enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

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
