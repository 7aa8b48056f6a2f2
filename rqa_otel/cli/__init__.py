"""The ``rqa-otel`` command: one module per subcommand, assembled here."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from rqa_otel.cli.agent import add_agent_parser
from rqa_otel.cli.demo import add_demo_parser
from rqa_otel.cli.export import add_export_parser
from rqa_otel.cli.lp import add_lp_parser
from rqa_otel.cli.replay import add_replay_parser
from rqa_otel.cli.report import add_report_parser
from rqa_otel.cli.run import add_run_parser
from rqa_otel.cli.vault import add_vault_parser
from rqa_otel.cli.view import add_view_parser
from rqa_otel.telemetry import VERSION


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return args.handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rqa-otel",
        description="Telemetry for RQA2025 strategy processes: OpenTelemetry traces, metrics and logs.",
    )
    parser.add_argument("--version", action="version", version=f"rqa-otel {VERSION}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_run_parser(commands)
    add_lp_parser(commands)
    add_replay_parser(commands)
    add_vault_parser(commands)
    add_demo_parser(commands)
    add_agent_parser(commands)
    add_view_parser(commands)
    add_report_parser(commands)
    add_export_parser(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
