"""Retention and rollups on a real InfluxDB 1.x: the shipped
deploy/influxdb/retention-1x.iql, its continuous queries run by influxd's own
scheduler, raw points expiring, and the long-range dashboard answered from
the rollups once the raw points are gone.

The server runs with the retention check and the continuous-query scheduler
every second (production: 30 minutes and 1 second), and the test makes the
CQs run every second (``RESAMPLE EVERY 1s``) instead of every 5 minutes; the
SELECT of each is the shipped one. To see raw points expire without waiting
a day, old points are written while the raw policy keeps 30 days, and the
policy is then shortened to 1 hour (a short retention on a test database).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import grafana_queries as gq
import rollups
from backends import InfluxDB1, _poll
from test_deploy_configs import _load_yaml

DB = "rqa"
RUNS_SCRIPT = Path(__file__).with_name("series_runs.py")
HOUR_NS = 3_600_000_000_000


class FastInfluxDB1(InfluxDB1):
    """influxd with the retention check and the CQ scheduler every second."""

    def _prepare(self, binary: str) -> list[str]:
        argv = super()._prepare(binary)
        config = self.dir / "influxdb.conf"
        text = config.read_text().replace("[continuous_queries]\n", '[continuous_queries]\n  run-interval = "1s"\n')
        config.write_text(text + '\n[retention]\n  enabled = true\n  check-interval = "1s"\n')
        return argv


@pytest.fixture
def influx(start_backend):
    return start_backend(FastInfluxDB1())


def _every_second(statement: str) -> str:
    return statement.replace("RESAMPLE FOR 15m", "RESAMPLE EVERY 1s FOR 15m")


def test_the_shipped_policies_and_queries_apply_twice_and_cover_the_dashboards(influx):
    rollups.apply(influx)
    rollups.apply(influx)  # idempotent: a redeploy applies it again
    policies = {row[0]: row for row in influx.query(f"SHOW RETENTION POLICIES ON {DB}")[0]["series"][0]["values"]}
    assert policies["autogen"][1:] == ["720h0m0s", "24h0m0s", 1, True]
    assert policies[rollups.ROLLUP_RP][1:] == ["17520h0m0s", "168h0m0s", 1, False]
    queries = rollups.continuous_queries()
    assert set(queries) == {row[0] for row in influx.query("SHOW CONTINUOUS QUERIES")[0]["series"][-1]["values"]} - {None}
    # Every metric the dashboards and alert rules read is rolled up, so a
    # new panel on an unrolled metric fails here rather than in a year.
    rolled = {m for select in queries.values() for m in re.findall(r'"autogen"\."([^"]+)"', select)}
    read = {
        m for board in gq.load_dashboards() for q in gq.dashboard_queries(board) for m in q.measurements
    } | {m for q in gq.alert_queries(_load_yaml) for m in q.measurements}
    assert read - {"spans", "logs"} <= rolled, sorted(read - {"spans", "logs"} - rolled)


def test_cqs_fill_rollups_raw_points_expire_and_the_long_range_dashboard_reads_rollups(influx, tmp_path):
    rollups.apply(influx, [_every_second(s) for s in rollups.statements()])
    # Recent data through the project's exporter: influxd's scheduler rolls it up.
    runs = subprocess.run([sys.executable, str(RUNS_SCRIPT), "--influx", influx.url, "--db", DB, "--runs", "2",
                           "--symbols", "5", "--directory", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert runs.returncode == 0, runs.stderr[-2000:]
    trades = 2 * 5 * 2 * 3
    rolled_up = f'SELECT sum("gauge") FROM "{rollups.ROLLUP_RP}"."rqa.trades"'
    rolled = _poll(
        lambda: (rows := influx.points(rolled_up, DB)) and rows[0]["sum"] == trades and rows,
        30, lambda: f"{rolled_up}: {influx.points(rolled_up, DB)}",
    )
    assert rolled[0]["sum"] == trades

    # Three days ago, while raw points are kept 30 days: a day of trades.
    old = time.time_ns() - 72 * HOUR_NS
    lines = [
        f'rqa.trades,host.name=h1,rqa.stock=600000.SH,rqa.strategy=old_desk,rqa.trade.side=buy gauge={n % 3 + 1}i {old + n * 60_000_000_000}'
        for n in range(120)
    ] + [
        f'rqa.portfolio.value,host.name=h1,rqa.strategy=old_desk gauge={1e6 + n} {old + n * 60_000_000_000}' for n in range(120)
    ] + [
        f'rqa.strategy.quota.utilization,host.name=h1,rqa.quota.resource=memory,rqa.strategy=old_desk gauge={n / 100} '
        f'{old + n * 60_000_000_000}' for n in range(120)
    ]
    influx.write(lines, DB)
    expected = sum(n % 3 + 1 for n in range(120))
    rollups.backfill(influx, DB, old - HOUR_NS, old + 3 * HOUR_NS)
    window = f"time >= {old - HOUR_NS} AND time < {old + 3 * HOUR_NS}"
    [raw] = influx.points(f'SELECT sum("gauge") FROM "autogen"."rqa.trades" WHERE {window}', DB)
    assert raw["sum"] == expected

    # A short raw retention: the 3-day-old shard expires, the rollups stay.
    influx.query(f'ALTER RETENTION POLICY "autogen" ON "{DB}" DURATION 1h SHARD DURATION 1h DEFAULT')
    _poll(lambda: not influx.points(f'SELECT count("gauge") FROM "autogen"."rqa.trades" WHERE {window}', DB),
          30, lambda: "the raw points of 3 days ago did not expire")
    [total] = influx.points(f'SELECT sum("gauge") FROM "{rollups.ROLLUP_RP}"."rqa.trades" WHERE {window}', DB)
    assert total["sum"] == expected
    five_minute_points = influx.points(
        f'SELECT "gauge" FROM "{rollups.ROLLUP_RP}"."rqa.portfolio.value" WHERE {window} AND "rqa.strategy" = \'old_desk\'', DB)
    # 2 hours, one point per 5-minute bucket (25 when they start mid-bucket): the last of each.
    assert len(five_minute_points) in (24, 25) and five_minute_points[-1]["gauge"] == 1e6 + 119

    # The long-range dashboard over the last 7 days: every panel has rows.
    [board] = [b for b in gq.load_dashboards() if b.path.name == "long-range.json"]
    end_ms = time.time_ns() // 1_000_000
    start_ms = end_ms - 7 * 86_400_000
    interval = gq.interval_ms(end_ms - start_ms, 1000, gq.min_interval_ms(_load_yaml))
    values = {"strategy": gq.format_value(board.variables[0], None)}
    empty = []
    for query in gq.dashboard_queries(board):
        text = gq.expand(query.text, start_ms, end_ms, interval, values)
        rows = influx.points(text, DB)
        if not rows:
            empty.append(f"{query.where}: {text}")
        if "Trades by symbol" in query.where:
            totals = {(r["rqa.stock"], r["rqa.trade.side"]): r["total"] for r in rows}
            assert totals[("600000.SH", "buy")] == expected + 2 * 3  # 3 days ago, and the two recent runs
    assert not empty, "\n".join(empty)


def test_a_day_with_only_integer_counters_is_rolled_up_beside_a_day_with_float_ones(influx):
    """Two days of one rollup shard (7 days from a Monday): the first has
    trades (integer counts, float volumes) and an alert, the second only an
    alert (integer). The sums query reads both kinds; without its cast,
    InfluxDB typed the first day's sums float and the second day's integer,
    refused the second (partial write: field type conflict), and that day's
    rollup points were lost."""
    rollups.apply(influx)
    day_ns = 24 * HOUR_NS
    now = time.time_ns()
    this_monday = now - (now // day_ns + 3) % 7 * day_ns - now % day_ns  # 1970-01-01 was a Thursday
    trading_day, quiet_day = this_monday - 6 * day_ns + HOUR_NS, this_monday - 5 * day_ns + HOUR_NS
    influx.write([
        f"rqa.trades,rqa.strategy=s,rqa.stock=600000.SH,rqa.trade.side=buy gauge=2i {trading_day}",
        f"rqa.trade.volume,rqa.strategy=s,rqa.stock=600000.SH,rqa.trade.side=buy gauge=300.0 {trading_day}",
        f"rqa.alerts,rqa.strategy=s,rqa.alert.name=quota_breach,rqa.alert.severity=warning gauge=1i {trading_day}",
        f"rqa.alerts,rqa.strategy=s,rqa.alert.name=quota_breach,rqa.alert.severity=warning gauge=1i {quiet_day}",
    ], DB)
    for day in (trading_day, quiet_day):  # in this order: the shard's field type is set by the first
        rollups.backfill(influx, DB, day - HOUR_NS, day + HOUR_NS)
    rolled = {
        measurement: [row["gauge"] for row in influx.points(f'SELECT "gauge" FROM "{rollups.ROLLUP_RP}"."{measurement}"', DB)]
        for measurement in ("rqa.trades", "rqa.trade.volume", "rqa.alerts")
    }
    assert rolled == {"rqa.trades": [2], "rqa.trade.volume": [300], "rqa.alerts": [1, 1]}
