"""BacktestMonitor: trades and portfolio as metrics, events and journal rows, read back from real files."""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from otlp_files import attributes as attrs
from otlp_files import last_points, log_records, spans
from rqa_otel import names
from rqa_otel.trading.monitor import BacktestMonitor

BAR = dt.datetime(2024, 3, 1, 7, 0, tzinfo=dt.timezone.utc)  # 15:00 in Shanghai


@pytest.fixture
def telemetry(file_telemetry):
    return file_telemetry(strategy="dual_ma")


def test_trades_become_counters_a_histogram_and_correlated_events(telemetry, tmp_path):
    monitor = BacktestMonitor(telemetry)
    with monitor.run("dual_ma", {"fast": 10, "slow": 40}) as run_id:
        monitor.record_trade("600519.SH", "BUY", 1688.5, 100, "dual_ma", timestamp=BAR)
        monitor.record_trade("600519.SH", "sell", 1700.0, 100, "dual_ma", timestamp=BAR + dt.timedelta(days=1))
        monitor.record_trade("000001.SZ", "buy", 10.5, 3000, "dual_ma", timestamp=BAR, order_id=7, order_type="Limit")
    monitor.close()
    telemetry.shutdown()

    counts = last_points(tmp_path / "metrics.jsonl", names.TRADES_COUNTER)
    key = ((names.STOCK, "600519.SH"), (names.STRATEGY, "dual_ma"), (names.TRADE_SIDE, "buy"))
    assert int(counts[key]["asInt"]) == 1 and len(counts) == 3
    notional = last_points(tmp_path / "metrics.jsonl", names.TRADE_NOTIONAL_COUNTER)
    assert notional[key]["asDouble"] == pytest.approx(168_850.0)
    [histogram] = last_points(tmp_path / "metrics.jsonl", names.TRADE_NOTIONAL_HISTOGRAM).values()
    assert int(histogram["count"]) == 3 and histogram["explicitBounds"][0] == 1e3

    [run_span] = [s for s in spans(tmp_path / "traces.jsonl", missing_ok=True) if s["name"] == names.BACKTEST_SPAN]
    assert "parentSpanId" not in run_span, "a run is the root of its own trace"
    assert attrs(run_span)[names.RUN_ID] == run_id and attrs(run_span)[names.STRATEGY_PARAMETER_PREFIX + "slow"] == "40"
    events = [r for r in log_records(tmp_path / "logs.jsonl", missing_ok=True) if attrs(r).get(names.TRADE_SIDE)]
    assert len(events) == 3
    first = attrs(events[0])
    assert (first[names.STOCK], first[names.TRADE_SIDE], first[names.TRADE_PRICE]) == ("600519.SH", "buy", 1688.5)
    assert events[0]["traceId"] == run_span["traceId"]
    times = [int(e["timeUnixNano"]) for e in events]
    assert times[0] // 10**9 == int(BAR.timestamp()), "the event carries the trade's simulated time"
    assert len(set(times)) == 3, "trades in the same bar get distinct nanoseconds: no InfluxDB overwrite"
    # A trade that names its order carries it; the others have no order keys.
    assert names.ORDER_ID not in first and names.ORDER_TYPE not in first
    third = attrs(events[2])
    assert (third[names.ORDER_ID], third[names.ORDER_TYPE], third[names.TRADE_QUANTITY]) == ("7", "Limit", 3000.0)
    assert set(third) == set(first) | {names.ORDER_ID, names.ORDER_TYPE}


