"""Trade recording, one measurement per process: `python bench/trade_bench.py MODE DIR N`.

- project: BacktestMonitor.record_trade with metrics, the trade event and the
  journal all on (file exporter), trades/s in the calling thread, with the
  background export and journal threads running as they do in a backtest
- anchor: the same telemetry done with plain OTel API calls (three counter
  adds, a histogram record and a span event per trade)
- history: get_trade_history(strategy, symbol) on a journal of N trades,
  and the same query scanning the table (see history())
"""

from __future__ import annotations

import json
import sys
import time

import rqa_otel
from rqa_otel import names

SYMBOLS = [f"{n:06d}.SZ" for n in range(50)]


def project(directory: str, count: int) -> dict:
    from rqa_otel.trading.monitor import BacktestMonitor

    telemetry = rqa_otel.setup(strategy="bench", overrides={"export.directory": directory}, set_global=False)
    monitor = BacktestMonitor(telemetry)
    with monitor.run("bench"):
        started = time.perf_counter()
        for i in range(count):
            monitor.record_trade(SYMBOLS[i % 50], "buy" if i % 2 else "sell", 10.0 + i % 7, 100, "bench",
                                 timestamp=1_704_067_200_000_000_000 + i)
        elapsed = time.perf_counter() - started
    # What was still queued when the loop ended: its time counts in the
    # sustained rate (reported beside the row's calling-thread rate).
    monitor.flush(timeout_s=60)
    telemetry.force_flush(timeout_s=60)
    drained = time.perf_counter() - started
    monitor.close()
    telemetry.shutdown(timeout_s=60)
    return {"trades_per_s": count / elapsed, "trades_per_s_until_written": count / drained}


def anchor(directory: str, count: int) -> dict:
    telemetry = rqa_otel.setup(strategy="bench", overrides={"export.directory": directory}, set_global=False)
    meter, tracer = telemetry.meter, telemetry.tracer
    trades = meter.create_counter("anchor.trades")
    volume = meter.create_counter("anchor.volume")
    notional = meter.create_counter("anchor.notional")
    sizes = meter.create_histogram("anchor.notional_per_trade")
    with tracer.start_as_current_span("anchor run") as span:
        started = time.perf_counter()
        for i in range(count):
            price, quantity = 10.0 + i % 7, 100
            attributes = {names.STRATEGY: "bench", names.STOCK: SYMBOLS[i % 50], names.TRADE_SIDE: "buy" if i % 2 else "sell"}
            trades.add(1, attributes)
            volume.add(quantity, attributes)
            notional.add(price * quantity, attributes)
            sizes.record(price * quantity, {names.STRATEGY: "bench"})
            span.add_event(names.TRADE_EVENT, {**attributes, names.TRADE_PRICE: price, names.TRADE_QUANTITY: quantity},
                           timestamp=1_704_067_200_000_000_000 + i)
        elapsed = time.perf_counter() - started
    telemetry.shutdown(timeout_s=60)
    return {"trades_per_s": count / elapsed}


def history(directory: str, count: int) -> dict:
    """Strategy + symbol queries on a journal of ``count`` trades (4
    strategies x 1,000 symbols, both sides: ~250 trades per strategy and
    symbol, as a year of daily bars for an A-share book), through
    get_trade_history (SQL and building the Trade objects), against the same
    SQL and the same objects with the trades table scanned (NOT INDEXED).
    The journal is written by the journal's own writer."""
    import random
    import statistics

    from rqa_otel.trading.monitor import BacktestMonitor, Trade, history_query

    telemetry = rqa_otel.setup(strategy="bench", overrides={"export.directory": directory}, set_global=False)
    monitor = BacktestMonitor(telemetry)
    strategies = [f"strategy_{n}" for n in range(4)]
    symbols = [f"{n:06d}.SZ" for n in range(1000)]
    rng = random.Random(1)
    append = monitor.journal.append_trade
    for i in range(count):
        append(("run", strategies[i % 4], symbols[(i // 4) % 1000], "buy" if rng.random() < 0.5 else "sell",
                10.0 + i % 7, 100.0, 1_704_067_200_000_000_000 + i * 1_000_000_000))
    monitor.flush(timeout_s=600)

    def anchor_query(strategy: str, symbol: str) -> list:
        sql, parameters = history_query(strategy=strategy, symbol=symbol)
        sql = sql.replace("FROM trades JOIN", "FROM trades NOT INDEXED JOIN")
        import datetime as dt

        return [
            Trade(s, sym, a, p, q, dt.datetime.fromtimestamp(t / 1e9, dt.timezone.utc), r)
            for s, sym, a, p, q, t, r in monitor.journal.query(sql, parameters)
        ]

    project_ms, anchor_ms, sizes = [], [], []
    for _ in range(15):
        strategy, symbol = rng.choice(strategies), rng.choice(symbols)
        started = time.perf_counter()
        found = monitor.get_trade_history(strategy=strategy, symbol=symbol)
        project_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        scanned = anchor_query(strategy, symbol)
        anchor_ms.append((time.perf_counter() - started) * 1000)
        assert found == scanned, "the indexed and the scanning query disagree"
        sizes.append(len(found))
    monitor.close()
    telemetry.shutdown()
    return {"project_ms": statistics.median(project_ms), "anchor_ms": statistics.median(anchor_ms),
            "trades_per_query": statistics.median(sizes)}


if __name__ == "__main__":
    mode, directory, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps({"project": project, "anchor": anchor, "history": history}[mode](directory, count)))
