"""``rqa-otel report``: one run as one self-contained HTML file."""

from __future__ import annotations

import argparse
import os
import sqlite3

from rqa_otel.cli.arguments import fail
from rqa_otel.view import UnknownRun, write_report

DEFAULT_DIRECTORY = "./rqa-telemetry"


def add_report_parser(commands) -> None:
    report = commands.add_parser(
        "report",
        help="write one run's page as a self-contained HTML file",
        description="Write the run page of RUN_ID (or a unique prefix of it) as one HTML file that works offline: "
        "summary, equity, drawdown, cash and positions, trades, signals, trace, alerts and logs.",
        epilog="example: rqa-otel report 684d8287 -o run.html",
    )
    report.add_argument("run_id", metavar="RUN_ID")
    report.add_argument("-o", "--output", required=True, metavar="FILE.html", help="the HTML file to write")
    report.add_argument("--dir", default=DEFAULT_DIRECTORY, metavar="DIR",
                        help=f"telemetry directory (default {DEFAULT_DIRECTORY})")
    report.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.dir):
        return fail(f"report: telemetry directory {args.dir} does not exist (see --dir)")
    try:
        run_id = write_report(args.dir, args.run_id, args.output)
    except UnknownRun as exc:
        return fail(f"report: {exc}")
    except sqlite3.DatabaseError as exc:
        return fail(f"report: the trade journal in {args.dir} cannot be read: {exc}")
    except OSError as exc:
        return fail(f"report: cannot write {args.output}: {exc.strerror}")
    print(f"rqa-otel report: run {run_id} -> {args.output}")
    return 0
