"""A 1,000,000-trade backtest: every trade recorded is a journal row, an exported trade event and part of the exported counters."""

from __future__ import annotations

import sqlite3
from collections import defaultdict

import rqa_otel
from otlp_files import attributes as attrs
from otlp_files import items
from rqa_otel import names
from rqa_otel.trading.monitor import BacktestMonitor

TRADES = 1_000_000
STRATEGIES = ("dual_ma", "mean_reversion")
SYMBOLS = [f"{n:06d}.SZ" for n in range(300)]  # 2 x 300 x 2 = 1,200 series: under the limit


def test_a_million_trades_end_in_exact_equality(tmp_path):
    telemetry = rqa_otel.setup(overrides={"export.directory": str(tmp_path)}, set_global=False)
    monitor = BacktestMonitor(telemetry)
    expected: dict[tuple[str, str, str], list] = defaultdict(lambda: [0, 0.0, 0.0])
    with monitor.run("backtest"):
        for i in range(TRADES):
            strategy, symbol, side = STRATEGIES[i % 2], SYMBOLS[(i // 2) % 300], "buy" if i % 3 else "sell"
            # Quarter prices and whole quantities: every sum is exact in a
            # float whatever the order of additions (the journal's SQL sums
            # its own way), so equality can be exact.
            price, quantity = 5.0 + (i % 400) * 0.25, 100 * (1 + i % 5)
            monitor.record_trade(symbol, side, price, quantity, strategy, timestamp=1_704_067_200_000_000_000 + i * 1000)
            totals = expected[(strategy, symbol, side)]
            totals[0] += 1
            totals[1] += quantity
            totals[2] += price * quantity
    monitor.close()
    assert telemetry.shutdown(timeout_s=120)

    journal = sqlite3.connect(tmp_path / "trades.db")
    rows = journal.execute(
        "SELECT strategy, symbol, action, count(*), sum(quantity), sum(price * quantity) FROM trade_rows GROUP BY 1, 2, 3"
    ).fetchall()
    assert {(s, y, a): [n, v, x] for s, y, a, n, v, x in rows} == expected
    assert journal.execute("SELECT count(*) FROM trades").fetchone()[0] == TRADES

    exported: dict[tuple[str, str, str], list] = defaultdict(lambda: [0, 0.0, 0.0])
    for metric in items(tmp_path / "metrics.jsonl", "resourceMetrics", "scopeMetrics", "metrics"):
        index = {names.TRADES_COUNTER: 0, names.TRADE_VOLUME_COUNTER: 1, names.TRADE_NOTIONAL_COUNTER: 2}.get(metric["name"])
        if index is None:
            continue
        for point in metric["sum"]["dataPoints"]:
            labels = attrs(point)
            value = point.get("asDouble", point.get("asInt"))
            # Cumulative sums: the last export of each series is its total.
            exported[(labels[names.STRATEGY], labels[names.STOCK], labels[names.TRADE_SIDE])][index] = (
                int(value) if index == 0 else float(value)
            )
    assert exported == expected

    [logs] = [counts for counts in telemetry.export_counts() if counts.signal == "logs"]
    assert (logs.exported, logs.failed) == (TRADES, 0), "one trade event per trade, none lost"