def test_bad_trades_are_refused_and_nothing_is_recorded(telemetry, tmp_path):
    monitor = BacktestMonitor(telemetry)
    bad = [
        (("600519.SH", "hold", 1.0, 1, "s"), "action 'hold'"),
        (("600519.SH", "buy", math.nan, 1, "s"), "price nan"),
        (("600519.SH", "buy", -1.0, 1, "s"), "price -1.0"),
        (("600519.SH", "buy", 1.0, 0, "s"), "quantity 0"),
        (("600519.SH", "buy", 1.0, True, "s"), "quantity True"),
        (("", "buy", 1.0, 1, "s"), "symbol ''"),
        (("600519.SH", "buy", 1.0, 1, " "), "strategy ' '"),
        (("600519.SH", "buy", 1.0, 1, "s", "2024-03-01"), "timestamp '2024-03-01'"),
        # Times the exporters and the journal could not store (int64 nanoseconds).
        (("600519.SH", "buy", 1.0, 1, "s", -1), "timestamp -1"),
        (("600519.SH", "buy", 1.0, 1, "s", dt.datetime(1960, 1, 1)), "timestamp datetime"),
        (("600519.SH", "buy", 1.0, 1, "s", 2**64), "timestamp 18446744073709551616"),
        (("600519.SH", "buy", 1.0, 10**400, "s"), "quantity 1000"),
        (("600519.SH", "buy", 1e200, 1e200, "s"), "notional"),
        ((600519, "buy", 1.0, 1, "s"), "symbol 600519"),
        # The order a fill belongs to: an integer id and a type, together.
        (("600519.SH", "buy", 1.0, 1, "s", None, 7), "order_type None"),
        (("600519.SH", "buy", 1.0, 1, "s", None, None, "Market"), "order_id None"),
        (("600519.SH", "buy", 1.0, 1, "s", None, "7", "Market"), "order_id '7'"),
        (("600519.SH", "buy", 1.0, 1, "s", None, True, "Market"), "order_id True"),
        (("600519.SH", "buy", 1.0, 1, "s", None, 2**63, "Market"), "order_id 9223372036854775808"),
        (("600519.SH", "buy", 1.0, 1, "s", None, 7, " "), "order_type ' '"),
        (("600519.SH", "buy", 1.0, 1, "s", None, 7, "Market\r\nforged"), "order_type 'Market\\\\r\\\\nforged': holds '\\\\r'"),
    ]
    for arguments, message in bad:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            monitor.record_trade(*arguments)
    assert monitor.get_trade_history() == []
    monitor.close()
    telemetry.shutdown()
    assert not last_points(tmp_path / "metrics.jsonl", names.TRADES_COUNTER)
    assert not [r for r in log_records(tmp_path / "logs.jsonl", missing_ok=True) if attrs(r).get(names.TRADE_SIDE)]


def test_history_filters_by_strategy_symbol_action_and_time(telemetry):
    monitor = BacktestMonitor(telemetry)
    for day in range(10):
        for strategy, symbol in (("a", "600519.SH"), ("a", "000001.SZ"), ("b", "600519.SH")):
            monitor.record_trade(symbol, "buy" if day % 2 else "sell", 10.0 + day, 100, strategy, timestamp=BAR + dt.timedelta(days=day))
    history = monitor.get_trade_history(strategy="a", symbol="600519.SH", action="buy", start=BAR + dt.timedelta(days=2), end=BAR + dt.timedelta(days=8))
    assert [t.price for t in history] == [13.0, 15.0, 17.0]
    assert len(monitor.get_trade_history(symbol="600519.SH", limit=4)) == 4
    assert {t.strategy for t in monitor.get_trade_history(symbol="000001.SZ")} == {"a"}
    with pytest.raises(ValueError, match="limit -1"):
        monitor.get_trade_history(limit=-1)
    monitor.close()


def test_portfolio_snapshots_become_gauges_with_drawdown_and_return(telemetry, tmp_path):
    monitor = BacktestMonitor(telemetry)
    for value in (1_000_000.0, 1_200_000.0, 900_000.0):
        monitor.record_portfolio(value, value / 2, {"600519.SH": 100, "000001.SZ": 0}, "dual_ma", timestamp=BAR)
    monitor.close()
    telemetry.shutdown()
    key = ((names.STRATEGY, "dual_ma"),)
    assert last_points(tmp_path / "metrics.jsonl", names.PORTFOLIO_DRAWDOWN_GAUGE)[key]["asDouble"] == pytest.approx(0.25)
    assert last_points(tmp_path / "metrics.jsonl", names.PORTFOLIO_RETURN_GAUGE)[key]["asDouble"] == pytest.approx(-0.1)
    assert int(last_points(tmp_path / "metrics.jsonl", names.PORTFOLIO_POSITIONS_GAUGE)[key].get("asInt", 0)) == 1 or \
        last_points(tmp_path / "metrics.jsonl", names.PORTFOLIO_POSITIONS_GAUGE)[key].get("asDouble") == 1
    with pytest.raises(ValueError, match="positions"):
        monitor.record_portfolio(1.0, 1.0, [("600519.SH", 1)], "dual_ma")
    # Symbols seen before are checked as closely: a bad quantity is refused.
    for bad in (math.nan, math.inf, True, "100", 10**400):
        with pytest.raises(ValueError, match=r"positions\['600519.SH'\]"):
            monitor.record_portfolio(1.0, 1.0, {"000001.SZ": 0.0, "600519.SH": bad}, "dual_ma")
    # And a known strategy's value and cash likewise.
    for field, bad in (("value", math.nan), ("value", True), ("cash", -math.inf), ("cash", "1")):
        arguments = {"value": 1.0, "cash": 1.0, field: bad}
        with pytest.raises(ValueError, match=f"^{field} "):
            monitor.record_portfolio(arguments["value"], arguments["cash"], {"600519.SH": 1}, "dual_ma")
    with pytest.raises(ValueError, match="^strategy "):
        monitor.record_portfolio(1.0, 1.0, {"600519.SH": 1}, "dual_ma\n")
    history = monitor.get_portfolio_history(strategy="dual_ma")
    assert len(history) == 3 and history[-1].positions == {"000001.SZ": 0.0, "600519.SH": 100.0}


