"""Uploads: check size and type before any work, read frames, score them like the workers do."""

from __future__ import annotations

import base64
import binascii
import logging
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.image_header import image_size
from detector.errors import SourceError
from detector.frame_scorer import FrameScorer
from detector.sampling import sampled_indices
from detector.scoring import aggregate_video, decision_threshold, frame_score, verdict
from detector.upload_result import FaceCrop, UploadResult
from detector.video import picture_to_bgr

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")
MAX_UPLOAD_FRAMES = 48   # frames scored per uploaded video, spread over its length
MAX_UPLOAD_DECODED_FRAMES = 10_000  # a longer upload is scored on its first 10 000 frames
MAX_CROPS_SHOWN = 6
SCORE_BATCH = 8


@dataclass(frozen=True)
class UploadCheck:
    """An upload that passed the checks: what it claims to be and how big it is."""

    filename: str
    kind: str          # "image" or "video"
    size_bytes: int


def _split_data_url(contents: str) -> tuple[str, str]:
    """``data:<mime>;base64,<payload>`` → (mime, payload)."""
    header, sep, payload = contents.partition(",")
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise SourceError("the upload did not arrive as a base64 data URL; try again")
    return header[len("data:"):].split(";")[0], payload


def decoded_size(payload_b64: str) -> int:
    """Bytes a base64 payload decodes to, computed without decoding it."""
    n = len(payload_b64)
    padding = payload_b64[-2:].count("=") if n else 0
    return n * 3 // 4 - padding


def sniff_kind(head: bytes) -> str | None:
    """``"image"``, ``"video"`` or None from a file's first bytes (magic numbers)."""
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n") \
            or head.startswith(b"BM"):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video"
    return None


def too_big_message(filename: str, size_bytes: int, max_bytes: int) -> str:
    """The page's sentence for an oversize file (also used by the browser-side check)."""
    return (f"{Path(filename).name}: the file is {size_bytes / 1e6:.1f} MB; the limit is "
            f"{max_bytes / 1e6:g} MB (dashboard.max_upload_mb)")


def check_upload(filename: str | None, contents: str | None, max_bytes: int) -> UploadCheck:
    """Check an upload's name, size and first bytes; nothing is decoded or scored yet.

    Args:
        filename: the name the browser sent.
        contents: dcc.Upload's ``data:…;base64,…`` string.
        max_bytes: the size limit (``dashboard.max_upload_mb``).
    Returns:
        the checked upload.
    Raises:
        SourceError: a sentence for the page: no file, wrong type, too big, empty, or the
            bytes are not what the extension says.
    """
    if not filename or contents is None:
        raise SourceError("no file was uploaded")
    name = Path(filename).name
    extension = Path(name).suffix.lower()
    if extension in IMAGE_EXTENSIONS:
        kind = "image"
    elif extension in VIDEO_EXTENSIONS:
        kind = "video"
    else:
        shown = extension or "(no extension)"
        raise SourceError(
            f"{name}: unsupported file type {shown}; upload a video "
            f"({' '.join(VIDEO_EXTENSIONS)}) or an image ({' '.join(IMAGE_EXTENSIONS)})")
    _, payload = _split_data_url(contents)
    size = decoded_size(payload)
    if size <= 0:
        raise SourceError(f"{name}: the file is empty")
    if size > max_bytes:
        raise SourceError(too_big_message(name, size, max_bytes))
    try:
        head = base64.b64decode(payload[:24], validate=True)
    except (binascii.Error, ValueError):
        raise SourceError(f"{name}: the upload is corrupted (not base64); try again") from None
    sniffed = sniff_kind(head)
    if sniffed != kind:
        raise SourceError(f"{name}: the content is not a readable {kind} "
                          f"(its first bytes match no {kind} format)")
    return UploadCheck(name, kind, size)


def decode_contents(contents: str) -> bytes:
    """The uploaded bytes (call after :func:`check_upload`)."""
    _, payload = _split_data_url(contents)
    try:
        return base64.b64decode(payload)
    except (binascii.Error, ValueError):
        raise SourceError("the upload is corrupted (not base64); try again") from None


