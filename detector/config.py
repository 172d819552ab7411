"""``config.toml`` → frozen dataclasses, validated once, with errors that name the TOML path.

Every key has a default, so an empty or missing file is a valid configuration. Unknown keys
and bad values raise :class:`ConfigError` with one sentence such as
``workers.max_batch must be >= 1, got 0``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from detector.errors import ConfigError
from detector.face_detector_kinds import AUTO, FACE_DETECTORS, YUNET_RUNTIMES
from detector.identifiers import stream_id_problem, url_problem
from detector.runtime_kinds import RUNTIMES
from detector.sampling import DEFAULT_STRIDE
from detector.scoring import THRESHOLD_ABOVE, THRESHOLD_BELOW
from detector.url_mask import mask_url

DEFAULT_CONFIG_PATH = Path("config.toml")


def _rule(*, ge: float | None = None, le: float | None = None, gt: float | None = None,
          lt: float | None = None, choices: tuple[str, ...] | None = None) -> dict:
    return {"ge": ge, "le": le, "gt": gt, "lt": lt, "choices": choices}


@dataclass(frozen=True)
class RedisConfig:
    """Where scores go. An empty ``url`` makes ``run``/``replay`` start an embedded redis-server
    on 127.0.0.1:``embedded_port`` (another free port if taken; 0 = always a free port), and
    makes ``watch``/``dashboard`` look for it there."""

    url: str = ""
    embedded_port: int = field(default=6390, metadata=_rule(ge=0, le=65535))
    prefix: str = "deepfake"
    history_maxlen: int = field(default=10_000, metadata=_rule(ge=1))
    # A finished, failed, stopped or detached stream leaves the stream list this long after it
    # ended; its history, latest score and thumbnail expire then too.
    finished_ttl_s: float = field(default=3600.0, metadata=_rule(ge=0))
    socket_timeout_s: float = field(default=5.0, metadata=_rule(gt=0))
    publish_queue: int = field(default=1000, metadata=_rule(ge=1))


@dataclass(frozen=True)
class PoolConfig:
    """ZeroMQ endpoints of the worker pool. ``auto`` = private ``ipc://`` sockets in a temp dir.

    Remote workers need ``tcp://`` endpoints reachable from their host, e.g.
    ``frames_endpoint = "tcp://0.0.0.0:5555"`` and ``results_endpoint = "tcp://0.0.0.0:5556"``,
    and then CURVE keys: ``keys_dir`` is the folder ``deepfake-detector keys`` makes. An endpoint
    other hosts can reach is refused without keys unless ``insecure = true``
    (docs/remote-workers.md).
    """

    frames_endpoint: str = "auto"
    results_endpoint: str = "auto"
    frames_hwm: int = field(default=64, metadata=_rule(ge=1))
    keys_dir: str = ""
    insecure: bool = False
    # Frames to the service's own workers through shared memory (a ring of slots per stream
    # in /dev/shm; docs/wire.md): only with an ipc:// frames endpoint, which remote workers
    # cannot join. tcp:// endpoints, or ``false``, send every frame's pixels inline.
    # ``ring_slots`` caps a ring: a file keeps at most that many frames queued and in flight.
    shared_memory: bool = True
    ring_slots: int = field(default=32, metadata=_rule(ge=2, le=4096))


@dataclass(frozen=True)
class SamplingConfig:
    stride: int = field(default=DEFAULT_STRIDE, metadata=_rule(ge=1))


@dataclass(frozen=True)
class WorkersConfig:
    """``count = 0`` means one worker per CPU core; ``threads = 0`` splits the cores evenly.
    ``result_timeout_s``: a file frame whose result has not come back this long after it was
    sent is sent again (a hung worker); a dead worker's frames are sent again at once."""

    count: int = field(default=0, metadata=_rule(ge=0))
    max_batch: int = field(default=16, metadata=_rule(ge=1, le=512))
    max_wait_ms: float = field(default=30.0, metadata=_rule(ge=0))
    threads: int = field(default=0, metadata=_rule(ge=0))
    runtime: str = field(default="auto", metadata=_rule(choices=RUNTIMES))
    result_timeout_s: float = field(default=30.0, metadata=_rule(gt=0))

    def resolved_count(self) -> int:
        return self.count or max(1, os.cpu_count() or 1)

    def resolved_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.resolved_count())


