"""Compare `evaluate` reports side by side: item AUC with its 95 % CI, overall and per family.

    python scripts/dev_table.py NAME=report.json [NAME=report.json ...] [--json out.json]

Families: DFDC (every DFDC dataset), FF++ (FaceForensics++ and its DeepFakeDetection part) and
whole frames (full video frames and videos — what the pipeline sees — rather than pre-cut face
crops). Intervals resample whole groups (videos / people), as `evaluate` does.

With two reports or more, a second table gives each later report's AUC minus the first's on the
items both scored, with a paired interval (both scored on the same resampled groups): far
narrower than the two intervals side by side, it is the one to read when choosing between them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detector.training.metrics import bootstrap_auc, bootstrap_auc_difference

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


def paired_rows(reference: dict, report: dict) -> dict[str, dict]:
    """``report`` minus ``reference``, per family, on the items both scored (matched by path)."""
    scored = {i["path"]: i["score"] for i in report["items"] if i.get("score") is not None}
    rows = {}
    for family, belongs in FAMILIES.items():
        items = [i for i in reference["items"]
                 if belongs(i) and i.get("score") is not None and i["path"] in scored]
        labels = [int(i["label"] == "FAKE") for i in items]
        if len(set(labels)) < 2:
            rows[family] = {"items": len(items), "difference": None, "ci95": None}
            continue
        interval = bootstrap_auc_difference(labels, [i["score"] for i in items],
                                            [scored[i["path"]] for i in items],
                                            [i["group"] for i in items])
        rows[family] = {"items": len(items), "difference": interval.value,
                        "ci95": [interval.low, interval.high]}
    return rows


def print_table(corner: str, heading: str, table: dict[str, dict], cell) -> None:
    """One Markdown row per model, one column per family; ``cell(row)`` for a scored family."""
    print(f"| {corner} | " + " | ".join(f"{f} {heading}" for f in FAMILIES) + " |")
    print("|" + "---|" * (len(FAMILIES) + 1))
    for name, rows in table.items():
        cells = ["n/a" if rows[f]["ci95"] is None else f"{cell(rows[f])}, n={rows[f]['items']}"
                 for f in FAMILIES]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="NAME=path/to/report.json")
    parser.add_argument("--json", type=Path, default=None, help="also write the tables as JSON")
    args = parser.parse_args()
    reports = {}
    for spec in args.reports:
        name, _, path = spec.partition("=")
        reports[name] = json.loads(Path(path).read_text())
    table = {name: family_rows(report) for name, report in reports.items()}
    print_table("model", "item AUC (95 % CI)", table,
                lambda r: f"{r['auc']:.3f} ({r['ci95'][0]:.2f}–{r['ci95'][1]:.2f})")
    first, *others = reports
    paired = {name: paired_rows(reports[first], reports[name]) for name in others}
    if paired:
        print()
        print_table(f"minus {first}", "(paired 95 % CI)", paired,
                    lambda r: f"{r['difference']:+.3f} ({r['ci95'][0]:+.3f} to {r['ci95'][1]:+.3f})")
    if args.json:
        args.json.write_text(json.dumps({"reports": table, "minus_first": paired}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
