"""Fleet simulation: N hosts x M strategies x K symbols x R runs a day,
time-compressed, through rqa-otel's own InfluxDB exporter into a real
influxd (1.x, /write) and a real VictoriaMetrics (/api/v2/write).

    python bench/fleet_sim.py [--hosts N] [--strategies M] [--symbols K]
                              [--runs-per-day R] [--day-s S] [--days D] [--json]

Each simulated host is a process of its own, with its own host agent
(``rqa-otel agent``, a second process watching the host's run directory and
exporting per-strategy gauges) and ``host.name`` ``sim-host-<n>`` (the
process's hostname is replaced before ``setup()``: every host here is one
machine). A host runs its M strategies' R runs a day one after another,
each run a fresh ``setup()`` (its own ``service.instance.id``, as a new
process has) that trades K symbols on both sides, spread over a simulated
day of S seconds. Both stores get the same fleet, one after the other.

Measured per store, after D simulated days:
- series: SHOW SERIES CARDINALITY (influxd) or /api/v1/series/count (VM);
- points/s accepted: the server's own counter of points written
  (influxd SHOW STATS httpd pointsWrittenOK; VM vm_rows_inserted_total)
  over the wall time of the simulation;
- bytes on disk per simulated day: what the data directory grew by, over D
  (influxd preallocates 32 MiB of series file: left out; it runs with its
  cache snapshotted and compacted after 2 s cold, so this is compressed TSM);
- server RSS (VmRSS of the server process) at the end;
- the latency of the dashboards' queries (every panel query of
  grafana/dashboards, Grafana's macros expanded, "All" selected, over the
  last hour; influxd only: VictoriaMetrics has no InfluxQL) and, for VM,
  of the same panels' main series in MetricsQL.

Prints the table (and with --json one object per store). docs/capacity.md
quotes it. Runs are short: this measures what the fleet writes and what the
stores hold, not how fast one process can write (bench/run.py influx_write).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

HOST_SCRIPT = r"""
import os, socket, sys, time
host, strategies, symbols, runs, day_s, days, influx, db, bucket, directory = sys.argv[1:11]
socket.gethostname = lambda: host  # one machine plays every host
import rqa_otel
from rqa_otel.trading.monitor import BacktestMonitor
strategies, symbols, runs, day_s, days = int(strategies), int(symbols), int(runs), float(day_s), int(days)
overrides = {
    "export.traces": "influxdb", "export.metrics": "influxdb", "export.logs": "influxdb",
    "export.influxdb.url": influx, "export.spool.enabled": False, "export.metric_interval_s": 60,
    "ops.http_port": 0, "logging.capture": False, "registry.dir": os.path.join(directory, "run"),
}
overrides.update({"export.influxdb.v1_compatibility": True, "export.influxdb.db": db} if db else
                 {"export.influxdb.bucket": bucket, "export.influxdb.org": "rqa"})
names = [f"{600000 + i:06d}.SH" for i in range(symbols)]
pause = day_s / max(1, strategies * runs)
for day in range(days):
    for run in range(runs):
        for s in range(strategies):
            began = time.monotonic()
            strategy = f"strategy_{s:02d}"
            telemetry = rqa_otel.setup(strategy=strategy, set_global=False, overrides={
                **overrides, "export.directory": os.path.join(directory, f"{day}-{run}-{s}")})
            monitor = BacktestMonitor(telemetry)
            with monitor.run(strategy, {"combo": run}):
                for i, symbol in enumerate(names):
                    monitor.record_trade(symbol, "buy", 10.0 + i, 100, strategy)
                    monitor.record_trade(symbol, "sell", 10.2 + i, 100, strategy)
                monitor.record_portfolio(1e6 + run, 5e5, {n: 100 for n in names}, strategy)
            monitor.close()
            telemetry.shutdown()
            time.sleep(max(0.0, pause - (time.monotonic() - began)))
