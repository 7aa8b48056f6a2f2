"""The ``rqa-otel`` command: one module per subcommand, assembled here."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from rqa_otel.cli.run import add_run_parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `rqa-otel run` builds its own parser only: the other commands' modules
    # load the telemetry pipeline, and launching a program should cost no
    # more than an interpreter start.
    parser = _run_parser() if argv[:1] == ["run"] else _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return args.handler(args)


def _top_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="rqa-otel",
        description="Telemetry for RQA2025 strategy processes: OpenTelemetry traces, metrics and logs.",
    )


def _run_parser() -> argparse.ArgumentParser:
    parser = _top_parser()
    add_run_parser(parser.add_subparsers(title="commands", metavar="COMMAND"))
    return parser


def _parser() -> argparse.ArgumentParser:
    from rqa_otel.cli.agent import add_agent_parser
    from rqa_otel.cli.demo import add_demo_parser
    from rqa_otel.cli.lp import add_lp_parser
    from rqa_otel.cli.replay import add_replay_parser
    from rqa_otel.cli.vault import add_vault_parser
    from rqa_otel.telemetry import VERSION

    parser = _top_parser()
    parser.add_argument("--version", action="version", version=f"rqa-otel {VERSION}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_run_parser(commands)
    add_lp_parser(commands)
    add_replay_parser(commands)
    add_vault_parser(commands)
    add_demo_parser(commands)
    add_agent_parser(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
