"""backtrader_churn: a generated 200-symbol, 2-year daily backtest that
churns (every symbol changes position every fourth bar: ~25,000 fills),
run as a plain backtrader script and unmodified under `rqa-otel run` with
the embedded default (local files and journal), interleaved. Reports both
wall times (whole processes: start-up and the final flush included), the
fills, and the bytes written per fill.

    python bench/backtrader_churn.py generate DIR      # the data (CSV per symbol)
    python bench/backtrader_churn.py run DIR           # the backtest (prints its fills)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SYMBOLS = 200
DAYS = 2 * 365
BIN = os.path.dirname(sys.executable)


def generate(directory: str) -> None:
    rng = random.Random(2025)
    os.makedirs(directory, exist_ok=True)
    for number in range(SYMBOLS):
        price, day = rng.uniform(5, 200), dt.date(2023, 1, 2)
        lines = ["date,open,high,low,close,volume"]
        for _ in range(DAYS):
            day += dt.timedelta(days=1)
            if day.weekday() >= 5:
                continue
            close = max(1.0, price * (1 + rng.gauss(0, 0.02)))
            lines.append(f"{day},{price:.2f},{max(price, close) * 1.01:.2f},{min(price, close) * 0.99:.2f},{close:.2f},100000")
            price = close
        with open(os.path.join(directory, f"{600000 + number}.SH.csv"), "w") as out:
            out.write("\n".join(lines) + "\n")


def run(directory: str) -> None:
    import backtrader as bt

    class Churn(bt.Strategy):
        def __init__(self):
            self.fills = 0

        def notify_order(self, order):
            if order.status == order.Completed:
                self.fills += 1

        def next(self):
            bar = len(self)
            for index, data in enumerate(self.datas):
                if (bar + index) % 4 == 0:
                    if self.getposition(data).size:
                        self.close(data=data)
                    else:
                        self.buy(data=data, size=100)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(1e9)
    for name in sorted(os.listdir(directory)):
        cerebro.adddata(bt.feeds.GenericCSVData(
            dataname=os.path.join(directory, name), dtformat="%Y-%m-%d", openinterest=-1, headers=True,
        ), name=name[:-4])
    cerebro.addstrategy(Churn)
    [strategy] = cerebro.run()
    print(json.dumps({"fills": strategy.fills}))


def _timed(command: list[str], env: dict[str, str], cpu: list[float]) -> tuple[float, dict]:
    """Wall time; the process's CPU time (user + system) goes to ``cpu``:
    on a shared, loaded machine it varies far less than the wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return elapsed, json.loads(completed.stdout.splitlines()[-1])


def _bytes(directory: str) -> dict[str, int]:
    return {name: os.path.getsize(os.path.join(directory, name)) for name in sorted(os.listdir(directory))}


def measure(repeat: int) -> dict:
    plain, instrumented, written = [], [], []
    plain_cpu: list[float] = []
    instrumented_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        data = os.path.join(directory, "data")
        generate(data)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
        fills = 0
        for index in range(repeat):
            elapsed, result = _timed([sys.executable, __file__, "run", data], base, plain_cpu)
            plain.append(elapsed)
            telemetry = os.path.join(directory, f"telemetry{index}")
            env = dict(base, RQA_EXPORT__DIRECTORY=telemetry, RQA_RUN__QUIET="true")
            elapsed, result = _timed(
                [os.path.join(BIN, "rqa-otel"), "run", "--", sys.executable, __file__, "run", data], env, instrumented_cpu
            )
            instrumented.append(elapsed)
            fills = result["fills"]
            written.append(_bytes(telemetry))
    last = written[-1]
    total = sum(last.values())
    return {
        "plain": statistics.median(plain), "instrumented": statistics.median(instrumented),
        "fills": fills, "symbols": SYMBOLS, "bytes_per_fill": round(total / max(fills, 1)),
        "logs_jsonl_bytes": last.get("logs.jsonl", 0),
        "plain_cpu_s": round(statistics.median(plain_cpu), 3), "instrumented_cpu_s": round(statistics.median(instrumented_cpu), 3),
        "cpu_ratio": round(statistics.median(plain_cpu) / statistics.median(instrumented_cpu), 3),
        "per_fill_cpu_us": round((statistics.median(instrumented_cpu) - statistics.median(plain_cpu)) / max(fills, 1) * 1e6, 1),
        "repeat": repeat, "load_average": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2])
    elif sys.argv[1] == "run":
        run(sys.argv[2])