def read_frames(check: UploadCheck, data: bytes, stride: int,
                max_frames: int = MAX_UPLOAD_FRAMES, max_pixels: int = 40_000_000,
                max_decoded_frames: int = MAX_UPLOAD_DECODED_FRAMES) -> list[tuple[int, np.ndarray]]:
    """Decode the frames to score: the image, or every ``stride``-th video frame, at most
    ``max_frames`` spread over the video's first ``max_decoded_frames`` frames.

    The image size (and a video's frame size) is read from the header first and refused above
    ``max_pixels``; a video is decoded only up to its last wanted frame, and only wanted frames
    are converted to pixels, so neither a decompression bomb nor 100 000 tiny frames cost more
    than the frames that are scored.

    Returns:
        ``(frame_index, (h, w, 3) uint8 BGR)`` pairs in order.
    Raises:
        SourceError: too many pixels, or the bytes do not decode; the message names the
            uploaded file only.
    """
    if check.kind == "image":
        size = image_size(data)
        if size is None:
            raise SourceError(f"{check.filename}: not a readable image")  # no size in its header
        _check_pixels(check.filename, size, max_pixels)
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{check.filename}: not a readable image")
        _check_pixels(check.filename, (image.shape[1], image.shape[0]), max_pixels)
        return [(0, image)]
    with tempfile.TemporaryDirectory(prefix="deepfake-upload-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        frames, _ = decode_sampled(path, check.filename, stride, max_frames, max_pixels,
                                   max_decoded_frames)
    return frames