print("host done", flush=True)
"""

AGENT_SCRIPT = r"""
import socket, sys
socket.gethostname = lambda: sys.argv[1]
from rqa_otel.cli import main
sys.exit(main(["agent", "--run-dir", sys.argv[2], "--interval", "2", "--http-port", "0"]))
"""


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _run_fleet(args, url: str, db: str, bucket: str, workdir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    processes = []
    for host in range(args.hosts):
        name = f"sim-host-{host}"
        directory = workdir / name
        (directory / "run").mkdir(parents=True)
        agent_env = {**env, "RQA_EXPORT__METRICS": "influxdb", "RQA_EXPORT__TRACES": "none", "RQA_EXPORT__LOGS": "none",
                     "RQA_EXPORT__INFLUXDB__URL": url, "RQA_EXPORT__SPOOL__ENABLED": "false",
                     "RQA_EXPORT__METRIC_INTERVAL_S": "2", "RQA_EXPORT__DIRECTORY": str(directory / "agent")}
        agent_env.update({"RQA_EXPORT__INFLUXDB__V1_COMPATIBILITY": "true", "RQA_EXPORT__INFLUXDB__DB": db} if db else
                         {"RQA_EXPORT__INFLUXDB__BUCKET": bucket, "RQA_EXPORT__INFLUXDB__ORG": "rqa"})
        processes.append(("agent", subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, name, str(directory / "run")],
                                                    env=agent_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    started = time.monotonic()
    hosts = [
        subprocess.Popen(
            [sys.executable, "-c", HOST_SCRIPT, f"sim-host-{host}", str(args.strategies), str(args.symbols),
             str(args.runs_per_day), str(args.day_s), str(args.days), url, db, bucket, str(workdir / f"sim-host-{host}")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for host in range(args.hosts)
    ]
    for host in hosts:
        out, err = host.communicate(timeout=3600)
        if host.returncode != 0 or "host done" not in out:
            raise SystemExit(f"a simulated host failed:\n{err[-3000:]}")
    elapsed = time.monotonic() - started
    time.sleep(2.5)  # a last agent collection
    for _, agent in processes:
        agent.terminate()
    for _, agent in processes:
        try:
            agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
    return elapsed


def _influx_points_ok(server) -> int:
    for series in server.query("SHOW STATS")[0].get("series", []):
        if series.get("name") == "httpd":
            row = dict(zip(series["columns"], series["values"][0]))
            return int(row.get("pointsWrittenOK", 0))
    return 0


def _dashboard_latencies(server, db: str) -> list[float]:
    import grafana_queries as gq
    from test_deploy_configs import _load_yaml

    end_ms = time.time_ns() // 1_000_000 + 60_000
    start_ms = end_ms - 3_600_000
    interval = gq.interval_ms(end_ms - start_ms, 1000, gq.min_interval_ms(_load_yaml))
    latencies = []
    for board in gq.load_dashboards():
        values = {v.name: gq.format_value(v, None) if (v.multi or v.include_all) else ".*" for v in board.variables}
        for query in gq.dashboard_queries(board):
            if query.kind != "panel" or "rollup_5m" in query.text:
                continue
            text = gq.expand(query.text, start_ms, end_ms, interval, values)
            began = time.perf_counter()
            server.query(text, db, check=False)
            latencies.append((time.perf_counter() - began) * 1000)
    return latencies


VM_PANELS = [  # the overview's main panels in MetricsQL, over the last hour
    'sum by (rqa.stock, rqa.trade.side) (sum_over_time({__name__="rqa.trades_gauge"}[1h]))',
    'sum by (rqa.stock, rqa.trade.side) (sum_over_time({__name__="rqa.trade.notional_gauge"}[1h]))',
    'last_over_time({__name__="rqa.portfolio.value_gauge"}[1h])',
    'max_over_time({__name__="rqa.strategy.memory.usage_gauge"}[1h])',
    'sum(sum_over_time({__name__="rqa.trade.notional_per_trade_sum"}[1h])) / sum(sum_over_time({__name__="rqa.trade.notional_per_trade_count"}[1h]))',
]


def _vm_metric(server, name: str) -> float:
    from backends import http_request

    _, body = http_request("GET", f"{server.url}/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def simulate_influxdb(args, workdir: Path) -> dict:
    from backends import InfluxDB1

    class Compacting(InfluxDB1):
        """Snapshots the cache to TSM and compacts cold shards after 1 s
        (default 10 min and 4 h), so the disk figure is compressed TSM, not
        the write-ahead log."""

        def _prepare(self, binary: str) -> list[str]:
            argv = super()._prepare(binary)
            config = self.dir / "influxdb.conf"
            config.write_text(config.read_text().replace(
                'index-version = "inmem"',
                'index-version = "inmem"\n  cache-snapshot-write-cold-duration = "1s"\n  compact-full-write-cold-duration = "2s"'))
            return argv

    server = Compacting().start()
    try:
        server.create_database("rqa")
        server.write("baseline,host.name=none v=1", "rqa")  # the series file's 8 preallocated 4 MiB segments
        baseline = _du(server.dir / "data") + _du(server.dir / "wal")
        before = _influx_points_ok(server)
        elapsed = _run_fleet(args, server.url, "rqa", "", workdir / "influx")
        points = _influx_points_ok(server) - before
        series = server.query("SHOW SERIES CARDINALITY", "rqa")[0]["series"][0]["values"][0][0]
        measurement_series = {}
        for [key] in server.query("SHOW SERIES", "rqa")[0]["series"][0]["values"]:
            name = key.split(",", 1)[0]
            measurement_series[name] = measurement_series.get(name, 0) + 1
        latencies = _dashboard_latencies(server, "rqa")
        time.sleep(8)  # cold: the cache is snapshotted to TSM and compacted
        disk = _du(server.dir / "data") + _du(server.dir / "wal") - baseline
        rss = _rss_bytes(server.process.pid)
    finally:
        server.stop()
    trace_series = sum(measurement_series.get(m, 0) for m in ("spans", "logs", "span-links"))
    return _result("influxd 1.x", args, series, series - trace_series, points, elapsed, disk, rss, latencies)


def simulate_victoria_metrics(args, workdir: Path) -> dict:
    from backends import VictoriaMetrics, http_request

    server = VictoriaMetrics().start()
    try:
        baseline = _du(server.dir)
        before = _vm_metric(server, "vm_rows_inserted_total")
        elapsed = _run_fleet(args, server.url, "", "rqa", workdir / "vm")
        server.flush()
        points = _vm_metric(server, "vm_rows_inserted_total") - before
        _, body = http_request("GET", f"{server.url}/api/v1/series/count")
        series = int(json.loads(body)["data"][0])
        _, body = http_request("GET", f"{server.url}/api/v1/series?" + urllib.parse.urlencode(
            {"match[]": '{__name__=~"(spans|logs|span-links)_.*"}'}))
        trace_series = len(json.loads(body)["data"])
        latencies = []
        for promql in VM_PANELS:
            began = time.perf_counter()
            server.query(promql)
            latencies.append((time.perf_counter() - began) * 1000)
        disk = _du(server.dir) - baseline
        rss = _rss_bytes(server.process.pid)
    finally:
        server.stop()
    # VictoriaMetrics splits each point into one series per field: count the
    # metric series as InfluxDB does it, per measurement and tag set, too.
    return _result("victoria-metrics", args, series, series - trace_series, points, elapsed, disk, rss, latencies)


def _result(store, args, series, metric_series, points, elapsed, disk, rss, latencies) -> dict:
    latencies = sorted(latencies) or [0.0]
    return {
        "store": store, "hosts": args.hosts, "strategies": args.strategies, "symbols": args.symbols,
        "runs_per_day": args.runs_per_day, "days": args.days, "day_s": args.day_s,
        "series": series, "metric_series": metric_series, "points": int(points), "wall_s": round(elapsed, 1),
        "points_per_s": round(points / elapsed), "disk_bytes_per_day": round(disk / args.days),
        "server_rss_bytes": rss, "queries": len(latencies),
        "query_ms_p50": round(statistics.median(latencies), 1),
        "query_ms_p95": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], 1),
    }


def table(rows: list[dict]) -> str:
    head = ("store", "hosts x strat x sym x runs/day", "series (metric)", "points/s accepted", "disk/sim-day",
            "server RSS", "dashboard queries p50 / p95")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["store"], f'{r["hosts"]} x {r["strategies"]} x {r["symbols"]} x {r["runs_per_day"]}',
            f'{r["series"]:,} ({r["metric_series"]:,})', f'{r["points_per_s"]:,} ({r["points"]:,} in {r["wall_s"]} s)',
            f'{r["disk_bytes_per_day"] / 2**20:.1f} MiB', f'{r["server_rss_bytes"] / 2**20:.0f} MiB',
            f'{r["query_ms_p50"]} / {r["query_ms_p95"]} ms ({r["queries"]} queries)',
        ]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--strategies", type=int, default=2)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--runs-per-day", type=int, default=10)
    parser.add_argument("--day-s", type=float, default=10.0, help="wall seconds of one simulated day")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--store", choices=("both", "influxd", "victoria-metrics"), default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rqa-fleet-") as directory:
        if args.store in ("both", "influxd"):
            rows.append(simulate_influxdb(args, Path(directory)))
        if args.store in ("both", "victoria-metrics"):
            rows.append(simulate_victoria_metrics(args, Path(directory)))
    print(table(rows))
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
