"""backtrader in the modes a quant uses on day one, under `rqa-otel run`:
optimization with pool workers (backtrader's `optimization` and
`strategy-selection` sample patterns) repeated, cheat-on-open, replay and
several data feeds in one process. Tiny data, so the whole file stays quick."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from otlp_files import LOG_RECORDS, METRICS, SPANS, attributes, requests
from rqa_otel import names

pytest.importorskip("backtrader")

BIN = Path(sys.executable).parent
REPEATS = 10

# backtrader's own patterns, unmodified in spirit: samples/optimization
# (optstrategy over a parameter range, maxcpus, optreturn) and
# samples/strategy-selection (a fetcher class whose __new__ picks the
# strategy by index). No telemetry code.
SCRIPT = textwrap.dedent(
    """
    import datetime, json, random, sys
    import backtrader as bt

    def write_bars(path, seed, bars=50):
        rng = random.Random(seed)
        price, day = 20.0, datetime.date(2024, 1, 1)
        with open(path, "w") as out:
            out.write("date,open,high,low,close,volume\\n")
            for _ in range(bars):
                day += datetime.timedelta(days=1)
                close = max(1.0, price * (1 + rng.gauss(0, 0.03)))
                out.write(f"{day},{price:.2f},{max(price, close) * 1.01:.2f},{min(price, close) * 0.99:.2f},{close:.2f},1000\\n")
                price = close

    class FillCount(bt.Analyzer):
        def start(self):
            self.fills = 0
        def notify_order(self, order):
            if order.status == order.Completed:
                self.fills += 1
        def get_analysis(self):
            return {"fills": self.fills}

    class SmaCross(bt.Strategy):
        params = (("period", 5),)
        def __init__(self):
            self.sma = bt.ind.SMA(period=self.p.period)
        def next(self):
            if self.data.close[0] > self.sma[0] and not self.position:
                self.buy(size=10)
            elif self.data.close[0] < self.sma[0] and self.position:
                self.close()

    class Momentum(bt.Strategy):
        params = (("lookback", 3),)
        def next(self):
            if len(self) > self.p.lookback and self.data.close[0] > self.data.close[-self.p.lookback]:
                if not self.position:
                    self.buy(size=5)
            elif self.position:
                self.close()

    class StFetcher(object):
        _STRATS = [SmaCross, Momentum]
        def __new__(cls, *args, **kwargs):
            idx = kwargs.pop("idx")
            return cls._STRATS[idx](*args, **kwargs)

    def cerebro_with_data(directory):
        cerebro = bt.Cerebro()
        cerebro.adddata(bt.feeds.GenericCSVData(
            dataname=f"{directory}/bars.csv", dtformat="%Y-%m-%d", openinterest=-1, headers=True), name="600519.SH")
        cerebro.addanalyzer(FillCount)
        return cerebro

    def main(directory, maxcpus):
        write_bars(f"{directory}/bars.csv", 7)
        fills = 0
        for repeat in range(int(sys.argv[3])):
            cerebro = cerebro_with_data(directory)
            if repeat % 2 == 0:   # samples/optimization
                cerebro.optstrategy(SmaCross, period=range(3, 6))
                results = cerebro.run(maxcpus=maxcpus, optreturn=True)
            else:                 # samples/strategy-selection
                cerebro.optstrategy(StFetcher, idx=[0, 1])
                results = cerebro.run(maxcpus=maxcpus, optreturn=False)
            for combination in results:
                for strategy in combination:
                    fills += strategy.analyzers.fillcount.get_analysis()["fills"]
        print(json.dumps({"fills": fills}))

    if __name__ == "__main__":
        main(sys.argv[1], int(sys.argv[2]))
    """
)


def run_env(directory, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    env.update({"RQA_EXPORT__DIRECTORY": str(directory), "RQA_RESOURCES__ENABLED": "false", **extra})
    return env


def by_pid(path: Path, keys: tuple[str, ...]):
    """(process.pid, item) for every span / log record / metric in a file."""
    for request in requests(path):
        for resource_item in request[keys[0]]:
            pid = attributes(resource_item["resource"])[names.PROCESS_PID]
            for scope_item in resource_item[keys[1]]:
                for item in scope_item[keys[2]]:
                    yield int(pid), item


def test_optimization_with_two_pool_workers_finishes_every_time_and_reports_each_combination(tmp_path):
    (tmp_path / "optimize.py").write_text(SCRIPT)
    telemetry = tmp_path / "telemetry"
    completed = subprocess.run(
        [BIN / "rqa-otel", "run", "--", sys.executable, tmp_path / "optimize.py", tmp_path, "2", str(REPEATS)],
        env=run_env(telemetry), capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stderr
    # No spurious warning or traceback: stderr holds at most rqa-otel's summary.
    assert "Traceback" not in completed.stderr and "telemetry is off" not in completed.stderr, completed.stderr
    fills = json.loads(completed.stdout.splitlines()[-1])["fills"]
    # The parent's pid: the run's own process (rqa-otel run execs the command).
    journal = sqlite3.connect(telemetry / "trades.db")
    rows = journal.execute("SELECT run_id, COUNT(*) FROM trade_rows GROUP BY run_id").fetchall()
    assert sum(count for _, count in rows) == fills > 0

    runs = {}
    for pid, span in by_pid(telemetry / "traces.jsonl", SPANS):
        if span["name"] == names.BACKTEST_SPAN:
            runs[attributes(span)[names.RUN_ID]] = (pid, attributes(span))
    # 5 optimization repeats x 3 periods + 5 selection repeats x 2 strategies.
    assert len(runs) == (REPEATS // 2) * 3 + (REPEATS // 2) * 2
    classes = Counter(span[names.STRATEGY_CLASS] for _, span in runs.values())
    assert classes == {"SmaCross": (REPEATS // 2) * 3 + REPEATS // 2, "Momentum": REPEATS // 2}
    periods = Counter(span.get(names.STRATEGY_PARAMETER_PREFIX + "period") for _, span in runs.values())
    assert periods["3"] == periods["4"] == REPEATS // 2  # each combination with its own parameters
    worker_pids = {pid for pid, _ in runs.values()}
    assert len(worker_pids) >= 2  # pool workers, each reporting as itself

    trades, orders, portfolios, filled = Counter(), Counter(), Counter(), defaultdict(set)
    for pid, record in by_pid(telemetry / "logs.jsonl", LOG_RECORDS):
        record_attributes = attributes(record)
        run_id = record_attributes.get(names.RUN_ID)
        if run_id in runs:
            assert runs[run_id][0] == pid  # recorded by the worker that ran the combination
            if names.ORDER_STATUS in record_attributes:
                orders[run_id] += 1
            elif names.TRADE_SIDE in record_attributes:
                trades[run_id] += 1
                # At the default detail level a fill has no rqa.order event:
                # its trade event names the order.
                assert int(record_attributes[names.ORDER_ID]) > 0 and record_attributes[names.ORDER_TYPE] == "Market"
                filled[run_id].add(record_attributes[names.ORDER_ID])
            else:
                portfolios[run_id] += 1
    assert trades == Counter(dict(rows))
    assert set(portfolios) == set(runs) and set(filled) == set(trades)

    # The workers' trade counters, by process: together, every fill.
    last = {}
    for pid, metric in by_pid(telemetry / "metrics.jsonl", METRICS):
        if metric["name"] == names.TRADES_COUNTER:
            for point in metric["sum"]["dataPoints"]:
                last[(pid, tuple(sorted(attributes(point).items())))] = int(point["asInt"] if "asInt" in point else point["asDouble"])
    assert sum(last.values()) == fills and {pid for pid, _ in last} <= worker_pids


MODES_SCRIPT = SCRIPT.replace('if __name__ == "__main__":\n    main(sys.argv[1], int(sys.argv[2]))', "") + textwrap.dedent(
    """
    class OpenCheat(bt.Strategy):
        def next_open(self):
            if not self.position:
                self.buy(size=3)
            elif len(self) % 5 == 0:
                self.close()

    class Pair(bt.Strategy):
        def next(self):
            for data in self.datas:
                if not self.getposition(data).size:
                    self.buy(data=data, size=2)
                elif len(self) % 3 == 0:
                    self.close(data=data)

    def feed(directory, name="bars.csv"):
        return bt.feeds.GenericCSVData(dataname=f"{directory}/{name}", dtformat="%Y-%m-%d", openinterest=-1, headers=True)

    def modes(directory):
        write_bars(f"{directory}/bars.csv", 7, bars=120)
        write_bars(f"{directory}/other.csv", 8, bars=120)
        fills = 0
        setups = {
            "cheat_on_open": lambda c: (c.adddata(feed(directory), name="A"), c.addstrategy(OpenCheat)),
            "replay": lambda c: (c.replaydata(feed(directory), name="A", timeframe=bt.TimeFrame.Weeks), c.addstrategy(SmaCross, period=3)),
            "resample": lambda c: (c.resampledata(feed(directory), name="A", timeframe=bt.TimeFrame.Weeks), c.addstrategy(SmaCross, period=3)),
            "multi_data": lambda c: (c.adddata(feed(directory), name="A"), c.adddata(feed(directory, "other.csv"), name="B"), c.addstrategy(Pair)),
            "optimize_one_cpu": lambda c: (c.adddata(feed(directory), name="A"), c.optstrategy(SmaCross, period=[3, 4])),
        }
        for mode, prepare in setups.items():
            cerebro = bt.Cerebro(cheat_on_open=mode == "cheat_on_open", maxcpus=1)
            cerebro.addanalyzer(FillCount)
            prepare(cerebro)
            for result in cerebro.run():
                for strategy in (result if isinstance(result, list) else [result]):
                    fills += strategy.analyzers.fillcount.get_analysis()["fills"]
        print(json.dumps({"fills": fills}))

    if __name__ == "__main__":
        modes(sys.argv[1])
    """
)


def test_cheat_on_open_replay_resample_multi_data_and_one_cpu_optimization(tmp_path):
    (tmp_path / "modes.py").write_text(MODES_SCRIPT)
    telemetry = tmp_path / "telemetry"
    completed = subprocess.run(
        [BIN / "rqa-otel", "run", "--quiet", "--", sys.executable, tmp_path / "modes.py", tmp_path],
        env=run_env(telemetry), capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""  # no warning, no traceback
    fills = json.loads(completed.stdout.splitlines()[-1])["fills"]
    journal = sqlite3.connect(telemetry / "trades.db")
    assert journal.execute("SELECT COUNT(*) FROM trade_rows").fetchone()[0] == fills > 0
    runs = [attributes(span) for _, span in by_pid(telemetry / "traces.jsonl", SPANS) if span["name"] == names.BACKTEST_SPAN]
    # One run per plain cerebro.run(), one per combination of the optimization.
    assert Counter(run[names.STRATEGY_CLASS] for run in runs) == {"OpenCheat": 1, "SmaCross": 4, "Pair": 1}
    symbols = {row[0] for row in journal.execute("SELECT DISTINCT symbol FROM trade_rows")}
    assert symbols == {"A", "B"}


def test_the_no_patching_analyzer_with_a_handle_pickles_into_pool_workers(tmp_path):
    """The README's path without patching, cerebro.addanalyzer(TelemetryAnalyzer,
    telemetry=handle), under an optimization with two pool workers."""
    (tmp_path / "optimize.py").write_text(SCRIPT)
    telemetry = tmp_path / "telemetry"
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import rqa_otel, optimize
        from rqa_otel.instrumentation.backtrader import TelemetryAnalyzer
        handle = rqa_otel.setup(overrides={{"export.directory": {str(telemetry)!r}, "resources.enabled": False}})
        optimize.write_bars({str(tmp_path / "bars.csv")!r}, 7)
        cerebro = optimize.cerebro_with_data({str(tmp_path)!r})
        cerebro.addanalyzer(TelemetryAnalyzer, telemetry=handle)
        cerebro.optstrategy(optimize.SmaCross, period=[3, 4, 5])
        results = cerebro.run(maxcpus=2, optreturn=False)
        import os
        print(os.getpid(), sum(s.analyzers.fillcount.get_analysis()["fills"] for r in results for s in r))
        """
    )
    completed = subprocess.run([sys.executable, "-c", code], env=run_env(telemetry), capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    parent, fills = map(int, completed.stdout.split()[-2:])
    journal = sqlite3.connect(telemetry / "trades.db")
    assert journal.execute("SELECT COUNT(*) FROM trade_rows").fetchone()[0] == fills > 0
    runs = [(pid, attributes(span)) for pid, span in by_pid(telemetry / "traces.jsonl", SPANS) if span["name"] == names.BACKTEST_SPAN]
    assert sorted(span[names.STRATEGY_PARAMETER_PREFIX + "period"] for _, span in runs) == ["3", "4", "5"]
    assert parent not in {pid for pid, _ in runs}  # reported by the pool workers themselves
