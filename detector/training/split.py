"""Train / held-out split of the real training media by person or video group, never by frame.

Every source file gets a group (the person or the clip it shows); a group's side is fixed by a
hash of its name, so the split does not depend on file order and adding files never moves an
old group. The split is written to a CSV that is committed beside the model card:
``path,group,side`` with ``path`` relative to the data root (``../shared/data``).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov")
SIDES = ("train", "holdout")
TRAIN_REAL_DIR = "train/real"
# Stems that name the same person in more than one source folder.
PEOPLE_IN_SEVERAL_FOLDERS = frozenset({"macron"})


@dataclass(frozen=True)
class SplitRow:
    """One source file: path relative to the data root, its person/video group, its side."""

    path: str
    group: str
    side: str

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"expected side in {SIDES}, got {self.side!r}")
        if not self.path or PurePosixPath(self.path).is_absolute() or ".." in self.path.split("/"):
            raise ValueError(f"expected a relative path inside the data root, got {self.path!r}")
        if not self.group:
            raise ValueError(f"expected a non-empty group for {self.path}")

    @property
    def is_video(self) -> bool:
        return self.path.lower().endswith(VIDEO_SUFFIXES)


def group_of(path: str) -> str:
    """The person/video group of a training file (path relative to the data root).

    Rules, from the folder layouts in ``train/SOURCES.csv``: UTKFace chips are one person each;
    VoxCeleb folders named by a numeric id hold one person; MEAD clips start with the actor id
    (``M030_front_angry…``); HDTF-style names (``WDA_KatieHill_000``) name the speaker; a still
    and a clip with the same stem (``d12.jpg``/``d12.mp4``) are one person; otherwise the file.
    """
    parts = PurePosixPath(path).parts
    if len(parts) < 3 or "/".join(parts[:2]) != TRAIN_REAL_DIR:
        raise ValueError(f"expected a path under {TRAIN_REAL_DIR}/, got {path!r}")
    source, inner = parts[2], parts[3:]
    stem = PurePosixPath(path).stem.split(".")[0]
    if source == "utkface_crop_part1":
        return f"utkface:{stem}"
    if source == "voxceleb2_pcavs":
        ids = [p for p in inner[:-1] if re.fullmatch(r"\d{6,}", p)]
        return f"voxceleb2:{ids[0] if ids else stem}"
    if source == "mead":
        return f"mead:{stem.split('_')[0]}"
    if source in ("hdtf", "sadtalker_ref"):
        speaker = re.sub(r"_\d+$", "", stem)
        if speaker.startswith(("WDA_", "WRA_")):  # WDA_EdMarkey0: clip 0 of Ed Markey
            speaker = re.sub(r"\d+$", "", speaker[4:])
        return f"hdtf:{speaker}"
    if stem.lower() in PEOPLE_IN_SEVERAL_FOLDERS:
        return f"person:{stem.lower()}"
    subdir = "/".join(inner[:-1])
    return f"{source}:{subdir + '/' if subdir else ''}{stem.lower()}"


def side_of(group: str, holdout_fraction: float) -> str:
    """``"holdout"`` for a stable ``holdout_fraction`` of groups (by SHA-1 of the name)."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"expected 0 <= holdout_fraction < 1, got {holdout_fraction}")
    digest = hashlib.sha1(group.encode("utf-8")).digest()
    unit = int.from_bytes(digest[:8], "big") / 2.0**64
    return "holdout" if unit < holdout_fraction else "train"


def list_training_media(data_root: Path) -> list[str]:
    """Every image and video under ``<data_root>/train/real``, as sorted relative POSIX paths."""
    base = Path(data_root) / TRAIN_REAL_DIR
    if not base.is_dir():
        raise FileNotFoundError(f"training data folder {base} not found")
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    return sorted(
        p.relative_to(data_root).as_posix()
        for p in base.rglob("*")
        if p.is_file() and p.suffix.lower() in suffixes
    )


def build_split(paths: list[str], holdout_fraction: float = 0.12) -> list[SplitRow]:
    """Assign every path to a side by its group."""
    rows = []
    for path in sorted(paths):
        group = group_of(path)
        rows.append(SplitRow(path, group, side_of(group, holdout_fraction)))
    return rows


def write_split(rows: list[SplitRow], path: Path) -> None:
    """Write ``path,group,side`` rows (creates the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["path", "group", "side"])
        for row in rows:
            writer.writerow([row.path, row.group, row.side])


def read_split(path: Path) -> list[SplitRow]:
    """Read a split file written by :func:`write_split`.

    Raises:
        ValueError: a missing column, a bad row, or a group found on both sides.
    """
    with Path(path).open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None or not {"path", "group", "side"} <= set(reader.fieldnames):
            raise ValueError(f"split file {path}: expected columns path,group,side, "
                             f"got {reader.fieldnames}")
        rows = [SplitRow(r["path"], r["group"], r["side"]) for r in reader]
    check_split(rows)
    return rows


def check_split(rows: list[SplitRow]) -> None:
    """Raise ValueError if a group sits on both sides or a path appears twice."""
    sides: dict[str, str] = {}
    seen: set[str] = set()
    for row in rows:
        if row.path in seen:
            raise ValueError(f"split: path {row.path} is listed twice")
        seen.add(row.path)
        if sides.setdefault(row.group, row.side) != row.side:
            raise ValueError(f"split: group {row.group} is on both sides")
