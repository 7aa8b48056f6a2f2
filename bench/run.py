"""Benchmarks: the project and its anchor, measured side by side in one run.

    python bench/run.py [NAME ...] [--json] [--repeat N]

Each benchmark returns one row {"name", "unit", "project", "anchor",
"anchor_name", "ratio"} (plus extra keys of its own). Project and anchor runs
are interleaved and repeated, and the median is quoted, because this machine
is shared and noisy. ``ratio`` is oriented so that higher is better for the
project.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Callable

BENCHMARKS: dict[str, Callable[[int], dict]] = {}


def benchmark(function: Callable[[int], dict]) -> Callable[[int], dict]:
    BENCHMARKS[function.__name__] = function
    return function


def _demo_json(*arguments: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "rqa_otel.cli", "demo", "--json", "--quiet", *arguments],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(completed.stdout)


@benchmark
def demo_overhead(repeat: int) -> dict:
    """Wall time of the demo backtest plus its final flush, with full telemetry
    to the file exporter, against the same backtest with telemetry off.
    Each run is a fresh process; setup() time is reported apart (setup_s)."""
    project, anchor, setup = [], [], []
    with tempfile.TemporaryDirectory() as directory:
        for index in range(repeat):
            run = _demo_json("--output", os.path.join(directory, str(index)))
            project.append(run["wall_s"])
            setup.append(run["setup_s"])
            anchor.append(_demo_json("--no-telemetry")["wall_s"])
    project_s, anchor_s = statistics.median(project), statistics.median(anchor)
    return {
        "name": "demo_overhead",
        "unit": "s",
        "project": round(project_s, 4),
        "anchor": round(anchor_s, 4),
        "anchor_name": "demo backtest with telemetry off",
        "ratio": round(anchor_s / project_s, 3),
        "setup_s": round(statistics.median(setup), 4),
        "repeat": repeat,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (all when none): {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", action="store_true", help="print one JSON list of rows")
    parser.add_argument("--repeat", type=int, default=7, help="repetitions of project and anchor (default 7)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    rows = []
    for name in args.names or list(BENCHMARKS):
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        rows.append(BENCHMARKS[name](args.repeat))
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'name':<20} {'unit':<6} {'project':>10} {'anchor':>10} {'ratio':>7}  anchor")
        for row in rows:
            print(
                f"{row['name']:<20} {row['unit']:<6} {row['project']:>10} {row['anchor']:>10} "
                f"{row['ratio']:>7}  {row['anchor_name']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
