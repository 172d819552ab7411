"""Before/after table of two ``bench/live.py`` runs made back to back on the same machine.

    python bench/live_compare.py bench/live_before.json bench/live.json --json bench/live_compare.json

Per stream count present in both runs: scored frames/s, drops, p95 latency, the workers' and the
service's CPU ms per frame, each worker stage's mean ms, and after/before ratios. The load each
run was measured under (the load average before it and the CPU taken by other processes) is
printed beside it: compare runs only when that load is alike.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _ratio(before, after) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return after / before


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def compare(before: dict, after: dict) -> dict:
    """Rows by stream count, with the numbers of both runs and their ratios."""
    by_n = {step["streams"]: step for step in before["steps"]}
    rows = []
    for step in after["steps"]:
        old = by_n.get(step["streams"])
        if old is None:
            continue
        stages = list(dict.fromkeys([*old["stage_mean_ms"], *step["stage_mean_ms"]]))
        row = {"streams": step["streams"], "metrics": {}}
        pairs = {
            "scored_fps": (old["scored_fps"], step["scored_fps"]),
            "drop_fraction": (old["drop_fraction"], step["drop_fraction"]),
            "latency_p95_ms": (old["latency_p95_ms"], step["latency_p95_ms"]),
            "workers_cpu_ms_per_scored_frame": (old.get("workers_cpu_ms_per_scored_frame"),
                                                step.get("workers_cpu_ms_per_scored_frame")),
            "service_cpu_ms_per_read_frame": (old.get("service_cpu_ms_per_read_frame"),
                                              step.get("service_cpu_ms_per_read_frame")),
            **{f"{name}_ms": (old["stage_mean_ms"].get(name), step["stage_mean_ms"].get(name))
               for name in stages},
            "other_cores": (old["cpu"].get("other_cores"), step["cpu"].get("other_cores")),
        }
        for name, (a, b) in pairs.items():
            row["metrics"][name] = {"before": a, "after": b, "ratio": _ratio(a, b)}
        rows.append(row)
    return {
        "before": {"label": before.get("label", ""), "machine": before["machine"],
                   "max_streams_within_limits": before["max_streams_within_limits"]},
        "after": {"label": after.get("label", ""), "machine": after["machine"],
                  "max_streams_within_limits": after["max_streams_within_limits"]},
        "rows": rows,
    }


def print_comparison(result: dict) -> None:
    for side in ("before", "after"):
        info = result[side]
        load = " ".join(f"{v:.2f}" for v in info["machine"].get("load_avg_at_start", []))
        print(f"{side:>6}: {info['label'] or '(no label)'}; max streams within limits "
              f"{info['max_streams_within_limits']}; load average at start {load or '-'}")
    for row in result["rows"]:
        print(f"\n{row['streams']} streams")
        print(f"  {'metric':<34} {'before':>9} {'after':>9} {'after/before':>12}")
        for name, m in row["metrics"].items():
            spec = ".3f" if name == "drop_fraction" else ".2f"
            print(f"  {name:<34} {_fmt(m['before'], spec):>9} {_fmt(m['after'], spec):>9} "
                  f"{_fmt(m['ratio'], '.2f'):>12}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="write the comparison here")
    args = parser.parse_args(argv)
    try:
        before, after = (json.loads(p.read_text()) for p in (args.before, args.after))
    except (OSError, json.JSONDecodeError) as exc:
        parser.exit(2, f"cannot read a bench/live.py result: {exc}\n")
    result = compare(before, after)
    if not result["rows"]:
        parser.exit(2, "the two runs share no stream count to compare\n")
    print_comparison(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
