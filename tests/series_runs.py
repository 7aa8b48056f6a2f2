"""Backtest runs into InfluxDB for the series-budget test and bench.

``python tests/series_runs.py --influx URL --db DB --runs R --symbols K
--strategy S --directory DIR [--unbounded]``: R runs one after another in
this process, each a fresh ``rqa_otel.setup()`` (its own
``service.instance.id``, as a new run has) and a ``BacktestMonitor`` run that
trades K symbols on both sides and takes portfolio snapshots, exporting
traces, metrics and logs to InfluxDB 1.x with the project's exporter; then
``shutdown()``. ``--spool DIR``: through the durable spool in DIR (a
later run replays what an earlier one could not deliver); ``--desk D``:
resource attribute ``rqa.desk``. ``--unbounded`` writes what the Collector's exporter writes
with no processors (today's schema before the series budget). Prints one
line per run: ``run N done``.
"""

from __future__ import annotations

import argparse
import os

import rqa_otel
from rqa_otel.trading.monitor import BacktestMonitor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--influx", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--strategy", default="sma_cross")
    parser.add_argument("--directory", required=True)
    parser.add_argument("--unbounded", action="store_true")
    parser.add_argument("--spool", metavar="DIR", help="spool every export in DIR (shared by the runs) instead of none")
    parser.add_argument("--desk", help="resource attribute rqa.desk")
    args = parser.parse_args()
    overrides = {
        "export.traces": "influxdb", "export.metrics": "influxdb", "export.logs": "influxdb",
        "export.influxdb.url": args.influx, "export.influxdb.v1_compatibility": True, "export.influxdb.db": args.db,
        "export.spool.enabled": False, "export.metric_interval_s": 60, "ops.http_port": 0,
        "logging.capture": False,
    }
    if args.spool:
        overrides.update({"export.spool.enabled": True, "export.spool.directory": args.spool,
                          "export.shutdown_timeout_s": 2})
    if args.desk:
        overrides["resource_attributes"] = {"rqa.desk": args.desk}
    if args.unbounded:
        overrides.update({
            "export.influxdb.metric_resource_exclude": [], "export.influxdb.metric_temporality": "cumulative",
            "export.influxdb.series_limit": 0, "export.influxdb.metric_exclude": [],
        })
    symbols = [f"{600000 + i:06d}.SH" for i in range(args.symbols)]
    for run in range(1, args.runs + 1):
        directory = os.path.join(args.directory, f"{os.getpid()}-{run}")
        telemetry = rqa_otel.setup(strategy=args.strategy, overrides={**overrides, "export.directory": directory},
                                   set_global=False)
        monitor = BacktestMonitor(telemetry)
        with monitor.run(args.strategy, {"fast": 5 + run, "slow": 20}):
            for day in range(3):
                for i, symbol in enumerate(symbols):
                    monitor.record_trade(symbol, "buy", 10.0 + i, 100, args.strategy)
                    monitor.record_trade(symbol, "sell", 10.5 + i, 100, args.strategy)
                monitor.record_portfolio(1_000_000 + day, 500_000, {symbol: 100 for symbol in symbols}, args.strategy)
        monitor.close()
        telemetry.shutdown()
        print(f"run {run} done", flush=True)


if __name__ == "__main__":
    main()