def _check_pixels(filename: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise SourceError(f"{filename}: {width}×{height} pixels is over the limit of "
                          f"{max_pixels:,} pixels (dashboard.max_upload_pixels)")


def decode_sampled(path: Path, filename: str, stride: int, max_frames: int, max_pixels: int,
                   max_decoded_frames: int) -> tuple[list[tuple[int, np.ndarray]], int]:
    """A video file's wanted frames and how many frames were decoded to get them.

    The frame count comes from the container, else from counting packets (no decoding); the
    wanted frames are ``max_frames`` sampled indices spread over the first
    ``max_decoded_frames`` frames; decoding stops after the last of them.

    Raises:
        SourceError: not a video, frames over ``max_pixels``, or decoding failed.
    """
    import av  # only uploads of videos need PyAV

    from detector.video import open_video

    container, stream = open_video(path, filename)
    try:
        _check_pixels(filename, (stream.codec_context.width, stream.codec_context.height),
                      max_pixels)
        count = stream.frames or 0
        if not count:
            count = sum(1 for packet, _ in zip(container.demux(stream), range(max_decoded_frames))
                        if packet.size)
            container.seek(0)
        count = min(count, max_decoded_frames)
        wanted = set(sampled_indices(count, stride, max_frames))
        last_wanted = max(wanted) if wanted else -1
        frames: list[tuple[int, np.ndarray]] = []
        decoded = 0
        try:
            for frame in container.decode(stream):
                index, decoded = decoded, decoded + 1
                if index in wanted:
                    if frame.width * frame.height > max_pixels:
                        _check_pixels(filename, (frame.width, frame.height), max_pixels)
                    frames.append((index, picture_to_bgr(frame)))
                if index >= last_wanted:
                    break
        except av.error.FFmpegError:
            if not frames:
                raise SourceError(f"{filename}: not a readable video (decoding failed)") from None
        if not frames:
            raise SourceError(f"{filename}: not a readable video (no decodable frame)")
        return frames, decoded
    finally:
        container.close()


def score_frames(scorer: FrameScorer, check: UploadCheck, frames: Sequence[tuple[int, np.ndarray]],
                 threshold: float, max_crops: int = MAX_CROPS_SHOWN) -> UploadResult:
    """Score frames in small batches with the workers' FrameScorer.

    Returns:
        per-frame scores, the item's score (mean over frames with faces), its verdict and the
        ``max_crops`` most suspicious face crops, most suspicious first.
    """
    indices: list[int] = []
    scores: list[float | None] = []
    crops: list[FaceCrop] = []
    for start in range(0, len(frames), SCORE_BATCH):
        batch = frames[start:start + SCORE_BATCH]
        images = [image for _, image in batch]
        faces = scorer.detect(images)
        results, _ = scorer.score_frames(images, faces)
        batch_crops = scorer.crops(images, faces)
        cursor = 0
        for (index, _), frame_results in zip(batch, results):
            indices.append(index)
            scores.append(frame_score([face.fake_probability for face in frame_results]))
            for face in frame_results:
                crops.append(FaceCrop(index, face.fake_probability, batch_crops[cursor]))
                cursor += 1
        crops = sorted(crops, key=lambda c: -c.fake_probability)[:max_crops]
    score = aggregate_video(scores)
    return UploadResult(check.filename, check.kind, tuple(indices), tuple(scores), score,
                        verdict(score, threshold), threshold, tuple(crops))


class UploadScorer:
    """Scores uploads in the dashboard process; the model loads on the first upload.

    Args:
        config: the dashboard's config (model, faces, sampling, scoring, dashboard sections).
    """

    def __init__(self, config):
        self.config = config
        self.max_bytes = int(config.dashboard.max_upload_mb * 1_000_000)
        self._lock = threading.RLock()
        self._scorer: FrameScorer | None = None
        self._explainer = None

    def scorer(self) -> FrameScorer:
        """The workers' FrameScorer for the configured model (loaded on first use).

        Raises:
            ModelError: the model card or its weights are missing or do not fit.
        """
        with self._lock:
            if self._scorer is None:
                from detector.worker import build_frame_scorer

                self._scorer = build_frame_scorer(self.config)
            return self._scorer

    def score_frame(self, label: str, frame_index: int, frame_bgr: np.ndarray) -> UploadResult:
        """Score one already-decoded frame (a frame of a stream) the same way as an upload."""
        scorer, threshold = self.scorer(), self.threshold
        with self._lock:
            return score_frames(scorer, UploadCheck(label, "image", 0), [(frame_index, frame_bgr)],
                                threshold)

    def explain(self, crops: Sequence[FaceCrop]) -> list[tuple[FaceCrop, np.ndarray]]:
        """Grad-CAM overlays of ``crops`` by a Keras copy of the same model card's weights.

        Returns:
            ``(crop, (s, s, 3) uint8 RGB overlay)`` per crop, in order.
        """
        from detector.gradcam import GradCam, overlay_heatmap

        scorer = self.scorer()
        with self._lock:
            if self._explainer is None:
                self._explainer = GradCam(scorer.card)
            overlays = []
            for crop in crops:
                cam, _ = self._explainer.explain(crop.crop_rgb)
                overlays.append((crop, overlay_heatmap(crop.crop_rgb, cam)))
            return overlays

    def card(self):
        """The configured model's card (the model loads on first use).

        Raises:
            ModelError: the model card or its weights are missing or do not fit.
        """
        return self.scorer().card

    def too_big_message(self, filename: str, size_bytes: int) -> str:
        """The page's sentence for a file over this scorer's limit."""
        return too_big_message(filename, size_bytes, self.max_bytes)

    @property
    def threshold(self) -> float:
        return decision_threshold(self.config.scoring.threshold, self.scorer().card.threshold)

    def score(self, filename: str | None, contents: str | None) -> UploadResult:
        """Check, decode and score one upload.

        Raises:
            SourceError: the upload was refused (the message is shown on the page).
            ModelError: the model could not be loaded.
        """
        check = check_upload(filename, contents, self.max_bytes)
        scorer, threshold = self.scorer(), self.threshold
        with self._lock:   # one upload at a time: decoding too, so two cannot add up in memory
            frames = read_frames(check, decode_contents(contents), self.config.sampling.stride,
                                 max_pixels=self.config.dashboard.max_upload_pixels)
            return score_frames(scorer, check, frames, threshold)

