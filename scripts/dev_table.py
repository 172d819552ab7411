"""Compare `evaluate` reports side by side: item AUC with its 95 % CI, overall and per family.

    python scripts/dev_table.py NAME=report.json [NAME=report.json ...] [--json out.json]

Families: DFDC (every DFDC dataset), FF++ (FaceForensics++ and its DeepFakeDetection part) and
whole frames (full video frames and videos — what the pipeline sees — rather than pre-cut face
crops). Intervals resample whole groups (videos / people), as `evaluate` does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detector.training.metrics import bootstrap_auc

WHOLE_FRAME_FOLDERS = ("media/dfd_frames/", "media/FaceForensics_readme_examples/",
                       "media/jennjwang_DFDC_frames/")
FAMILIES = {
    "all": lambda item: True,
    "DFDC": lambda item: item["dataset"].startswith("DFDC"),
    "FF++": lambda item: item["dataset"].startswith("FF++"),
    "whole frames": lambda item: item["path"].startswith(WHOLE_FRAME_FOLDERS)
    or item["path"].lower().endswith((".mp4", ".avi", ".mov", ".webm")),
}


def family_rows(report: dict) -> dict[str, dict]:
    rows = {}
    for family, belongs in FAMILIES.items():
        items = [i for i in report["items"] if belongs(i) and i.get("score") is not None]
        labels = [int(i["label"] == "FAKE") for i in items]
        if not items or len(set(labels)) < 2:
            rows[family] = {"items": len(items), "auc": None, "ci95": None}
            continue
        interval = bootstrap_auc(labels, [i["score"] for i in items], [i["group"] for i in items])
        rows[family] = {"items": len(items), "real": labels.count(0), "fake": labels.count(1),
                        "auc": interval.value, "ci95": [interval.low, interval.high]}
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="NAME=path/to/report.json")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args()
    table = {}
    for spec in args.reports:
        name, _, path = spec.partition("=")
        table[name] = family_rows(json.loads(Path(path).read_text()))
    header = "| model | " + " | ".join(f"{f} item AUC (95 % CI)" for f in FAMILIES) + " |"
    print(header)
    print("|" + "---|" * (len(FAMILIES) + 1))
    for name, rows in table.items():
        cells = []
        for family in FAMILIES:
            row = rows[family]
            cells.append("n/a" if row["auc"] is None else
                         f"{row['auc']:.3f} ({row['ci95'][0]:.2f}–{row['ci95'][1]:.2f}), n={row['items']}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
