"""`prepare` on a small synthetic data root: split file, face cache, idempotence, bad files."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import pytest

from detector.face_detect import make_face_detector
from detector.training.prepare import (
    DEV_SETTINGS,
    TRAIN_SETTINGS,
    cache_file,
    load_cached,
    prepare_training_data,
)
from detector.training.split import read_split
from producers.synthetic import load_face_bgr, make_frame, write_video


@pytest.fixture()
def data_root(tmp_path: Path, face_video: Path) -> Path:
    """train/real with stills of a face, a talking-head video, a faceless image and a corrupt
    file; dev/ with two labelled items."""
    root = tmp_path / "data"
    stills = root / "train" / "real" / "stills"
    stills.mkdir(parents=True)
    face = load_face_bgr()
    for n in range(3):
        cv2.imwrite(str(stills / f"person{n}.png"), make_frame(n * 7, 320, 240, face, face_px=160))
    # Larger than the tight-crop fallback's 400 px, so "no face" stays no face.
    cv2.imwrite(str(stills / "empty_room.png"), make_frame(0, 640, 480, None))
    (stills / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    videos = root / "train" / "real" / "talking"
    videos.mkdir(parents=True)
    shutil.copy(face_video, videos / "speaker.mp4")
    dev = root / "dev"
    (dev / "media").mkdir(parents=True)
    write_video(dev / "media" / "clip.mp4", 24, width=320, height=240)
    cv2.imwrite(str(dev / "media" / "frame.png"), make_frame(3, 320, 240, face, face_px=160))
    with (dev / "labels.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label", "dataset", "method", "group"])
        writer.writerow(["media/clip.mp4", "REAL", "synthetic", "", "g1"])
        writer.writerow(["media/frame.png", "FAKE", "synthetic", "", "g2"])
    return root


@pytest.fixture()
def haar():
    return make_face_detector("haar", yunet_model=Path("unused.onnx"), min_face_px=32)


def test_prepare_writes_the_split_and_caches_faces_then_skips_them(data_root, tmp_path, haar):
    cache = tmp_path / "cache"
    split = tmp_path / "models" / "m.split.csv"
    first = prepare_training_data(data_root, cache, split, haar, holdout_fraction=0.0,
                                  show_progress=False)

    rows = read_split(split)
    assert sorted(r.path for r in rows) == [
        "train/real/stills/broken.jpg", "train/real/stills/empty_room.png",
        "train/real/stills/person0.png", "train/real/stills/person1.png",
        "train/real/stills/person2.png", "train/real/talking/speaker.mp4",
    ]
    train = first["train"]
    assert train.cached_before == 0 and train.processed == 5
    assert len(train.errors) == 1 and "broken.jpg" in train.errors[0]
    assert train.without_face == 1  # the empty room: cached as zero crops, not an error
    assert train.fallbacks == 0

    person = load_cached(cache_file(cache, TRAIN_SETTINGS, "train/real/stills/person0.png"))
    assert person.crops_rgb.shape == (1, TRAIN_SETTINGS.crop_px, TRAIN_SETTINGS.crop_px, 3)
    video = load_cached(cache_file(cache, TRAIN_SETTINGS, "train/real/talking/speaker.mp4"))
    assert video.frames_sampled == len(set(video.frame_index.tolist())) or video.count == 0
    assert video.count >= 5 and all(i % TRAIN_SETTINGS.frame_stride == 0
                                    for i in video.frame_index.tolist())
    assert first["dev"].processed == 2
    assert cache_file(cache, DEV_SETTINGS, "media/clip.mp4").is_file()

    split_text = split.read_text()
    second = prepare_training_data(data_root, cache, split, haar, holdout_fraction=0.5,
                                   show_progress=False)
    assert split.read_text() == split_text  # an existing split is kept, whatever the fraction
    assert second["train"].cached_before == 5 and second["train"].processed == 0
    assert second["train"].errors == first["train"].errors  # the bad file is retried, not cached
    assert second["dev"].cached_before == 2 and second["dev"].processed == 0


def test_prepare_without_training_data_says_where_it_looked(tmp_path, haar):
    with pytest.raises(FileNotFoundError, match="train/real not found"):
        prepare_training_data(tmp_path / "nowhere", tmp_path / "cache", tmp_path / "s.csv", haar,
                              show_progress=False)


def test_prepare_progress_goes_to_stderr_not_stdout(data_root, tmp_path, haar, capsys):
    prepare_training_data(data_root, tmp_path / "cache", tmp_path / "m.split.csv", haar,
                          holdout_fraction=0.0, include_dev=False, show_progress=True)
    captured = capsys.readouterr()
    assert "━" not in captured.out and "train" not in captured.out
    assert "━" in captured.err
