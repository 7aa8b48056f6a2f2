"""``rqa-otel demo``: a sample instrumented backtest, to files (no server),
a Collector or InfluxDB, with a summary of what the telemetry saw."""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import sys
import tempfile
import time

from rqa_otel import names
from rqa_otel.cli import demo_backtest as demo
from rqa_otel.cli.arguments import fail, port_or_auto, positive_int
from rqa_otel.cli.replay import add_influx_options, influx_overrides
from rqa_otel.config.model import SettingsError
from rqa_otel.resources.registry import Registry
from rqa_otel.rqa2025 import ResourceManager as DesignResourceManager
from rqa_otel.telemetry import setup
from rqa_otel.trading import BacktestMonitor, TradingErrorHandler


def add_demo_parser(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a sample instrumented backtest (no server needed)",
        description=(
            "Backtest a dual moving-average strategy on seeded synthetic A-share prices and send its "
            "telemetry to the embedded default (OTLP JSON files under ./rqa-telemetry/) or to a Collector."
        ),
    )
    demo.add_argument("--otlp-endpoint", metavar="URL", help="send to a Collector instead, e.g. http://localhost:4317")
    demo.add_argument(
        "--otlp-protocol", choices=("grpc", "http/protobuf"), default="grpc", help="OTLP protocol (default grpc)"
    )
    demo.add_argument(
        "--influxdb", metavar="URL",
        help="write to InfluxDB instead (with --influxdb-bucket, or --influxdb-db for InfluxDB 1.x); trade "
        "events are tagged with rqa.strategy and rqa.stock",
    )
    add_influx_options(demo, "--influxdb-")
    demo.add_argument("--output", metavar="DIR", help="directory of the telemetry files (default ./rqa-telemetry)")
    demo.add_argument("--years", type=positive_int, default=2, help="years of daily bars (default 2)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the prices (default 7)")
    demo.add_argument("--no-telemetry", action="store_true", help="run the same backtest with telemetry off")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument(
        "--http-port", type=port_or_auto, default="auto", metavar="PORT",
        help="serve /health, /ready and /metrics on 127.0.0.1:PORT while the demo runs "
        "(default auto: a free port, printed at start; off: none)",
    )
    demo.add_argument(
        "--serve-s", type=float, default=0.0, metavar="SECONDS",
        help="keep serving the endpoints this long after the backtest, for a look or a scrape "
        "(Ctrl-C ends the wait early; default 0)",
    )
    demo.set_defaults(handler=demo_command)



