"""Report files named on the command line: checked before any work starts, and never lost at
the end (a write that still fails goes to a named fallback file)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from detector.errors import ConfigError

log = logging.getLogger(__name__)


def check_output_path(path: Path, flag: str, create_folder: bool = False) -> Path:
    """Refuse an output path that cannot be written, before the work that fills it.

    Args:
        path: the file a report will be written to (created or replaced).
        flag: the option that named it, for the message (``--report``).
        create_folder: create a missing folder now (``evaluate --report reports/x.json``, as
            documented) instead of refusing it.
    Returns:
        ``path``.
    Raises:
        ConfigError: ``path`` is a folder, its folder does not exist (and is not to be
            created, or cannot be) or is not a folder, or it cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'report'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists() and create_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{flag} {path}: cannot create folder {folder} "
                              f"({exc.strerror or exc})") from None
    if not folder.exists():
        raise ConfigError(f"{flag} {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: {folder} is not a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path}: file is not writable")
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: folder {folder} is not writable")
    return path


def check_distinct(paths: dict[str, Path | None]) -> None:
    """Two outputs naming the same file would overwrite each other.

    Raises:
        ConfigError: two flags name the same file.
    """
    seen: dict[Path, str] = {}
    for flag, path in paths.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in seen:
            raise ConfigError(f"{seen[resolved]} and {flag} both name {path}; give two files")
        seen[resolved] = flag


def write_output(path: Path, text: str, what: str) -> Path:
    """Write ``text`` to ``path``; if that fails, to a fallback file in the current folder
    (or the temp folder), and log where it went.

    Args:
        path: the file the user asked for.
        text: the whole content.
        what: ``"report"``, ``"CSV"`` … for the message.
    Returns:
        the path actually written.
    Raises:
        OSError: neither ``path`` nor any fallback could be written.
    """
    path = Path(path)
    try:
        path.write_text(text, encoding="utf-8")
        return path
    except OSError as exc:
        reason = exc.strerror or str(exc)
        name = f"deepfake-{what.lower()}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{path.suffix}"
        for folder in (Path.cwd(), Path(tempfile.gettempdir())):
            fallback = folder / name
            try:
                fallback.write_text(text, encoding="utf-8")
            except OSError:
                continue
            log.error("could not write the %s to %s (%s); wrote it to %s instead",
                      what, path, reason, fallback)
            return fallback
        raise
