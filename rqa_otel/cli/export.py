"""``rqa-otel export``: a run's trades and equity series for notebooks."""

from __future__ import annotations

import argparse
import os
import sqlite3

from rqa_otel.cli.arguments import fail
from rqa_otel.view import UnknownRun, export_run
from rqa_otel.view.export import FORMATS, ExportError

DEFAULT_DIRECTORY = "./rqa-telemetry"


def add_export_parser(commands) -> None:
    export = commands.add_parser(
        "export",
        help="write one run's trades and equity series as CSV or Parquet",
        description="Write trades.csv and equity.csv (or .parquet, with pyarrow installed) of RUN_ID (or a unique "
        "prefix of it) from the trade journal; docs/journal.md describes the columns.",
        epilog="example: rqa-otel export 684d8287 --format csv -o ./run-684d",
    )
    export.add_argument("run_id", metavar="RUN_ID")
    export.add_argument("--format", default="csv", help=f"{' or '.join(FORMATS)} (default csv)")
    export.add_argument("-o", "--output", default=".", metavar="DIR", help="directory to write into (default .)")
    export.add_argument("--dir", default=DEFAULT_DIRECTORY, metavar="DIR",
                        help=f"telemetry directory (default {DEFAULT_DIRECTORY})")
    export.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.dir):
        return fail(f"export: telemetry directory {args.dir} does not exist (see --dir)")
    try:
        written = export_run(args.dir, args.run_id, args.output, args.format)
    except (UnknownRun, ExportError) as exc:
        return fail(f"export: {exc}")
    except sqlite3.DatabaseError as exc:
        return fail(f"export: the trade journal in {args.dir} cannot be read: {exc}")
    except OSError as exc:
        return fail(f"export: cannot write under {args.output}: {exc.strerror}")
    print(f"rqa-otel export: {written['trades']} {written['equity']}")
    return 0