@dataclass(frozen=True)
class FacesConfig:
    """Face detection. ``detector = "auto"`` uses the model card's detector when its file exists,
    else the Haar cascade (with a log line saying where to put YuNet)."""

    detector: str = field(default=AUTO, metadata=_rule(choices=(AUTO, *FACE_DETECTORS)))
    yunet_model: str = "models/face_detection_yunet.onnx"
    # What runs YuNet's network: auto = OpenVINO when installed (about 2.5x faster here), else
    # OpenCV's cv2.FaceDetectorYN; both decode the same way.
    yunet_runtime: str = field(default=AUTO, metadata=_rule(choices=YUNET_RUNTIMES))
    detect_width_px: int = field(default=640, metadata=_rule(ge=64))
    min_face_px: int = field(default=32, metadata=_rule(ge=4))
    max_faces: int = field(default=5, metadata=_rule(ge=1))


FILES_FULL = "full"
FILES_TRACK = "track"


@dataclass(frozen=True)
class TrackingConfig:
    """Face tracks between full detections (detector/tracking.py, docs/live-sources.md).

    ``full_every``: one sampled frame in this many is searched in full (1 = every frame, no
    region search); in between, the detector looks only in a region ``roi_scale`` times each
    live track's box, scaled so the face is at most ``roi_face_px`` wide (and no finer than a full
    detection at ``faces.detect_width_px`` sees it). A track missed on a
    frame, or whose detector confidence fell below ``redetect_confidence``, makes the next
    frame a full detection; after ``max_missed`` misses in a row it ends. ``match_iou``: the
    least overlap for a fully detected face to continue a track. ``files``: ``full`` searches
    every sampled frame of a file in full (as fast as before, replay order-independent);
    ``track`` tracks in files too, sending each file frame only once the previous one's
    result is in (deterministic, but one frame of that file in flight at a time).
    """

    full_every: int = field(default=5, metadata=_rule(ge=1, le=1000))
    max_missed: int = field(default=2, metadata=_rule(ge=0, le=1000))
    match_iou: float = field(default=0.3, metadata=_rule(gt=0.0, le=1.0))
    redetect_confidence: float = field(default=0.75, metadata=_rule(ge=0.0, le=1.0))
    roi_scale: float = field(default=3.0, metadata=_rule(ge=1.0, le=8.0))
    roi_face_px: int = field(default=48, metadata=_rule(ge=16, le=1024))
    files: str = field(default=FILES_FULL, metadata=_rule(choices=(FILES_FULL, FILES_TRACK)))


@dataclass(frozen=True)
class ModelConfig:
    """The model card ``<dir>/<name>.toml`` and its weights."""

    name: str = "sbi_b0"
    dir: str = "models"


@dataclass(frozen=True)
class ScoringConfig:
    """``window`` = the most recent sampled frames the rolling score covers; frames without a
    face take a place in it but do not count toward the mean (``detector.scoring.RollingScore``)."""

    window: int = field(default=8, metadata=_rule(ge=1))
    threshold: float | None = field(default=None,
                                    metadata=_rule(gt=THRESHOLD_ABOVE, lt=THRESHOLD_BELOW))


@dataclass(frozen=True)
class SourcesConfig:
    """Live-source behaviour (webcams, RTSP). ``max_in_flight_frames``: frames of one live
    stream sent to the pool but not yet scored; past it, the stream's buffer drops its oldest."""

    stall_timeout_s: float = field(default=20.0, metadata=_rule(gt=0))
    open_timeout_s: float = field(default=10.0, metadata=_rule(gt=0))
    rtsp_transport: str = field(default="tcp", metadata=_rule(choices=("tcp", "udp")))
    reconnect_min_s: float = field(default=1.0, metadata=_rule(gt=0))
    reconnect_max_s: float = field(default=10.0, metadata=_rule(gt=0))
    live_buffer_frames: int = field(default=2, metadata=_rule(ge=1))
    max_in_flight_frames: int = field(default=2, metadata=_rule(ge=1))


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=9108, metadata=_rule(ge=0, le=65535))