def _free_loopback_port() -> int:
    """A port free right now (ops.http_port 0 means off, so the demo picks one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def demo_command(args: argparse.Namespace) -> int:

    overrides: dict[str, object] = {}
    if args.otlp_endpoint and args.influxdb:
        return fail("demo: give --otlp-endpoint or --influxdb, not both")
    if args.otlp_endpoint:
        overrides.update({f"export.{signal}": "otlp" for signal in ("traces", "metrics", "logs")})
        overrides["export.otlp.endpoint"] = args.otlp_endpoint
        overrides["export.otlp.protocol"] = args.otlp_protocol
    elif args.influxdb:
        overrides.update({f"export.{signal}": "influxdb" for signal in ("traces", "metrics", "logs")})
        try:
            overrides.update(influx_overrides(args.influxdb, args, prefix="influxdb_"))
        except ValueError as exc:
            return fail(f"demo: {exc}")
        # Trade events selectable by strategy and symbol in InfluxQL (docs/influxdb.md).
        overrides["export.influxdb.log_record_dimensions"] = demo.INFLUX_LOG_RECORD_DIMENSIONS
        overrides["export.spool.directory"] = os.path.join(args.output or "./rqa-telemetry", "spool")
    if args.http_port != "off" and not args.no_telemetry:
        overrides["ops.http_port"] = _free_loopback_port() if args.http_port == "auto" else args.http_port
    output = args.output or "./rqa-telemetry"
    settings_file = None
    if not args.no_telemetry:  # the sampling rule lives in a watched settings file
        os.makedirs(output, exist_ok=True)
        settings_file = os.path.join(output, demo.SETTINGS_FILE)
        demo.write_settings(settings_file, demo.SAMPLING_RULES[0]["rate_per_s"])
        overrides.update({"config.watch": True, "config.sighup": False})
    text_log = None
    if not args.otlp_endpoint and not args.influxdb:  # beside the OTLP files, a text log to read
        directory = args.output or "./rqa-telemetry"
        overrides["export.directory"] = directory
        text_log = overrides["logging.file"] = os.path.join(directory, demo.TEXT_LOG)

    bars = demo.synthetic_bars(years=args.years, seed=args.seed)
    telemetry = None
    setup_s = 0.0
    if not args.no_telemetry:
        started = time.perf_counter()
        try:
            telemetry = setup(settings_file, strategy=demo.STRATEGY, service_name="rqa-demo", overrides=overrides)
        except SettingsError as exc:
            return fail(f"demo: {exc}")
        except OSError as exc:  # the ops port is taken
            return fail(f"demo: cannot serve /health on port {overrides['ops.http_port']}: {exc.strerror}; "
                         "try --http-port auto or off")
        setup_s = time.perf_counter() - started
    if not args.json:
        print(
            f"rqa-otel demo: {demo.STRATEGY} on {len(bars[0].closes)} stocks, {len(bars)} daily bars "
            f"({bars[0].day} .. {bars[-1].day})"
        )
    ops_url = None
    if telemetry and telemetry.ops_address:
        host, port = telemetry.ops_address[:2]
        ops_url = f"http://{host}:{port}"
        # Also with --json (on stderr), so a script can find the endpoints.
        print(f"rqa-otel demo: serving {ops_url}/health /ready /metrics", file=sys.stderr if args.json else sys.stdout,
              flush=True)

    monitor = errors = None
    if telemetry:

        monitor = BacktestMonitor(telemetry, journal_path=os.path.join(args.output or "./rqa-telemetry", "trades.db"))
        # Retry delays pass in simulated time: a backtest does not sleep.
        errors = TradingErrorHandler(telemetry, sleep=lambda seconds: None)
    # As a long-running strategy does after its start-up (and as `rqa-otel
    # run` does for the program it starts; README, "Cost"): what exists now
    # lives as long as the process, so the cyclic GC need not walk it again.
    # With telemetry or without, at the same point.
    gc.freeze()
    started = time.perf_counter()
    progress = demo.Progress(enabled=not (args.quiet or args.json))
    live_change = demo.LiveChange(telemetry, settings_file) if telemetry else None

    def on_bar(done: int, total: int) -> None:
        progress(done, total)
        if live_change:
            live_change(done, total)

    result = demo.run_backtest(bars, monitor, progress=on_bar, errors=errors)
    if monitor:
        monitor.flush()
    served_s = 0.0
    if ops_url and args.serve_s > 0:
        if not args.json:
            print(f"rqa-otel demo: backtest done; serving {ops_url} for {args.serve_s:g} s (Ctrl-C to stop)", flush=True)
        serving_since = time.perf_counter()
        try:
            time.sleep(args.serve_s)
        except KeyboardInterrupt:
            pass
        served_s = time.perf_counter() - serving_since
    # The resource gauges' reading at the end of the run: shutdown's final
    # collection exports this same snapshot (so the reading stays timed).
    snapshot = telemetry.resource_gauges.refresh() if telemetry and telemetry.resource_gauges else None
    resources = demo.resource_summary(snapshot) if snapshot else {}
    # The quota show-case is the demo's own, neither backtest nor flush: like
    # the live change's wait, it is left out of the reported wall time (the
    # alert span and gauges it raises are exported, and timed, in the flush).
    showcase_started = time.perf_counter()
    # One quota check as the host agent makes it, against a deliberately tight quota.
    # Its registry (the demo is a worker there until it exits) is private and temporary.
    quota_run_dir = tempfile.mkdtemp(prefix="rqa-demo-quota-") if snapshot else None
    quota_alert = demo.quota_breach(telemetry, snapshot, quota_run_dir) if snapshot else None
    # The same quota through the design's name: a plain bool, usage sampled now.
    design_check_quota = DesignResourceManager(
        telemetry, registry=Registry(quota_run_dir), quotas={demo.STRATEGY: demo.demo_quota()}
    ).check_quota(demo.STRATEGY) if snapshot else None
    showcase_s = time.perf_counter() - showcase_started
    flushed = telemetry.shutdown() if telemetry else True
    # The backtest plus the final flush.
    wall_s = time.perf_counter() - started - served_s - showcase_s
    if quota_run_dir:  # after the final collection, which reports the worker
        shutil.rmtree(quota_run_dir, ignore_errors=True)
    if live_change:
        wall_s -= live_change.waited_s  # the pause for the live change is not the backtest's
    history = []
    if monitor:
        first_symbol = next(iter(bars[0].minutes))
        # Read as the design reads its records (m['tags'][...]); a Trade also has attributes.
        history = [
            f"{m['timestamp']:%Y-%m-%d} {m['tags']['action']} {m['tags']['quantity']} {m['tags']['symbol']} @ {m['value']:.2f}"
            for m in monitor.get_trade_history(strategy=demo.STRATEGY, symbol=first_symbol, limit=3)
        ]
        monitor.close()

    counts = telemetry.export_counts() if telemetry else []
    summary = {
        "run_id": result.run_id,
        "stocks": len(bars[0].closes),
        "bars": result.bars,
        "trades": result.trades,
        "signals": dict(result.signals),
        "orders_rejected": result.orders_rejected,
        "orders_refused": result.orders_refused,
        "start_value": result.start_value,
        "final_value": round(result.final_value, 2),
        "wall_s": wall_s,
        "setup_s": setup_s,
        "telemetry": [vars(c) for c in counts],
        "trade_history_sample": history,
        "journal": str(monitor.journal.path) if monitor else None,
        "log_drops": {f"{reason}/{level}": n for (reason, level), n in (telemetry.log_drops() if telemetry else {}).items()},
        "text_log": text_log if telemetry else None,
        "resources": resources,
        "quota_alert": quota_alert,
        "design_check_quota": design_check_quota,
        "flushed": flushed,
        "ops_url": ops_url,
        # Where to look at it: the local web view of the files and the journal.
        "view_command": f"rqa-otel view {output}" if telemetry and text_log else None,
        "live_change": {
            "settings_file": settings_file, "saved_at_bar": live_change.saved_bar,
            "applied_at_bar": live_change.applied[0] if live_change.applied else None,
            "applied_after_ms": round(live_change.applied[1], 1) if live_change.applied else None,
        } if live_change else None,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0 if flushed else 1


def _print_summary(summary: dict) -> None:

    change = summary["final_value"] / summary["start_value"] - 1
    signals = ", ".join(f"{name} {count}" for name, count in sorted(summary["signals"].items()))
    print(f"  run {summary['run_id']}: {summary['trades']} trades; signals: {signals}")
    print(f"  portfolio: {summary['start_value']:,.2f} -> {summary['final_value']:,.2f} CNY ({change:+.2%})")
    print(f"  wall time: {summary['wall_s']:.3f} s (setup {summary['setup_s']:.3f} s)")
    if not summary["telemetry"]:
        print("  telemetry: off")
        return
    print(
        f"  broker: {summary['orders_rejected']} orders rejected once and retried (rqa.retry events); "
        f"{summary['orders_refused']} order beyond the cash -> critical alert {names.ALERT_INSUFFICIENT_FUNDS}"
    )
    for line in demo.resource_lines(summary["resources"]):
        print(line)
    if summary["quota_alert"]:
        print(demo.quota_line(summary["quota_alert"]))
    if summary["design_check_quota"] is not None:
        print(f"  the design's ResourceManager.check_quota({demo.STRATEGY!r}) -> {summary['design_check_quota']} "
              "(rqa_otel.rqa2025; usage sampled on the call)")
    units = {"traces": "spans", "metrics": "metric data points", "logs": "log records"}
    print("  telemetry:")
    for item in summary["telemetry"]:
        failed = f", {item['failed']} failed" if item["failed"] else ""
        print(f"    {item['signal']:<8} {item['exported']:>6} {units[item['signal']]}{failed} -> {item['destination']}")
    sampled = sum(n for key, n in summary["log_drops"].items() if key.startswith("sampled/"))
    if sampled:
        print(
            f"  sampling: {sampled} signal records suppressed by the demo's rule (at most 20/s on "
            f"{demo.SIGNALS_LOGGER}); a summary record in the logs says so"
        )
    change = summary["live_change"]
    if change and change["saved_at_bar"]:
        applied = (
            f"the file watcher applied it {change['applied_after_ms']:.0f} ms later (the backtest waited for it)"
            if change["applied_at_bar"] else "the backtest ended before it was applied"
        )
        print(
            f"  live settings: at bar {change['saved_at_bar']} the rule was tightened to {demo.LIVE_RATE_PER_S}/s in "
            f"{change['settings_file']} (a rename-save, as vim does); {applied}, no restart"
        )
    lost = {key: n for key, n in summary["log_drops"].items() if not key.startswith("sampled/")}
    if lost:
        print(f"  log records lost: {lost}")
    if summary["trade_history_sample"]:
        print(f"  trade journal {summary['journal']}; get_trade_history(symbol=..., limit=3), "
              "read as the design does (m['tags']['action'], m['value']):")
        for line in summary["trade_history_sample"]:
            print(f"    {line}")
    if summary["text_log"] and os.path.exists(summary["text_log"]):
        with open(summary["text_log"], encoding="utf-8") as text:
            trading = (line.rstrip("\n") for line in text if "stock=N/A" not in line)
            sample = [line for _, line in zip(range(3), trading)]
        print(f"  text log {summary['text_log']} (every record carries strategy, stock and signal):")
        for line in sample:
            print(f"    {line}")
    print("  the design's names (docs/migration.md): BacktestMonitor(app_name), TradingErrorHandler(), "
          "ResourceManager.check_quota, ConfigManager, QuantFilter, LogManager, RetryHandler, GPUManager "
          "are in rqa_otel.rqa2025, over the project's rqa_otel.trading, .resources, .config and .logs")
    if summary.get("view_command"):
        print(f"  see it in a browser: {summary['view_command']}  (then rqa-otel report {summary['run_id'][:8]} -o run.html)")
    if not summary["flushed"]:
        print("  warning: not all telemetry was flushed before the shutdown deadline")
