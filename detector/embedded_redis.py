"""An embedded redis-server: a real Redis process the program starts and stops itself."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from detector.config import RedisConfig
from detector.errors import RedisUnavailableError
from detector.url_mask import mask_url

log = logging.getLogger(__name__)

_SEARCH_PATHS = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary.

    Raises:
        RedisUnavailableError: none is installed.
    """
    found = shutil.which("redis-server") or next(
        (p for p in _SEARCH_PATHS if Path(p).is_file()), None
    )
    if found is None:
        raise RedisUnavailableError(
            "redis-server is not installed: run `apt-get install redis-server` "
            "(or pass --redis-url redis://HOST:PORT/DB to use an existing Redis)"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # redis-server binds with SO_REUSEADDR: a port in TIME_WAIT after the last run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _note_path(requested_port: int) -> Path:
    """Where a moved embedded Redis leaves its address for consumers (per user, per port)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"deepfake-detector-{os.getuid()}" / f"redis-{requested_port}.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def moved_embedded_url(requested_port: int) -> str | None:
    """The URL of a running embedded Redis that found ``requested_port`` taken, if any.

    ``run`` leaves a note when it has to move; ``watch``, ``attach`` and the dashboard read it so
    they still find the service without ``--redis-url``. A note whose server is gone is ignored.
    """
    try:
        note = json.loads(_note_path(requested_port).read_text())
        url, pid = str(note["url"]), int(note["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if _pid_alive(pid) else None


class EmbeddedRedis:
    """Start ``redis-server`` on 127.0.0.1 (no persistence) and stop it on exit.

    Args:
        port: the port to listen on; 0 picks a free one. If the port is taken, a free one is
            used instead and logged.
    """

    def __init__(self, port: int = 0):
        self._requested_port = port
        self.port = 0
        self._process: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self._note: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        binary = find_redis_server()
        port = self._requested_port
        if port == 0 or not _port_is_free(port):
            if port:
                log.warning("port %d is taken; the embedded Redis uses another one (logged below; "
                            "watch/attach/dashboard on this machine find it)", port)
            port = free_port()
        self.port = port
        self._dir = tempfile.TemporaryDirectory(prefix="deepfake-redis-")
        args = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self._dir.name, "--protected-mode", "yes",
            "--loglevel", "warning",
        ]
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace").strip()
                raise RedisUnavailableError(f"the embedded redis-server exited at start: {err}")
            try:
                client.ping()
                log.info("embedded Redis listening at %s", self.url)
                self._leave_note()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
            finally:
                client.close()
        self.stop()
        raise RedisUnavailableError(f"the embedded redis-server did not answer within {timeout_s} s")

    def _leave_note(self) -> None:
        if not self._requested_port or self.port == self._requested_port:
            return
        path = _note_path(self._requested_port)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps({"url": self.url, "pid": self._process.pid}))
            partial.replace(path)
            self._note = path
        except OSError as exc:
            log.warning("could not record the embedded Redis address in %s: %s", path, exc)

    def _remove_note(self) -> None:
        if self._note is None:
            return
        try:
            note = json.loads(self._note.read_text())
            if note.get("url") == self.url:  # a later run may have replaced it
                self._note.unlink()
        except (OSError, ValueError):
            pass
        self._note = None

    def stop(self) -> None:
        self._remove_note()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def connect(url: str, socket_timeout_s: float = 5.0) -> redis.Redis:
    """Connect and PING.

    Raises:
        RedisUnavailableError: with the URL (credentials masked) and the reason.
    """
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        client.ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise RedisUnavailableError(f"cannot reach Redis at {mask_url(url)}: {exc}") from None
    return client


def client_url(config: RedisConfig) -> str:
    """The URL a consumer connects to: ``redis.url``, else the embedded server's (where a
    running one that had to move off ``redis.embedded_port`` says it is, else the default
    address)."""
    if config.url:
        return config.url
    port = config.embedded_port or 6390
    return moved_embedded_url(port) or f"redis://127.0.0.1:{port}/0"
