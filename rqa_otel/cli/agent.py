"""``rqa-otel agent``: the host agent (supervisor and monitoring worker)."""

from __future__ import annotations

import argparse

from rqa_otel.agent.supervisor import run_agent
from rqa_otel.cli.arguments import port_or_off, positive_seconds


def add_agent_parser(commands) -> None:
    agent = commands.add_parser(
        "agent",
        help="watch every strategy process on this host: resources, quotas, health",
        description=(
            "The host agent (one per host and run directory). A supervisor keeps a monitoring worker running "
            "(restarted at once when it dies, with backoff if it keeps dying); the worker samples every process "
            "that rqa_otel.setup() registered in the run directory, exports per-strategy CPU, memory and GPU "
            "gauges, and turns quota breaches into alerts. Its state lives in the run directory, so a "
            "restarted agent carries on where it stopped."
        ),
        epilog="example: rqa-otel agent --http-port 9464 --interval 5",
    )
    agent.add_argument("--http-port", type=port_or_off, metavar="PORT",
                       help="serve /health, /ready and /metrics on this port (default agent.http_port; 0: off)")
    agent.add_argument("--interval", type=positive_seconds, metavar="S",
                       help="seconds between collections (default resources.interval_s)")
    agent.add_argument("--run-dir", metavar="DIR", help="the run directory (default registry.dir)")
    agent.add_argument("--settings", metavar="FILE", help="settings file (else RQA_SETTINGS_FILE)")
    agent.set_defaults(handler=agent_command)


def agent_command(args: argparse.Namespace) -> int:
    return run_agent(args.settings, args.http_port, args.interval, args.run_dir)
