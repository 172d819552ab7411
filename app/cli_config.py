"""The one config loader of every subcommand: ``--config`` read once, command-line flags laid over
the sections they name."""

from __future__ import annotations

import argparse
from pathlib import Path

from detector.config import Config, load_config, with_overrides


def load_cli_config(args: argparse.Namespace) -> Config:
    """``config.toml`` (or ``--config``) with the flags a subcommand has: ``--redis-url`` →
    redis.url, ``--workers`` → workers.count, ``--stride`` → sampling.stride, ``--model`` →
    model.name, ``--yunet-model`` → faces.yunet_model (made absolute), ``--runtime`` →
    workers.runtime.

    Raises:
        ConfigError: the file or a flag's value is invalid (the message names the TOML path).
    """
    config = load_config(args.config)
    overrides: dict[str, dict] = {}
    if getattr(args, "redis_url", None):
        overrides["redis"] = {"url": args.redis_url}
    workers: dict = {}
    if getattr(args, "workers", None) is not None:
        workers["count"] = args.workers
    if getattr(args, "runtime", None):
        workers["runtime"] = args.runtime
    if workers:
        overrides["workers"] = workers
    if getattr(args, "stride", None) is not None:
        overrides["sampling"] = {"stride": args.stride}
    if getattr(args, "model", None):
        overrides["model"] = {"name": args.model}
    if getattr(args, "yunet_model", None):
        overrides["faces"] = {"yunet_model": str(Path(args.yunet_model).resolve())}
    return with_overrides(config, **overrides) if overrides else config
