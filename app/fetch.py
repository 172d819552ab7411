"""``fetch-yunet``: put OpenCV's YuNet face detector where the config expects it."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

from detector.errors import DetectorError
from detector.face_detect import YUNET_URL


def fetch_yunet(target: Path, source: str | None = None, timeout_s: float = 15.0) -> int:
    """Download (or copy from ``source``) the YuNet ONNX file to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        print(f"{target} already exists")
        return 0
    source = source or YUNET_URL
    partial = target.with_suffix(".part")
    try:
        if Path(source).is_file():
            shutil.copyfile(source, partial)
        else:
            with urllib.request.urlopen(source, timeout=timeout_s) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise DetectorError(
            f"could not fetch YuNet from {source} ({exc}); download it by hand to {target}"
        ) from None
    if partial.stat().st_size < 10_000:
        partial.unlink()
        raise DetectorError(f"{source} did not look like the YuNet ONNX model (too small)")
    partial.replace(target)
    print(f"YuNet saved to {target}")
    return 0
