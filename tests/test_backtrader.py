"""backtrader instrumented: a real backtrader run on generated OHLC data,
one-call and unmodified under `rqa-otel run`, checked against backtrader's own broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from otlp_files import attributes as attrs
from otlp_files import log_records, spans
from otlp_files import last_points as otlp_last_points
from rqa_otel import names

backtrader = pytest.importorskip("backtrader")

BIN = Path(sys.executable).parent

# An unmodified backtrader script: no telemetry code. It prints what its own
# notifications and broker say, for the test to compare with the telemetry.
SCRIPT = textwrap.dedent(
    """
    import datetime, json, random, sys
    import backtrader as bt

    def write_bars(path):
        rng = random.Random(7)
        price, day = 20.0, datetime.date(2024, 1, 1)
        with open(path, "w") as out:
            out.write("date,open,high,low,close,volume\\n")
            for _ in range(160):
                day += datetime.timedelta(days=1)
                close = max(1.0, price * (1 + rng.gauss(0, 0.02)))
                out.write(f"{day},{price:.2f},{max(price, close) * 1.01:.2f},{min(price, close) * 0.99:.2f},{close:.2f},1000\\n")
                price = close

    class Crossover(bt.Strategy):
        params = (("fast", 5), ("slow", 20), ("size", 300))

        def __init__(self):
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=self.p.fast), bt.ind.SMA(period=self.p.slow))
            self.fills, self.statuses = [], []

        def notify_order(self, order):
            self.statuses.append(order.getstatusname())
            if order.status == order.Completed:
                self.fills.append(["buy" if order.isbuy() else "sell", order.executed.price, abs(order.executed.size)])

        def next(self):
            if self.cross > 0:
                self.buy(size=self.p.size)
            elif self.cross < 0 and self.position:
                self.close()
            if len(self) == 100:
                self.buy(size=10_000_000)  # more than the cash: the broker refuses it (Margin)

    def main(directory):
        write_bars(f"{directory}/bars.csv")
        cerebro = bt.Cerebro()
        cerebro.broker.setcash(100_000.0)
        cerebro.adddata(bt.feeds.GenericCSVData(
            dataname=f"{directory}/bars.csv", dtformat="%Y-%m-%d", openinterest=-1, headers=True), name="600519.SH")
        cerebro.addstrategy(Crossover, fast=5)
        [strategy] = cerebro.run()
        return {"value": cerebro.broker.getvalue(), "cash": cerebro.broker.getcash(),
                "fills": strategy.fills, "statuses": strategy.statuses,
                "position": strategy.getposition(strategy.datas[0]).size}

    if __name__ == "__main__":
        print(json.dumps(main(sys.argv[1])))
    """
)


def last_points(directory, name):
    """The last value of each series of ``name``."""
    points = otlp_last_points(Path(directory) / "metrics.jsonl", name)
    return {key: point.get("asDouble", point.get("asInt")) for key, point in points.items()}


FILL_STATUSES = {"Partial", "Completed", "Canceled", "Expired", "Margin", "Rejected"}


def check_telemetry_matches_backtrader(directory, result, orders_detail="fills", fill_events=False):
    """What a user would check: the journal's fills, the order counts, the
    last portfolio gauges and the run span agree with backtrader itself.
    ``orders_detail``: instrumentation.backtrader.orders (the default, fills,
    leaves out Submitted and Accepted)."""
    import sqlite3

    journal = sqlite3.connect(Path(directory) / "trades.db")
    fills = journal.execute("SELECT action, price, quantity FROM trade_rows ORDER BY id").fetchall()
    assert [list(fill) for fill in fills] == result["fills"] and len(fills) >= 4

    orders = last_points(directory, names.ORDERS_COUNTER)
    by_status = Counter()
    for key, count in orders.items():
        by_status[dict(key)[names.ORDER_STATUS]] += int(count)
    expected = Counter(s for s in result["statuses"] if orders_detail == "all" or s in FILL_STATUSES)
    assert by_status == expected and by_status["Margin"] == 1

    key = ((names.STRATEGY, "Crossover"),)
    assert last_points(directory, names.PORTFOLIO_VALUE_GAUGE)[key] == pytest.approx(result["value"])
    assert last_points(directory, names.PORTFOLIO_CASH_GAUGE)[key] == pytest.approx(result["cash"])
    assert int(last_points(directory, names.PORTFOLIO_POSITIONS_GAUGE)[key]) == (1 if result["position"] else 0)

    [run] = [s for s in spans(Path(directory) / "traces.jsonl", missing_ok=True) if s["name"] == names.BACKTEST_SPAN]
    assert attrs(run)[names.STRATEGY] == "Crossover" and attrs(run)[names.STRATEGY_PARAMETER_PREFIX + "slow"] == "20"
    records = list(log_records(Path(directory) / "logs.jsonl", missing_ok=True))
    trades = [r for r in records if attrs(r).get(names.TRADE_SIDE) and names.ORDER_STATUS not in attrs(r)]
    assert len(trades) == len(fills) and {r["traceId"] for r in trades} == {run["traceId"]}
    # Fills carry the bar's simulated time (2024), not the wall clock.
    assert all(int(r["timeUnixNano"]) // 10**9 < 1_735_689_600 for r in trades)
    rejected = [r for r in records if attrs(r).get(names.ORDER_STATUS) == "Margin"]
    assert len(rejected) == 1 and rejected[0]["severityText"] == "WARN"
    # Each fill's trade event names its order; at the default level that is
    # the fill's only event (no rqa.order event beside it), at `all` both.
    assert all(int(attrs(r)[names.ORDER_ID]) > 0 and attrs(r)[names.ORDER_TYPE] == "Market" for r in trades)
    completed = [r for r in records if attrs(r).get(names.ORDER_STATUS) == "Completed"]
    fill_events = fill_events or orders_detail == "all"
    assert len(completed) == (by_status["Completed"] if fill_events else 0)
    if fill_events:
        assert {attrs(r)[names.ORDER_ID] for r in completed} == {attrs(r)[names.ORDER_ID] for r in trades}


def test_one_call_instruments_an_unmodified_strategy(tmp_path):
    code = (
        "import sys, json, rqa_otel\n"
        f"telemetry = rqa_otel.setup(overrides={{'export.directory': {str(tmp_path)!r}}})\n"
        "assert rqa_otel.instrument_backtrader() and rqa_otel.instrument_backtrader()  # idempotent\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "import strategy\n"
        "print(json.dumps(strategy.main(sys.argv[2])))\n"
    )
    (tmp_path / "strategy.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    completed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "strategy.py"), str(tmp_path)],
                               capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 0, completed.stderr
    check_telemetry_matches_backtrader(tmp_path, json.loads(completed.stdout.splitlines()[-1]))


def test_unmodified_script_under_rqa_otel_run(tmp_path):
    (tmp_path / "strategy.py").write_text(SCRIPT)
    telemetry = tmp_path / "telemetry"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    env["RQA_EXPORT__DIRECTORY"] = str(telemetry)
    env["RQA_INSTRUMENTATION__BACKTRADER__ORDERS"] = "all"  # Submitted and Accepted too
    completed = subprocess.run([str(BIN / "rqa-otel"), "run", "--", sys.executable, str(tmp_path / "strategy.py"), str(tmp_path)],
                               capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 0, completed.stderr
    check_telemetry_matches_backtrader(telemetry, json.loads(completed.stdout.splitlines()[-1]), orders_detail="all")


def test_uninstrument_restores_cerebro_and_a_broken_telemetry_never_breaks_the_strategy(tmp_path, monkeypatch):
    from rqa_otel.instrumentation import backtrader as instrumentation

    original = backtrader.Cerebro.run
    instrumentor = instrumentation.BacktraderInstrumentor()
    instrumentor.instrument(telemetry=object())  # not a Telemetry handle: every hook fails
    try:
        assert backtrader.Cerebro.run is not original
        (tmp_path / "broken_telemetry_strategy.py").write_text(SCRIPT)
        monkeypatch.syspath_prepend(str(tmp_path))
        import broken_telemetry_strategy

        result = broken_telemetry_strategy.main(str(tmp_path))
        assert len(result["fills"]) >= 4  # the backtest ran to its end
    finally:
        instrumentor.uninstrument()
    assert backtrader.Cerebro.run is original
    instrumentor.uninstrument()  # twice is harmless


@pytest.mark.parametrize("fill_events", [False, True])
def test_the_analyzer_alone_reports_a_run_without_patching(tmp_path, monkeypatch, fill_events):
    """cerebro.addanalyzer(TelemetryAnalyzer, telemetry=...): no instrument() call, Cerebro untouched.
    instrumentation.backtrader.fill_order_events: each fill also gets its rqa.order event."""
    import rqa_otel
    from rqa_otel.instrumentation.backtrader import TelemetryAnalyzer

    (tmp_path / "analyzer_strategy.py").write_text(SCRIPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    import analyzer_strategy

    original = backtrader.Cerebro.run
    telemetry = rqa_otel.setup(overrides={
        "export.directory": str(tmp_path), "instrumentation.backtrader.fill_order_events": fill_events,
    }, set_global=False)
    analyzer_strategy.write_bars(tmp_path / "bars.csv")
    cerebro = backtrader.Cerebro()
    cerebro.broker.setcash(100_000.0)
    cerebro.adddata(backtrader.feeds.GenericCSVData(
        dataname=str(tmp_path / "bars.csv"), dtformat="%Y-%m-%d", openinterest=-1, headers=True), name="600519.SH")
    cerebro.addstrategy(analyzer_strategy.Crossover)
    cerebro.addanalyzer(TelemetryAnalyzer, telemetry=telemetry)
    [strategy] = cerebro.run()
    telemetry.shutdown()
    assert backtrader.Cerebro.run is original
    check_telemetry_matches_backtrader(tmp_path, {
        "value": cerebro.broker.getvalue(), "cash": cerebro.broker.getcash(), "fills": strategy.fills,
        "statuses": strategy.statuses, "position": strategy.getposition(strategy.datas[0]).size,
    }, fill_events=fill_events)


def test_strategy_name_given_to_rqa_otel_run_names_the_trading_data(tmp_path):
    """`rqa-otel run --strategy NAME`: NAME is the rqa.strategy of the journal,
    the trade and portfolio metrics and the run span; the class has its own attribute."""
    (tmp_path / "strategy.py").write_text(SCRIPT)
    telemetry = tmp_path / "telemetry"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    env["RQA_EXPORT__DIRECTORY"] = str(telemetry)
    completed = subprocess.run(
        [str(BIN / "rqa-otel"), "run", "--strategy", "mean_rev_v2", "--", sys.executable, str(tmp_path / "strategy.py"), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.splitlines()[-1])

    import rqa_otel
    from rqa_otel.trading import BacktestMonitor

    reader = rqa_otel.setup(overrides={"export.directory": str(tmp_path / "reader")}, set_global=False)
    try:
        history = BacktestMonitor(reader, journal_path=telemetry / "trades.db").get_trade_history(strategy="mean_rev_v2")
    finally:
        reader.shutdown()
    assert [[t.action, t.price, t.quantity] for t in history] == result["fills"]
    key = ((names.STRATEGY, "mean_rev_v2"),)
    assert last_points(telemetry, names.PORTFOLIO_VALUE_GAUGE)[key] == pytest.approx(result["value"])
    trade_series = last_points(telemetry, names.TRADES_COUNTER)
    assert {dict(k)[names.STRATEGY] for k in trade_series} == {"mean_rev_v2"}
    [run] = [s for s in spans(telemetry / "traces.jsonl") if s["name"] == names.BACKTEST_SPAN]
    assert attrs(run)[names.STRATEGY] == "mean_rev_v2" and attrs(run)[names.STRATEGY_CLASS] == "Crossover"


@pytest.mark.parametrize("zone_hours", [None, -10])
def test_intraday_bars_give_one_portfolio_snapshot_per_trading_day(tmp_path, zone_hours):
    """5-minute bars over three days: a snapshot at the first bar of each
    day (in cerebro's time zone, when it has one) and one at the end, not
    one per bar."""
    import datetime as dt

    import rqa_otel
    from otlp_files import log_records
    from rqa_otel.instrumentation.backtrader import TelemetryAnalyzer

    lines, day = ["datetime,open,high,low,close,volume"], dt.datetime(2024, 3, 4, 9, 30)
    for _ in range(3):
        for step in range(67):  # 09:30 .. 15:00
            lines.append(f"{day + dt.timedelta(minutes=5 * step):%Y-%m-%d %H:%M:%S},10,10.5,9.5,10,1000")
        day += dt.timedelta(days=1)
    (tmp_path / "bars.csv").write_text("\n".join(lines) + "\n")

    class BuyOnce(backtrader.Strategy):
        def next(self):
            if len(self) == 3:
                self.buy(size=100)

    telemetry = rqa_otel.setup(overrides={"export.directory": str(tmp_path)}, set_global=False)
    class Zone(dt.tzinfo):  # backtrader adds a localize() method to its time zone (pytz's API)
        def utcoffset(self, moment):
            return dt.timedelta(hours=zone_hours)

        def dst(self, moment):
            return dt.timedelta(0)

    zone = None if zone_hours is None else Zone()
    cerebro = backtrader.Cerebro(tz=zone)
    cerebro.adddata(backtrader.feeds.GenericCSVData(
        dataname=str(tmp_path / "bars.csv"), dtformat="%Y-%m-%d %H:%M:%S", openinterest=-1, headers=True,
        timeframe=backtrader.TimeFrame.Minutes, compression=5), name="600519.SH")
    cerebro.addstrategy(BuyOnce)
    cerebro.addanalyzer(TelemetryAnalyzer, telemetry=telemetry)
    cerebro.run()
    telemetry.shutdown()

    snapshots = [r for r in log_records(tmp_path / "logs.jsonl") if names.PORTFOLIO_HOLDINGS in attrs(r)]
    times = [dt.datetime.fromtimestamp(int(r["timeUnixNano"]) / 1e9, dt.timezone.utc).replace(tzinfo=None) for r in snapshots]
    # The bars' times as backtrader shows them (in cerebro's zone), taken as UTC.
    shift = dt.timedelta(hours=zone_hours or 0)
    day1, day2, day3 = (dt.datetime(2024, 3, d) for d in (4, 5, 6))
    if zone_hours is None:
        expected = [day1 + dt.timedelta(hours=9.5), day2 + dt.timedelta(hours=9.5), day3 + dt.timedelta(hours=9.5),
                    day3 + dt.timedelta(hours=15)]
    else:  # UTC-10: each session starts at 23:30 of the day before; the day turns at 10:00 UTC
        expected = [day1 + dt.timedelta(hours=9.5) + shift] + [d + dt.timedelta(hours=10) + shift for d in (day1, day2, day3)] + [
            day3 + dt.timedelta(hours=15) + shift]
    assert times == expected