def test_whole_a_share_universe_stays_under_the_series_limit(telemetry, tmp_path):
    monitor = BacktestMonitor(telemetry)
    for number in range(5_000):
        monitor.record_trade(f"{number:06d}.SZ", "buy", 10.0, 100, "universe", timestamp=BAR)
    monitor.close()
    telemetry.shutdown()
    counts = last_points(tmp_path / "metrics.jsonl", names.TRADES_COUNTER)
    assert len(counts) == 2_000 + 1
    overflow = counts[((names.METRIC_OVERFLOW, True),)]
    assert int(overflow["asInt"]) == 3_000
    assert sum(int(p["asInt"]) for p in counts.values()) == 5_000
    alerts = [s for s in spans(tmp_path / "traces.jsonl", missing_ok=True)
              if s["name"] == names.ALERT_SPAN and attrs(s)[names.ALERT_NAME] == names.CARDINALITY_ALERT]
    assert len(alerts) == 1


KILLED_STRATEGY = textwrap.dedent(
    """
    import sys, time, rqa_otel
    from rqa_otel.trading.monitor import BacktestMonitor
    telemetry = rqa_otel.setup(set_global=False, overrides={"export.directory": sys.argv[1]})
    monitor = BacktestMonitor(telemetry, commit_interval_s=0.05)
    n = 0
    while True:
        n += 1
        monitor.record_trade("600519.SH", "buy", 10.0, n, "killed", timestamp=1_700_000_000_000_000_000 + n)
        if n % 1000 == 0:
            print(n, time.monotonic(), flush=True)
    """
)