@dataclass(frozen=True)
class DashboardConfig:
    host: str = "127.0.0.1"
    port: int = field(default=8050, metadata=_rule(ge=1, le=65535))
    thumbnail_interval_s: float = field(default=1.0, metadata=_rule(gt=0))
    max_upload_mb: float = field(default=200.0, metadata=_rule(gt=0))
    max_upload_pixels: int = field(default=40_000_000, metadata=_rule(ge=1))  # per image or frame
    keep_live_frame: bool = True  # keep each live stream's latest thumbnail frame, unannotated


@dataclass(frozen=True)
class StreamConfig:
    """One ``[[streams]]`` entry started with the service."""

    id: str = ""
    url: str = ""
    stride: int | None = field(default=None, metadata=_rule(ge=1))


@dataclass(frozen=True)
class Config:
    redis: RedisConfig = RedisConfig()
    pool: PoolConfig = PoolConfig()
    sampling: SamplingConfig = SamplingConfig()
    workers: WorkersConfig = WorkersConfig()
    faces: FacesConfig = FacesConfig()
    tracking: TrackingConfig = TrackingConfig()
    model: ModelConfig = ModelConfig()
    scoring: ScoringConfig = ScoringConfig()
    sources: SourcesConfig = SourcesConfig()
    metrics: MetricsConfig = MetricsConfig()
    dashboard: DashboardConfig = DashboardConfig()
    streams: tuple[StreamConfig, ...] = ()
    base_dir: Path = field(default=Path("."), compare=False)

    def resolve_path(self, value: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)


_SECTIONS: dict[str, type] = {
    "redis": RedisConfig,
    "pool": PoolConfig,
    "sampling": SamplingConfig,
    "workers": WorkersConfig,
    "faces": FacesConfig,
    "tracking": TrackingConfig,
    "model": ModelConfig,
    "scoring": ScoringConfig,
    "sources": SourcesConfig,
    "metrics": MetricsConfig,
    "dashboard": DashboardConfig,
}

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _coerce(value: Any, annotation: str, path: str) -> Any:
    """Check ``value`` against a dataclass field annotation written as a string."""
    optional = annotation.endswith("| None")
    base = annotation.replace("| None", "").strip()
    if value is None and optional:
        return None
    expected = {"int": int, "float": float, "str": str, "bool": bool}[base]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and expected is not bool:
        raise ConfigError(f"{path} must be {_TYPE_NAMES[expected]}, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{path} must be {_TYPE_NAMES[expected]}, got {value!r}")
    return value


def _check_rules(value: Any, rules: Mapping, path: str) -> None:
    if value is None:
        return
    if rules.get("ge") is not None and value < rules["ge"]:
        raise ConfigError(f"{path} must be >= {rules['ge']}, got {value!r}")
    if rules.get("gt") is not None and value <= rules["gt"]:
        raise ConfigError(f"{path} must be > {rules['gt']}, got {value!r}")
    if rules.get("le") is not None and value > rules["le"]:
        raise ConfigError(f"{path} must be <= {rules['le']}, got {value!r}")
    if rules.get("lt") is not None and value >= rules["lt"]:
        raise ConfigError(f"{path} must be < {rules['lt']}, got {value!r}")
    if rules.get("choices") and value not in rules["choices"]:
        choices = ", ".join(repr(c) for c in rules["choices"])
        raise ConfigError(f"{path} must be one of {choices}, got {value!r}")


