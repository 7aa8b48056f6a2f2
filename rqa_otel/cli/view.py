"""``rqa-otel view``: serve the local web view of a telemetry directory."""

from __future__ import annotations

import argparse
import sys
import webbrowser

from rqa_otel.cli.arguments import fail
from rqa_otel.view import ViewServer
from rqa_otel.view.server import LOOPBACK

DEFAULT_DIRECTORY = "./rqa-telemetry"
DEFAULT_PORT = 8050


def tcp_port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0..65535 (0: any free port), got {text}")
    return int(text)


def add_view_parser(commands) -> None:
    view = commands.add_parser(
        "view",
        help="a local web view of the telemetry files and the trade journal",
        description=(
            "Serve a web view of DIR (the embedded default's telemetry directory: traces, metrics and logs "
            "JSONL, trades.db) on 127.0.0.1: runs, each run's equity, trades, signals, trace, alerts and "
            "logs, strategy resources against quotas, and the export pipeline. Pages update while a "
            "backtest writes. No authentication: it binds to loopback unless --host says otherwise."
        ),
        epilog="example: rqa-otel view ./rqa-telemetry --open",
    )
    view.add_argument("directory", nargs="?", default=DEFAULT_DIRECTORY, metavar="DIR",
                      help=f"telemetry directory (default {DEFAULT_DIRECTORY})")
    view.add_argument("--port", type=tcp_port, default=DEFAULT_PORT,
                      help=f"TCP port (default {DEFAULT_PORT}; 0: any free port)")
    view.add_argument("--host", default="127.0.0.1",
                      help="address to bind (default 127.0.0.1); anything else exposes the view, which has no "
                      "authentication, to the network")
    view.add_argument("--open", action="store_true", help="open the view in the default web browser")
    view.set_defaults(handler=view_command)


def view_command(args: argparse.Namespace) -> int:
    if args.host not in LOOPBACK:
        print(f"rqa-otel: warning: view bound to {args.host}: anyone who can reach this address can read the "
              "telemetry and the trade journal; the view has no authentication", file=sys.stderr)
    try:
        server = ViewServer(args.directory, args.host, args.port)
    except OSError as exc:
        reason = "is in use" if exc.errno in (98, 48) else f"cannot be bound: {exc.strerror}"
        return fail(f"view: port {args.port} on {args.host} {reason}; choose another with --port (0: any free port)", 1)
    if not server.view.has_data():
        print(f"rqa-otel view: no telemetry in {server.view.directory} yet; the page says how to produce it",
              file=sys.stderr)
    print(f"rqa-otel view: serving {server.view.directory} on {server.url} (Ctrl-C to stop)", flush=True)
    if args.open:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0
