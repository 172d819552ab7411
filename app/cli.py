"""``deepfake-detector``: subcommands that parse arguments and call typed functions."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from app.cli_config import load_cli_config
from detector.config import Config
from detector.errors import ConfigError, DetectorError, RedisUnavailableError
from detector.logs import LOG_FORMAT, EscapingFormatter, stderr_console

log = logging.getLogger("deepfake_detector")

EPILOG = """\
Configuration: --config PATH (default ./config.toml if present, else built-in defaults).
Redis: --redis-url redis://HOST:PORT/DB uses an existing Redis; without it, `run` and `replay`
start an embedded redis-server on 127.0.0.1:6390 and `watch` looks for it there (if 6390 was
taken, the server moves to a free port and `watch`/`attach`/`dashboard` on this machine follow it).
"""


def _common(parser: argparse.ArgumentParser, redis: bool = True) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="config file (default: ./config.toml if present, else built-in defaults)")
    if redis:
        parser.add_argument("--redis-url", default=None,
                            help="use this Redis (redis://HOST:PORT/DB) instead of redis.url / "
                                 "the embedded one")
    add_verbosity(parser)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-v`` / ``-q``: logs go to stderr at WARNING by default, INFO with -v, DEBUG with -vv,
    errors only with -q."""
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (-v info, -vv debug; default: warnings)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="log errors only")


_load = load_cli_config


# --- handlers -------------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    from app.replay import run_replay

    config = _load(args)
    return run_replay(config, args.files, ids=args.id, redis_url=config.redis.url or None,
                      report_path=args.report, csv_path=args.csv,
                      frames_csv_path=args.frames_csv, json_output=args.json,
                      show_progress=False if args.no_progress else None,
                      console=stderr_console())


def cmd_run(args: argparse.Namespace) -> int:
    from app.run import run_service

    config = _load(args)
    return run_service(config, exit_when_done=args.exit_when_done, extra_urls=args.url or [])


def _redis_url(config: Config) -> str:
    from detector.embedded_redis import client_url

    return client_url(config.redis)


def cmd_watch(args: argparse.Namespace) -> int:
    from consumers.watch import run_watch

    config = _load(args)
    return run_watch(_redis_url(config), config.redis.prefix, once=args.once,
                     duration_s=args.duration, socket_timeout_s=config.redis.socket_timeout_s,
                     as_json=args.json)


def cmd_worker(args: argparse.Namespace) -> int:
    from detector.worker import results_endpoint_for, run_remote_worker

    config = _load(args)
    results = args.results or results_endpoint_for(args.connect)
    curve = None
    if args.server_key or args.key:
        if not (args.server_key and args.key):
            raise ConfigError("worker: --server-key and --key go together (the files "
                              "`deepfake-detector keys` made: server.key and workers/NAME.key_secret)")
        from detector.curve import load_worker_keys

        curve = load_worker_keys(args.server_key, args.key)
    else:
        from detector.curve import is_loopback_endpoint

        if not (is_loopback_endpoint(args.connect) and is_loopback_endpoint(results)):
            log.warning("INSECURE: connecting to %s without CURVE keys (--server-key, --key); "
                        "frames and results cross the network in clear", args.connect)
    return run_remote_worker(config, args.connect, results, curve)


def cmd_keys(args: argparse.Namespace) -> int:
    from detector.curve import make_keys

    written = make_keys(args.dir, args.worker or ["worker1"])
    for path in written:
        print(path)
    print(f"Service host: set pool.keys_dir = \"{args.dir}\" (it reads server.key_secret and "
          "the public keys in authorized/).\nEach worker host: copy server.key and its own "
          "workers/NAME.key_secret, then run `deepfake-detector worker --connect tcp://HOST:PORT "
          "--server-key server.key --key NAME.key_secret`. Keep the .key_secret files private.")
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    from app.control import send_request
    from detector.embedded_redis import connect
    from detector.redis_keys import RedisKeys
    from detector.stream_urls import default_stream_id, service_target
    from detector.url_mask import mask_url
    from producers.factory import check_source

    config = _load(args)
    url = service_target(args.url)  # a file made absolute: the service may run elsewhere
    check_source(url)  # a missing or unreadable file is refused here, before any request
    client = connect(_redis_url(config), config.redis.socket_timeout_s)
    stream_id = args.id or default_stream_id(url)
    reply = send_request(client, RedisKeys(config.redis.prefix), "attach", stream_id,
                         url=url, stride=args.stride, timeout_s=args.timeout)
    log.debug("attach %s → %s", mask_url(url), reply)
    return _print_reply(reply)


def _print_reply(reply: dict) -> int:
    """The service's answer: its message on stdout, or a refusal on stderr and exit 1."""
    if reply.get("ok"):
        print(reply["message"])
        return 0
    print(f"error: {reply['message']}", file=sys.stderr)
    return 1


