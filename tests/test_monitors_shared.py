"""Several BacktestMonitors on one telemetry handle (one per backtest in a
loop) each record: the trade counters count every trade and the portfolio
gauges show the latest snapshot."""

from __future__ import annotations

import datetime as dt

from otlp_files import last_points
from rqa_otel import names
from rqa_otel.trading import BacktestMonitor


def test_three_monitors_in_a_loop_on_one_handle_all_feed_the_metrics(file_telemetry, tmp_path):
    telemetry = file_telemetry()
    day = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    for number, value in enumerate((1_000_000.0, 1_010_000.0, 990_000.0)):
        monitor = BacktestMonitor(telemetry, journal_path=tmp_path / f"run{number}.db")
        with monitor.run("dual_ma", {"fast": 5 + number}):
            monitor.record_trade("600519.SH", "buy", 1500.0 + number, 100, "dual_ma", timestamp=day)
            monitor.record_portfolio(value, value - 150_000.0, {"600519.SH": 100}, "dual_ma", timestamp=day)
        monitor.close()
    telemetry.shutdown()
    metrics = tmp_path / "metrics.jsonl"
    [trades] = last_points(metrics, names.TRADES_COUNTER).values()
    assert int(trades.get("asInt", trades.get("asDouble"))) == 3
    [volume] = last_points(metrics, names.TRADE_VOLUME_COUNTER).values()
    assert float(volume.get("asDouble", volume.get("asInt"))) == 300.0
    [portfolio] = last_points(metrics, names.PORTFOLIO_VALUE_GAUGE).values()
    assert float(portfolio.get("asDouble", portfolio.get("asInt"))) == 990_000.0
    [histogram] = last_points(metrics, names.TRADE_NOTIONAL_HISTOGRAM).values()
    assert int(histogram["count"]) == 3