def test_trades_older_than_the_commit_interval_survive_kill_9(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", KILLED_STRATEGY, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    reports = []
    while len(reports) < 20:
        line = process.stdout.readline()
        assert line, "the strategy process died"
        count, at = line.split()
        reports.append((int(count), float(at)))
    time.sleep(1.2)  # the strategy keeps trading at full rate
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = time.monotonic()
    # The documented bound: a trade is committed within one commit interval
    # plus one commit, well under a second at full rate on this machine.
    guaranteed = max(count for count, at in reports if at <= killed_at - 1.0)
    rows = sqlite3.connect(tmp_path / "trades.db").execute("SELECT quantity FROM trades ORDER BY id").fetchall()
    quantities = [int(q) for (q,) in rows]
    assert len(quantities) >= guaranteed
    assert quantities == list(range(1, len(quantities) + 1)), "whole rows, in order, none missing"


@pytest.mark.parametrize(
    "filters",
    [
        {"strategy": "a", "symbol": "600519.SH"},
        {"strategy": "a"},
        {"symbol": "600519.SH"},
        {"action": "buy"},
        {"start": BAR, "end": BAR + dt.timedelta(days=3)},
        {"strategy": "a", "symbol": "600519.SH", "action": "sell", "start": BAR, "limit": 3},
    ],
)
def test_every_history_filter_is_served_by_an_index(tmp_path, filters):
    """SQLite's own plan: the trades table is searched through an index, never scanned."""
    from rqa_otel.trading.journal import SCHEMA
    from rqa_otel.trading.monitor import history_query

    sql, parameters = history_query(**filters)
    journal = sqlite3.connect(tmp_path / "plan.db")
    journal.executescript(SCHEMA)
    plan = [row[3] for row in journal.execute("EXPLAIN QUERY PLAN " + sql, parameters)]
    assert any(step.startswith("SEARCH trades USING INDEX") for step in plan), plan
    assert not any(step.startswith("SCAN trades") for step in plan), plan


def test_the_notional_histogram_has_its_own_series_limit(telemetry, tmp_path):
    """The histogram is by strategy: past the limit, strategies share the overflow point; one alert in all."""
    monitor = BacktestMonitor(telemetry, series_limit=3)
    for number in range(5):
        monitor.record_trade("600519.SH", "buy", 10.0, 100 * (number + 1), f"strategy_{number}", timestamp=BAR)
    monitor.close()
    telemetry.shutdown()
    points = last_points(tmp_path / "metrics.jsonl", names.TRADE_NOTIONAL_HISTOGRAM)
    assert len(points) == 3 + 1
    overflow = points[((names.METRIC_OVERFLOW, True),)]
    assert int(overflow["count"]) == 2 and float(overflow["sum"]) == 4_000.0 + 5_000.0
    alerts = [s for s in spans(tmp_path / "traces.jsonl", missing_ok=True)
              if s["name"] == names.ALERT_SPAN and attrs(s)[names.ALERT_NAME] == names.CARDINALITY_ALERT]
    assert len(alerts) == 1


FIRST_LAYOUT = """
CREATE TABLE trades (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, strategy TEXT NOT NULL, symbol TEXT NOT NULL,
    action TEXT NOT NULL, price REAL NOT NULL, quantity REAL NOT NULL, time_ns INTEGER NOT NULL);
CREATE INDEX trades_by_strategy_symbol ON trades (strategy, symbol, time_ns);
CREATE INDEX trades_by_symbol ON trades (symbol, time_ns);
CREATE INDEX trades_by_time ON trades (time_ns);
CREATE TABLE portfolio (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, strategy TEXT NOT NULL, value REAL NOT NULL,
    cash REAL NOT NULL, positions TEXT NOT NULL, time_ns INTEGER NOT NULL);
INSERT INTO trades VALUES (1, 'r1', 'a', '600519.SH', 'buy', 10.5, 100, 1700000000000000000);
INSERT INTO trades VALUES (2, 'r1', 'a', '600519.SH', 'sell', 11.5, 100, 1700000000000000001);
INSERT INTO trades VALUES (3, 'r2', 'b', '000001.SZ', 'buy', 9.5, 300, 1700000000000000002);
INSERT INTO portfolio VALUES (1, 'r1', 'a', 1000.0, 500.0, '{}', 1700000000000000000);
"""


def test_a_journal_of_the_first_layout_is_converted_with_every_row(telemetry, tmp_path):
    """The first release kept strings in every trade row; opening such a journal converts it, nothing lost."""
    path = tmp_path / "old.db"
    sqlite3.connect(path).executescript(FIRST_LAYOUT)
    monitor = BacktestMonitor(telemetry, journal_path=path)
    assert [(t.strategy, t.symbol, t.action, t.price, t.run_id) for t in monitor.get_trade_history()] == [
        ("a", "600519.SH", "buy", 10.5, "r1"), ("a", "600519.SH", "sell", 11.5, "r1"), ("b", "000001.SZ", "buy", 9.5, "r2"),
    ]
    monitor.record_trade("600519.SH", "buy", 12.0, 100, "a", timestamp=BAR)
    assert len(monitor.get_trade_history(strategy="a", symbol="600519.SH")) == 3
    monitor.close()
    journal = sqlite3.connect(path)
    assert journal.execute("SELECT count(*) FROM portfolio").fetchone()[0] == 1
    assert [row[0] for row in journal.execute("SELECT id FROM trades ORDER BY id")] == [1, 2, 3, 4]


def test_an_idle_journal_sleeps_and_still_commits_the_next_trade_on_its_own(tmp_path):
    """No wake-ups while nothing is queued (the writer used to poll 20 times a
    second); the first trade after a quiet spell still reaches the file
    within the commit interval, without a flush."""
    import threading

    from rqa_otel.trading.journal import TradeJournal

    others = set(threading.enumerate())  # other tests' journals may still be open
    journal = TradeJournal(tmp_path / "idle.db")
    try:
        (writer,) = [t for t in threading.enumerate() if t.name == "rqa-otel trade journal" and t not in others]

        def wake_ups() -> int:
            with open(f"/proc/self/task/{writer.native_id}/status") as status:
                fields = dict(line.split(":", 1) for line in status)
            return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])

        time.sleep(0.1)
        before = wake_ups()
        time.sleep(0.6)
        assert wake_ups() - before <= 1
        journal.append_trade(("run", "idle", "600519.SH", "buy", 10.0, 100.0, 1_700_000_000_000_000_000))
        deadline = time.monotonic() + 5.0
        rows = []
        while not rows and time.monotonic() < deadline:
            time.sleep(0.02)
            reader = sqlite3.connect(tmp_path / "idle.db")
            rows = reader.execute("SELECT strategy, quantity FROM trade_rows").fetchall()
            reader.close()
        assert rows == [("idle", 100.0)]
    finally:
        journal.close()