def cmd_detach(args: argparse.Namespace) -> int:
    from app.control import send_request
    from detector.embedded_redis import connect
    from detector.redis_keys import RedisKeys

    config = _load(args)
    client = connect(_redis_url(config), config.redis.socket_timeout_s)
    reply = send_request(client, RedisKeys(config.redis.prefix), "detach", args.stream_id,
                         timeout_s=args.timeout)
    return _print_reply(reply)


def cmd_forget(args: argparse.Namespace) -> int:
    from app.forget import forget_streams
    from detector.embedded_redis import connect
    from detector.redis_keys import RedisKeys

    config = _load(args)
    client = connect(_redis_url(config), config.redis.socket_timeout_s)
    for stream_id in forget_streams(client, RedisKeys(config.redis.prefix), args.stream_ids):
        print(f"forgot {stream_id}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    from app.forget import clear_streams
    from detector.embedded_redis import connect
    from detector.redis_keys import RedisKeys

    config = _load(args)
    client = connect(_redis_url(config), config.redis.socket_timeout_s)
    cleared = clear_streams(client, RedisKeys(config.redis.prefix))
    print(f"forgot {len(cleared)} ended stream(s)" + (f": {', '.join(cleared)}" if cleared else ""))
    return 0


def cmd_streams(args: argparse.Namespace) -> int:
    from consumers.watch import run_watch

    config = _load(args)
    return run_watch(_redis_url(config), config.redis.prefix, once=True,
                     socket_timeout_s=config.redis.socket_timeout_s, name="streams",
                     as_json=args.json)


def cmd_fetch_yunet(args: argparse.Namespace) -> int:
    from app.fetch import fetch_yunet

    config = _load(args)
    target = config.resolve_path(config.faces.yunet_model)
    return fetch_yunet(target, source=args.source)


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    config = _load(args)
    return run_demo(config, frames=args.frames)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from app.dashboard import run_dashboard

    config = _load(args)
    return run_dashboard(config, _redis_url(config), host=args.host, port=args.port)


# --- parser ---------------------------------------------------------------------------------
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deepfake-detector")
    except PackageNotFoundError:   # run from a checkout that was not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-detector",
        description="Streaming deepfake detector: video files, webcams and RTSP cameras → "
                    "face crops → EfficientNet-B0 → per-stream fake scores in Redis.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("replay", help="score video files losslessly and write a report",
                       description="Score video files through the worker pool (every sampled frame, "
                                   "none dropped) and publish to Redis. The summary table (or "
                                   "--json) goes to stdout; progress and logs go to stderr. "
                                   "Output paths are checked before anything is scored.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("files", nargs="+", help="video files (.mp4 .webm .avi .mov .mkv …)")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--csv", type=Path, help="also write a CSV here, one row per file")
    p.add_argument("--frames-csv", type=Path, help="also write a CSV here, one row per scored frame")
    p.add_argument("--json", action="store_true",
                   help="print the JSON report to stdout instead of the summary table")
    p.add_argument("--id", action="append",
                   help="stream id, once per file in order (default: file name without extension)")
    p.add_argument("--workers", type=int, help="worker processes (default workers.count)")
    p.add_argument("--stride", type=int, help="score every Nth frame (default sampling.stride = 4)")
    p.add_argument("--model", help="model name (card models/NAME.toml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("run", help="the service: config.toml's streams, worker pool, Redis",
                       description="Run the service until Ctrl-C: streams from config.toml "
                                   "([[streams]]) and from `attach`, a worker pool and Redis.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--url", action="append", help="also start this stream (file, rtsp://, webcam:N); repeatable")
    p.add_argument("--workers", type=int, help="worker processes (default workers.count)")
    p.add_argument("--model", help="model name (card models/NAME.toml)")
    p.add_argument("--exit-when-done", action="store_true",
                   help="exit once every stream has finished (files) instead of waiting for Ctrl-C")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("watch", help="live terminal table of every stream's rolling score",
                       description="Show every stream of the service's Redis with its status, "
                                   "rolling score, verdict, fps, drops and latency, updated as "
                                   "scores arrive, until Ctrl-C. When stdout is not a terminal, "
                                   "print one line per update instead (JSON lines with --json).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per update and line")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("worker", help="join a worker pool running on another host",
                       description="Pull frames from a service's tcp:// frames endpoint and push "
                                   "results back (pool.frames_endpoint must be tcp:// on that host).")
    _common(p)
    p.add_argument("--connect", required=True, help="the service's frames endpoint, tcp://HOST:PORT")
    p.add_argument("--results", help="its results endpoint (default: same host, port + 1)")
    p.add_argument("--server-key", type=Path, help="the service's public key file (server.key from `keys`)")
    p.add_argument("--key", type=Path, help="this worker's key pair (workers/NAME.key_secret from `keys`)")
    p.add_argument("--model", help="model name (card models/NAME.toml)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("keys", help="make CURVE keys for the service and its remote workers",
                       description="Make the service's key pair (once) and a key pair per worker "
                                   "name in DIR (docs/remote-workers.md). Existing keys are never "
                                   "overwritten.")
    p.add_argument("--dir", type=Path, default=Path("keys"), help="key folder (default ./keys)")
    p.add_argument("--worker", action="append", metavar="NAME",
                   help="a worker name; repeatable (default: worker1)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("attach", help="add a stream to a running service",
                       description="Ask a running `deepfake-detector run` (through Redis) to start "
                                   "scoring a video file, an rtsp:// camera or a webcam. A file "
                                   "that does not exist or cannot be opened is refused at once.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("url", help="file path, rtsp://… URL or webcam:N")
    p.add_argument("--id", help="stream id (default: file name without extension)")
    p.add_argument("--stride", type=int, help="score every Nth frame")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the service")
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("detach", help="stop a stream of a running service",
                       description="Ask a running service to stop a stream and remove it from the "
                                   "stream list; its score history stays in Redis for "
                                   "redis.finished_ttl_s (default 1 h).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("stream_id", help="the stream's id, as `streams` lists it")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the service")
    p.set_defaults(func=cmd_detach)

    p = sub.add_parser("streams", help="list streams with status, score, fps, drops, latency",
                       description="Print the service's streams once (the table `watch` keeps "
                                   "current) and exit; --json prints one JSON object per stream.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--json", action="store_true", help="one JSON object per stream and line")
    p.set_defaults(func=cmd_streams)

    p = sub.add_parser("forget", help="remove ended streams and their history from the list",
                       description="Remove streams from the stream list and delete their score "
                                   "history, latest score and thumbnail in Redis. A stream a "
                                   "running service still reads is refused (detach it). Ended "
                                   "streams also leave by themselves after redis.finished_ttl_s.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("stream_ids", nargs="+", metavar="stream_id",
                   help="the streams' ids, as `streams` lists them")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("clear", help="remove every ended stream and its history from the list",
                       description="Forget every finished, failed or stopped stream (with no "
                                   "service running: every stream) and its history in Redis.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.set_defaults(func=cmd_clear)

    p = sub.add_parser("fetch-yunet", help="download the YuNet face detector to faces.yunet_model",
                       description="Download OpenCV's YuNet face detector (the detector the model "
                                   "was trained with) to faces.yunet_model; without it the "
                                   "service falls back to OpenCV's Haar cascade.")
    _common(p, redis=False)
    p.add_argument("--source", help="copy from this local file or URL instead of the OpenCV model zoo")
    p.set_defaults(func=cmd_fetch_yunet)

    p = sub.add_parser("demo", help="score a generated demo clip end to end and show scores as they arrive",
                       description="Write a short clip of a real face, score it through the whole "
                                   "pipeline (embedded Redis, worker pool, collector) and print "
                                   "each frame's score in frame order as it arrives.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--frames", type=int, default=240, help="length of the demo clip in frames")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("dashboard", help="web dashboard: live scores, attach/detach, uploads with Grad-CAM",
                       description="Serve the Plotly Dash dashboard (docs/dashboard.md).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--host", help="interface to listen on (default dashboard.host = 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default dashboard.port = 8050)")
    p.set_defaults(func=cmd_dashboard)

    from app import model_commands

    model_commands.register(sub)
    return parser




def log_level(verbosity: int, quiet: bool) -> int:
    """WARNING by default, INFO with -v, DEBUG with -vv, ERROR with -q."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)


def _setup_logging(level: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=stderr_console(), show_path=False,
                                               rich_tracebacks=False, markup=False)
        handler.setFormatter(EscapingFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _setup_logging(log_level(getattr(args, "verbose", 0), getattr(args, "quiet", False)))
    try:
        return args.func(args)
    except RedisUnavailableError as exc:
        message = str(exc)
        if args.command in READERS and not getattr(args, "redis_url", None):
            message = (f"{message.rstrip('.')} (is `deepfake-detector run` running? It starts "
                       "the embedded Redis; or pass --redis-url)")
        print(f"error: {message}", file=sys.stderr)
        return 2
    except DetectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `… | head` closed stdout: stop quietly, as cat and grep do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


# Commands that read the service's Redis rather than start one.
READERS = ("watch", "streams", "attach", "detach", "forget", "clear", "dashboard")


if __name__ == "__main__":
    raise SystemExit(main())
