"""The ``rqa-otel`` command: one module per subcommand, assembled here."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing to launch a program
if TYPE_CHECKING:
    import argparse
    from typing import Sequence

# argparse and the subcommands are imported in the functions below: a
# program started by `rqa-otel run` imports this package for its summary
# line (rqa_otel.cli.run.RunSummary) and needs no parser.


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
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every command's last resort: one line, never a traceback
        from rqa_otel.config.model import SettingsError
        from rqa_otel.config.vault import VaultError

        command = args.handler.__module__.rsplit(".", 1)[-1]
        settings = isinstance(exc, (SettingsError, VaultError))
        what = "" if settings or isinstance(exc, OSError) else f"unexpected {type(exc).__name__}: "
        print(f"rqa-otel {command}: {what}{' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 2 if settings else 1


def _top_parser() -> argparse.ArgumentParser:
    import argparse

    return argparse.ArgumentParser(
        prog="rqa-otel",
        description="Telemetry for RQA2025 strategy processes: OpenTelemetry traces, metrics and logs.",
    )


def _run_parser() -> argparse.ArgumentParser:
    from rqa_otel.cli.run import add_run_parser

    parser = _top_parser()
    add_run_parser(parser.add_subparsers(title="commands", metavar="COMMAND"))
    return parser


def _parser() -> argparse.ArgumentParser:
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

    parser = _top_parser()
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
