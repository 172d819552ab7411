"""Person/video split: groups, stable sides, the committed split file."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.training.split import (
    SplitRow,
    build_split,
    check_split,
    group_of,
    read_split,
    side_of,
    write_split,
)

REPO = Path(__file__).resolve().parents[2]
SPLIT_FILE = REPO / "models" / "sbi_b0.split.csv"
DATA_ROOT = REPO.parent / "shared" / "data"


@pytest.mark.parametrize("path,group", [
    ("train/real/utkface_crop_part1/crop_part1/48_1_2_20170109002813437.jpg.chip.jpg",
     "utkface:48_1_2_20170109002813437"),
    ("train/real/voxceleb2_pcavs/Mouth_Source/681600002/000324.jpg", "voxceleb2:681600002"),
    ("train/real/voxceleb2_pcavs/Input/512400353/x.mp4", "voxceleb2:512400353"),
    ("train/real/mead/data/style_clip/video/M030_front_angry_level3_001.mp4", "mead:M030"),
    ("train/real/hdtf/WDA_EdMarkey0_000.mp4", "hdtf:EdMarkey"),
    ("train/real/hdtf/RD_Radio34_000.mp4", "hdtf:RD_Radio34"),
    ("train/real/sadtalker_ref/WDA_KatieHill_000.mp4", "hdtf:KatieHill"),
    ("train/real/liveportrait_driving/d12.jpg", "liveportrait_driving:d12"),
    ("train/real/liveportrait_driving/d12.mp4", "liveportrait_driving:d12"),
    ("train/real/real3dportrait/data/raw/examples/Macron.png", "person:macron"),
    ("train/real/lia_vox_ted/data/vox/macron.png", "person:macron"),
    ("train/real/lia_vox_ted/data/ted/driving1.mp4", "lia_vox_ted:data/ted/driving1"),
])
def test_group_of(path, group):
    assert group_of(path) == group


@pytest.mark.parametrize("bad", ["", "dev/media/x.png", "train/fake/a.png", "train/real"])
def test_group_of_rejects_paths_outside_train_real(bad):
    with pytest.raises(ValueError):
        group_of(bad)


def test_side_is_stable_and_fraction_is_roughly_kept():
    groups = [f"g{i}" for i in range(2000)]
    sides = [side_of(g, 0.12) for g in groups]
    assert sides == [side_of(g, 0.12) for g in groups]
    assert 0.09 < sides.count("holdout") / len(sides) < 0.15
    assert all(side_of(g, 0.0) == "train" for g in groups[:50])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2.0])
def test_side_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError):
        side_of("g", fraction)


def test_frames_of_one_video_and_a_still_of_that_person_stay_together(tmp_path):
    paths = [f"train/real/liveportrait_driving/d{i}.{ext}" for i in range(40) for ext in ("jpg", "mp4")]
    rows = build_split(paths, 0.3)
    check_split(rows)
    by_group = {}
    for row in rows:
        by_group.setdefault(row.group, set()).add(row.side)
    assert all(len(sides) == 1 for sides in by_group.values())
    write_split(rows, tmp_path / "split.csv")
    assert read_split(tmp_path / "split.csv") == rows


@pytest.mark.parametrize("rows,message", [
    ([SplitRow("train/real/a/x.png", "g", "train"), SplitRow("train/real/a/y.png", "g", "holdout")],
     "both sides"),
    ([SplitRow("train/real/a/x.png", "g", "train"), SplitRow("train/real/a/x.png", "g", "train")],
     "twice"),
])
def test_check_split_rejects(rows, message):
    with pytest.raises(ValueError, match=message):
        check_split(rows)


@pytest.mark.parametrize("kwargs", [
    {"path": "/abs/x.png", "group": "g", "side": "train"},
    {"path": "train/../x.png", "group": "g", "side": "train"},
    {"path": "train/real/x.png", "group": "", "side": "train"},
    {"path": "train/real/x.png", "group": "g", "side": "dev"},
])
def test_split_row_validates(kwargs):
    with pytest.raises(ValueError):
        SplitRow(**kwargs)


def test_committed_split_file_is_consistent():
    if not SPLIT_FILE.is_file():
        pytest.skip("models/sbi_b0.split.csv not present")
    rows = read_split(SPLIT_FILE)  # raises if a group is on both sides
    assert {r.side for r in rows} == {"train", "holdout"}
    assert all(r.path.startswith("train/real/") for r in rows)
    assert all(group_of(r.path) == r.group for r in rows)
    holdout_videos = [r for r in rows if r.side == "holdout" and r.is_video]
    assert holdout_videos, "the held-out side should include whole videos"


def test_committed_split_matches_the_shared_data():
    if not SPLIT_FILE.is_file() or not (DATA_ROOT / "train" / "real").is_dir():
        pytest.skip("needs ../shared/data and the committed split")
    from detector.training.split import list_training_media

    rows = read_split(SPLIT_FILE)
    assert sorted(r.path for r in rows) == list_training_media(DATA_ROOT)
