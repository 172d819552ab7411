"""ZeroMQ CURVE security for the worker pool: key files, the service's ZAP authoriser, and the
rule that a pool endpoint reachable from other hosts needs keys (docs/remote-workers.md).

Key folder made by ``deepfake-detector keys --dir DIR``::

    DIR/server.key              the service's public key: copy it to every worker host
    DIR/server.key_secret       the service's secret key: stays on the service host
    DIR/authorized/NAME.key     public keys of the workers the service accepts
    DIR/workers/NAME.key_secret a worker's key pair: copy it to that worker's host only
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from detector.errors import ConfigError
from detector.identifiers import shown, stream_id_problem

log = logging.getLogger(__name__)

SERVER_PUBLIC = "server.key"
SERVER_SECRET = "server.key_secret"
AUTHORIZED_DIR = "authorized"
WORKERS_DIR = "workers"
REFUSED_LOG_EVERY = 100


@dataclass(frozen=True)
class CurveKeys:
    """One side's CURVE keys (Z85 bytes); ``server_public`` is the peer a client trusts."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None


def make_keys(folder: Path, worker_names: list[str]) -> list[Path]:
    """Create the server key pair (if absent) and one key pair per worker name.

    Returns:
        The files written.

    Raises:
        ConfigError: a name is not a valid id, or its key files already exist.
    """
    for name in worker_names:
        problem = stream_id_problem(name)
        if problem:
            raise ConfigError(problem.replace("stream id", "worker name"))
        if (folder / AUTHORIZED_DIR / f"{name}.key").exists():
            raise ConfigError(f"worker key {name!r} already exists in {folder / AUTHORIZED_DIR}; "
                              "delete it first or choose another name")
    written: list[Path] = []
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / SERVER_SECRET).exists():
        public, secret = zmq.auth.create_certificates(str(folder), "server")
        written += [Path(public), Path(secret)]
    for sub in (AUTHORIZED_DIR, WORKERS_DIR):
        (folder / sub).mkdir(exist_ok=True)
    for name in worker_names:
        public, secret = zmq.auth.create_certificates(str(folder / WORKERS_DIR), name)
        authorized = folder / AUTHORIZED_DIR / f"{name}.key"
        os.replace(public, authorized)
        written += [authorized, Path(secret)]
    for path in written:
        if path.name.endswith(".key_secret"):
            path.chmod(0o600)
    return written


def _load(path: Path, what: str, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found (make keys with `deepfake-detector keys`)")
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{what} {path} is not a ZeroMQ key file ({exc})") from None
    if secret and secret_key is None:
        raise ConfigError(f"{what} {path} holds no secret key (use the .key_secret file)")
    return public, secret_key


def load_server_keys(folder: Path) -> CurveKeys:
    """The service's key pair from ``pool.keys_dir``.

    Raises:
        ConfigError: the folder or its server key is missing or unreadable.
    """
    public, secret = _load(folder / SERVER_SECRET, "pool.keys_dir server key", secret=True)
    return CurveKeys(public, secret)


def load_worker_keys(server_key: Path, worker_key: Path) -> CurveKeys:
    """A remote worker's key pair and the server public key it trusts.

    Raises:
        ConfigError: a key file is missing, unreadable or of the wrong kind.
    """
    server_public, _ = _load(server_key, "server key", secret=False)
    public, secret = _load(worker_key, "worker key", secret=True)
    return CurveKeys(public, secret, server_public)


class WorkerKeyring:
    """ZAP credentials provider: a client key is accepted if it is in ``authorized/`` (read
    again whenever the folder changes, so deleting a file revokes that worker for its next
    connection) or is one of the service's own local-worker keys."""

    def __init__(self, authorized_dir: Path, extra_keys: tuple[bytes, ...] = ()):
        self._dir = authorized_dir
        self._extra = set(extra_keys)
        self._keys: set[bytes] = set()
        self._mtime_ns: int | None = None
        self._lock = threading.Lock()
        self.refused = 0
        self._reload()

    def _reload(self) -> None:
        try:
            mtime_ns = self._dir.stat().st_mtime_ns
        except OSError:
            mtime_ns = None
        if mtime_ns == self._mtime_ns and self._mtime_ns is not None:
            return
        keys = set()
        if mtime_ns is not None:
            for path in sorted(self._dir.glob("*.key")):
                try:
                    keys.add(zmq.auth.load_certificate(str(path))[0])
                except (ValueError, OSError) as exc:
                    log.warning("ignoring unreadable worker key %s (%s)", path, exc)
        self._keys, self._mtime_ns = keys, mtime_ns

    @property
    def authorized_count(self) -> int:
        with self._lock:
            self._reload()
            return len(self._keys)

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by the authenticator with the Z85 public key of each connecting client."""
        with self._lock:
            self._reload()
            is_allowed = key in self._extra or key in self._keys
            if not is_allowed:
                self.refused += 1
                if self.refused <= 5 or self.refused % REFUSED_LOG_EVERY == 0:
                    log.warning("refused a pool connection with an unauthorised key %s "
                                "(%d refused so far)", shown(key[:12]), self.refused)
        return is_allowed


def start_authenticator(context: zmq.Context, keyring: WorkerKeyring):
    """Run the ZAP handler in a thread of ``context``; returns it (``.stop()`` at the end)."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(context, log=logging.getLogger("detector.curve.zap"))
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=keyring)
    return auth


def make_curve_server(socket: zmq.Socket, keys: CurveKeys) -> None:
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True


def make_curve_client(socket: zmq.Socket, keys: CurveKeys) -> None:
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_serverkey = keys.server_public


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ``ipc://`` and for ``tcp://`` on 127.0.0.0/8, ::1 or ``localhost``."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://"):].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or interface name: reachable from elsewhere, as far as we know


def check_exposure(endpoints: list[tuple[str, str]], has_keys: bool, insecure: bool) -> None:
    """Refuse a pool endpoint that other hosts can reach unless keys are set (or ``insecure``).

    Args:
        endpoints: ``(config path, endpoint)`` pairs.

    Raises:
        ConfigError: an exposed endpoint, no keys and no ``pool.insecure``.
    """
    exposed = [(path, value) for path, value in endpoints if not is_loopback_endpoint(value)]
    if not exposed or has_keys:
        return
    path, value = exposed[0]
    if not insecure:
        raise ConfigError(
            f"{path} = {value!r} can be reached from other hosts, and without keys anyone who "
            "reaches it reads the frames and forges results: make keys with `deepfake-detector "
            "keys --dir keys` and set pool.keys_dir = \"keys\", or set pool.insecure = true")
    log.warning("INSECURE: %s without CURVE keys; anyone who reaches %s can read every "
                "frame and inject results (pool.insecure = true)",
                ", ".join(f"{p} = {v}" for p, v in exposed), value)
