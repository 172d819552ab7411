"""Put a new version's `evaluate` reports into a model's metrics file, keeping the old ones.

    python scripts/card_metrics.py models/sbi_b0.metrics.json \\
        --dev reports/dev.json --holdout reports/holdout_v3.json

The file keeps the shipped version's reports under ``dev`` and ``holdout_people_v3_pseudo_fakes``
(without the per-item rows, which name research files) and every earlier version under
``previous_<version>``, newest first. The version comes from each report's ``model`` block; both
reports must name the same one, and a version already in the file is refused rather than
overwritten.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEV = "dev"
HOLDOUT = "holdout_people_v3_pseudo_fakes"


def summary(report: dict) -> dict:
    """The report without its per-item rows."""
    return {key: value for key, value in report.items() if key != "items"}


def previous_key(version: str) -> str:
    return "previous_" + version.replace(".", "_")


def versions_in(metrics: dict) -> set[str]:
    found = {metrics[DEV]["model"]["version"]} if DEV in metrics else set()
    for key, value in metrics.items():
        if key.startswith("previous_") and isinstance(value, dict) and DEV in value:
            found.add(value[DEV]["model"]["version"])
    return found


def add_version(metrics: dict, dev: dict, holdout: dict) -> dict:
    """A new metrics dict: the reports as current, the current one moved to ``previous_*``."""
    version = dev["model"]["version"]
    if holdout["model"]["version"] != version:
        raise ValueError(f"the dev report is for version {version} and the holdout report for "
                         f"{holdout['model']['version']}")
    if version in versions_in(metrics):
        raise ValueError(f"version {version} is already in the metrics file")
    updated = {DEV: summary(dev), HOLDOUT: summary(holdout)}
    if DEV in metrics:
        shipped = metrics[DEV]["model"]["version"]
        updated[previous_key(shipped)] = {DEV: metrics[DEV], HOLDOUT: metrics.get(HOLDOUT)}
    for key, value in metrics.items():
        if key not in (DEV, HOLDOUT):
            updated[key] = value
    return updated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, help="models/<name>.metrics.json (created if absent)")
    parser.add_argument("--dev", type=Path, required=True, help="evaluate report on dev")
    parser.add_argument("--holdout", type=Path, required=True,
                        help="evaluate report on the held-out pseudo-fake pairs")
    args = parser.parse_args()
    metrics = json.loads(args.metrics.read_text()) if args.metrics.exists() else {}
    try:
        updated = add_version(metrics, json.loads(args.dev.read_text()),
                              json.loads(args.holdout.read_text()))
    except ValueError as error:
        parser.exit(2, f"card_metrics: {error}.\n")
    args.metrics.write_text(json.dumps(updated, indent=2) + "\n")
    print(f"{args.metrics}: version {updated[DEV]['model']['version']}, "
          f"dev item AUC {updated[DEV]['metrics']['item_auc']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
