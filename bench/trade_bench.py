"""Trade recording, one measurement per process: `python bench/trade_bench.py MODE DIR N`.

- project: BacktestMonitor.record_trade with metrics, the trade event and the
  journal all on (file exporter), trades/s in the calling thread, with the
  background export and journal threads running as they do in a backtest
- anchor: the same telemetry done with plain OTel API calls (three counter
  adds, a histogram record and a span event per trade)
"""

from __future__ import annotations

import json
import sys
import time

import rqa_otel
from rqa_otel import names

SYMBOLS = [f"{n:06d}.SZ" for n in range(50)]


def project(directory: str, count: int) -> dict:
    from rqa_otel.trading import BacktestMonitor

    telemetry = rqa_otel.setup(strategy="bench", overrides={"export.directory": directory}, set_global=False)
    monitor = BacktestMonitor(telemetry)
    with monitor.run("bench"):
        started = time.perf_counter()
        for i in range(count):
            monitor.record_trade(SYMBOLS[i % 50], "buy" if i % 2 else "sell", 10.0 + i % 7, 100, "bench",
                                 timestamp=1_704_067_200_000_000_000 + i)
        elapsed = time.perf_counter() - started
    monitor.close()
    telemetry.shutdown(timeout_s=60)
    return {"trades_per_s": count / elapsed}


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


if __name__ == "__main__":
    mode, directory, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps({"project": project, "anchor": anchor}[mode](directory, count)))