def _build_section(cls: type, raw: Any, path: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a table, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(fields)
        raise ConfigError(f"unknown config key {path}.{unknown[0]} (known keys: {known})")
    values = {}
    for name, value in raw.items():
        key_path = f"{path}.{name}"
        coerced = _coerce(value, str(fields[name].type), key_path)
        _check_rules(coerced, fields[name].metadata, key_path)
        values[name] = coerced
    return cls(**values)


def _validate_redis_url(url: str) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"redis.url must start with redis://, rediss:// or unix://, got {mask_url(url)!r}"
        )


def _validate_endpoint(value: str, path: str) -> None:
    if value == "auto":
        return
    if not value.startswith(("tcp://", "ipc://")):
        raise ConfigError(f"{path} must be \"auto\", tcp://HOST:PORT or ipc://PATH, got {value!r}")


def _build_streams(raw: Any) -> tuple[StreamConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"streams must be an array of tables ([[streams]]), got {raw!r}")
    streams = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        stream = _build_section(StreamConfig, item, f"streams[{i}]")
        problem = stream_id_problem(stream.id)
        if problem:
            raise ConfigError(f"streams[{i}].id: {problem}")
        problem = url_problem(stream.url)
        if problem:
            raise ConfigError(f"streams[{i}].{problem}")
        if stream.id in seen:
            raise ConfigError(f"streams[{i}].id {stream.id!r} is used twice")
        seen.add(stream.id)
        streams.append(stream)
    return tuple(streams)


def config_from_dict(raw: Mapping[str, Any], base_dir: Path = Path(".")) -> Config:
    """Validate a parsed TOML document.

    Raises:
        ConfigError: an unknown key or a bad value; the message names the TOML path.
    """
    unknown = sorted(set(raw) - set(_SECTIONS) - {"streams"})
    if unknown:
        raise ConfigError(
            f"unknown config section {unknown[0]!r} (known: {', '.join([*_SECTIONS, 'streams'])})"
        )
    sections = {name: _build_section(cls, raw.get(name, {}), name) for name, cls in _SECTIONS.items()}
    _validate_redis_url(sections["redis"].url)
    _validate_endpoint(sections["pool"].frames_endpoint, "pool.frames_endpoint")
    _validate_endpoint(sections["pool"].results_endpoint, "pool.results_endpoint")
    if sections["sources"].reconnect_max_s < sections["sources"].reconnect_min_s:
        raise ConfigError(
            "sources.reconnect_max_s must be >= sources.reconnect_min_s, got "
            f"{sections['sources'].reconnect_max_s} < {sections['sources'].reconnect_min_s}"
        )
    streams = _build_streams(raw.get("streams", []))
    return Config(**sections, streams=streams, base_dir=base_dir)


def config_to_dict(config: Config) -> dict[str, Any]:
    """The inverse of :func:`config_from_dict`: plain TOML-shaped data (streams included)."""
    raw: dict[str, Any] = {name: dataclasses.asdict(getattr(config, name)) for name in _SECTIONS}
    raw["streams"] = [dataclasses.asdict(stream) for stream in config.streams]
    return raw


def load_config(path: Path | None = None) -> Config:
    """Load ``path``; with None, ``./config.toml`` if it exists, else the built-in defaults.

    Raises:
        ConfigError: the named file is missing or invalid.
    """
    if path is None:
        if not DEFAULT_CONFIG_PATH.is_file():
            return Config()
        path = DEFAULT_CONFIG_PATH
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return config_from_dict(raw, base_dir=path.resolve().parent)


def with_overrides(config: Config, **sections: Mapping[str, Any]) -> Config:
    """Return ``config`` with some section keys replaced (command-line flags), re-validated."""
    replaced = {}
    for name, changes in sections.items():
        current = getattr(config, name)
        merged = {**dataclasses.asdict(current), **{k: v for k, v in changes.items() if v is not None}}
        replaced[name] = _build_section(type(current), merged, name)
    if "redis" in replaced:
        _validate_redis_url(replaced["redis"].url)
    return dataclasses.replace(config, **replaced)
