"""The RQA2025 design's code sketches (../shared/seed/, sections 2.1 to 2.5
and the integration table of section 4), run as the design writes them with
only the imports changed (``from rqa_otel.rqa2025 import ...``), asserting
the behaviour the design describes.

The GPU parts run on the project's fake NVML (tests/fake_nvml: this machine
has no NVIDIA GPU); on a machine with one they run on the real GPU and the
assertions that only the fake's figures can satisfy are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import fake_nvml
from otlp_files import attributes, log_records, spans
from rqa_otel.config import SettingsError
from rqa_otel.resources.registry import Registry
from rqa_otel.rqa2025 import (
    BacktestMonitor,
    BrokerConnectionError,
    ConfigManager,
    GPUManager,
    InsufficientFundsError,
    LogManager,
    OrderRejectedError,
    PositionLimitError,
    QuantFilter,
    ResourceManager,
    RetryHandler,
    TradingError,
    TradingErrorHandler,
)

REAL_GPU = fake_nvml.real_gpu_count() > 0
GiB = 1 << 30


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    os.chmod(path, 0o600)
    return path


def wait_for(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- 2.1 ConfigManager: hot reload and change notification ----------------------------


def test_config_manager_with_callbacks_and_the_watcher(tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write(config_dir / "settings.yaml", """\
        logging: {level: INFO}
        config: {debounce_s: 0.02}
        data: {source: tushare}
    """)
    write(config_dir / "strategy.yaml", "strategy_params: {fast: 10, slow: 40}\n")
    events = []
    changed = threading.Event()

    def callback(event_type, new_config):
        events.append((event_type, new_config))
        changed.set()

    manager = ConfigManager(config_dir, callbacks=[callback])
    assert manager["logging"]["level"] == "INFO"          # cfg['logging'] as the design reads it
    assert manager["data"]["source"] == "tushare"         # the application's own keys
    assert manager.get("strategy_params.slow") == 40
    json.dumps(manager.config_cache)                      # a plain mapping
    manager.start_watcher()
    try:
        write(config_dir / "other.yaml", "risk: {max_drawdown: 0.1}\n")  # a NEW file in config_dir
        assert changed.wait(5), "a new .yaml in config_dir caused no reload"
        event_type, new_config = events[-1]
        assert event_type == "config_changed" and type(new_config) is dict
        assert new_config["risk"]["max_drawdown"] == 0.1 and new_config["data"]["source"] == "tushare"
        changed.clear()
        extra = []
        manager.add_callback(lambda event_type, config: extra.append(config["data"]["source"]))
        write(config_dir / "settings.yaml", "logging: {level: INFO}\nconfig: {debounce_s: 0.02}\ndata: {source: wind}\n")
        assert changed.wait(5) and wait_for(lambda: extra == ["wind"])
        assert manager["data"]["source"] == "wind"
    finally:
        manager.stop_watcher()
    count = len(events)
    write(config_dir / "other.yaml", "risk: {max_drawdown: 0.2}\n")
    time.sleep(0.3)
    assert len(events) == count  # stopped: no more reloads
    assert manager.reload().outcome == "changed" and events[-1][1]["risk"]["max_drawdown"] == 0.2


def test_config_manager_bad_input(tmp_path, caplog):
    with pytest.raises(SettingsError, match=r"config_dir '.*nowhere' does not exist"):
        ConfigManager(tmp_path / "nowhere")
    write(tmp_path / "settings.yaml", "data: {source: tushare}\n")
    calls = []

    def broken(event_type, config):
        raise RuntimeError("callback bug")

    manager = ConfigManager(tmp_path, callbacks=[broken, lambda e, c: calls.append(c["data"]["source"])])
    with caplog.at_level(logging.ERROR, logger="rqa_otel.config"):
        for source in ("wind", "yahoo"):
            write(tmp_path / "settings.yaml", f"data: {{source: {source}}}\n")
            manager.reload()
    assert calls == ["wind", "yahoo"]             # the others are still called
    assert manager.callback_errors == 2           # counted
    logged = [r for r in caplog.records if "callback" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info  # logged once, with its traceback
    write(tmp_path / "settings.yaml", "data: {source: [unclosed\n")
    assert manager.reload().outcome == "failed"
    assert manager["data"]["source"] == "yahoo" and calls == ["wind", "yahoo"]  # last good kept, no callback
    with pytest.raises(TypeError, match="callbacks"):
        ConfigManager(tmp_path, callbacks=["not callable"])


# --- 2.2 QuantFilter inside LogManager ----------------------------------------------------


def test_quant_filter_inside_log_manager(tmp_path):
    manager = LogManager(log_dir=tmp_path / "logs")
    try:
        manager.setup_root_logger(max_bytes=400, backup_count=2)
        log = logging.getLogger("rqa2025.strategy")
        for index in range(20):
            log.info("bar %d", index)
        log.info("no extras")
        log.info("filled", extra={"stock": "600519.SH", "strategy": "dual_ma", "signal": "BUY"})
    finally:
        manager.close()
    logs = tmp_path / "logs"
    text = "".join(path.read_text() for path in sorted(logs.iterdir()))
    assert "[GLOBAL] N/A NONE no extras" in text
    assert "[dual_ma] 600519.SH BUY filled" in text
    assert sorted(path.name for path in logs.iterdir()) == ["rqa2025.log", "rqa2025.log.1", "rqa2025.log.2"]
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    assert QuantFilter().filter(record) and (record.stock, record.strategy, record.signal) == ("N/A", "GLOBAL", "NONE")


def test_the_projects_handler_sets_the_quant_fields_for_handlers_after_it(file_telemetry):
    handle = file_telemetry(strategy="dual_ma")
    lines = []
    formatter = logging.Formatter("%(strategy)s %(stock)s %(signal)s %(message)s")
    after = logging.Handler()
    after.emit = lambda record: lines.append(formatter.format(record))
    log = logging.getLogger("rqa2025.plain_formatter")
    log.propagate = False
    log.addHandler(handle.logging_handler)
    log.addHandler(after)
    try:
        log.warning("no extras, no QuantFilter")
    finally:
        log.removeHandler(handle.logging_handler)
        log.removeHandler(after)
    assert lines == ["dual_ma N/A NONE no extras, no QuantFilter"]


# --- 2.3 ResourceManager: strategy quotas ---------------------------------------------------


def test_resource_manager_quota_sequence(tmp_path):
    manager = ResourceManager(registry=Registry(tmp_path / "run"))
    assert manager.check_quota("unknown") is True                       # no quota: no limit
    manager.set_strategy_quota("momentum", cpu=100 * (os.cpu_count() or 1), gpu_memory=1024, max_workers=2)
    manager.register_strategy_worker("momentum", "w1")
    assert manager.check_quota("momentum") is True
    manager.register_strategy_worker("momentum", "w2")
    assert manager.check_quota("momentum") is False                     # len(workers) < max_workers fails
    manager.unregister_strategy_worker("momentum", "w2")
    assert manager.check_quota("momentum") is True
    assert manager.clear_strategy_quota("momentum") is True
    assert "momentum" not in manager.quotas() and manager.clear_strategy_quota("momentum") is False
    later = ResourceManager(registry=Registry(tmp_path / "run"))        # a later run: nothing left over
    assert later.quotas() == {}


def test_check_quota_samples_usage_now(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        manager = ResourceManager(registry=Registry(tmp_path / "run"))
        manager.set_strategy_quota("hot", cpu=5)
        time.sleep(0.5)
        manager.register_strategy_worker("hot", "spinner", pid=busy.pid)
        started = time.perf_counter()
        assert manager.check_quota("hot") is False      # ~100 % of a core against 5 %, with no agent running
        assert time.perf_counter() - started < 0.5
        assert manager.usage_now("hot").cpu_percent > 5
        # An observation younger than one interval (the agent's smoothed one) is used as it is.
        fresh = ResourceManager(registry=Registry(tmp_path / "run"), interval_s=0.3)
        fresh.observe({})  # "hot" reads 0 in this observation
        assert fresh.check_quota("hot") is True
        time.sleep(0.35)
        assert fresh.check_quota("hot") is False  # stale: sampled on the call
    finally:
        busy.kill()
        busy.wait()
    manager.set_strategy_quota("hot", cpu=5)
    assert manager.check_quota("hot") is True  # its process is gone: nothing uses the quota


# --- GPUManager (section 4: the model layer) ---------------------------------------------------


@pytest.fixture(scope="module")
def fake_gpus(tmp_path_factory):
    if REAL_GPU:
        return None
    directory = fake_nvml.build(tmp_path_factory.mktemp("fake_nvml"))
    fake_nvml.preload(directory)
    return directory


def test_gpu_manager_devices_memory_and_choosing_a_device(fake_gpus, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_SCENARIO", "normal")
    monkeypatch.setenv("FAKE_NVML_PROCESSES", f"0:{os.getpid()}:{2 * GiB},1:{os.getpid()}:{GiB}")
    resources = ResourceManager(registry=Registry(tmp_path / "run"))
    resources.set_strategy_quota("lstm", gpu_memory=20_000)
    resources.set_strategy_quota("huge", gpu_memory=10_000_000)
    gpus = GPUManager(resources)
    try:
        assert gpus.has_gpu and gpus.device_count >= 1
        memory = gpus.memory()
        assert all(m["total_mib"] >= m["used_mib"] >= 0 for m in memory)
        assert set(gpus.utilization()) <= {m["index"] for m in memory}
        assert gpus.choose_device("huge") is None
        if not REAL_GPU:  # the fake's figures: GPU 0 16 GiB, GPU 1 24 GiB, 0.25 GiB reserved on each
            assert [(m["index"], m["total_mib"]) for m in memory] == [(0, 16384), (1, 24576)]
            assert gpus.process_memory(os.getpid()) == 3 * 1024
            assert gpus.choose_device("lstm") == 1                 # only GPU 1 has 20,000 MiB free
            assert gpus.choose_device(gpu_memory_mib=1000) == 1    # the most free memory
    finally:
        gpus.close()
    assert GPUManager(sampler=None).choose_device("lstm") is None and GPUManager(sampler=None).memory() == []


# --- 2.4 BacktestMonitor: record and query ------------------------------------------------------


def test_backtest_monitor_record_and_query(file_telemetry, tmp_path):
    handle = file_telemetry()
    monitor = BacktestMonitor(app_name="rqa2025_backtest", telemetry=handle, journal_path=tmp_path / "trades.db")
    with monitor.run("dual_ma") as first_run:
        monitor.record_trade("600519.SH", "buy", 1688.5, 100, "dual_ma")
        monitor.record_trade("000001.SZ", "sell", 12.3, 500, "dual_ma")
    with monitor.run("dual_ma"):
        monitor.record_trade("600519.SH", "buy", 1690.0, 100, "dual_ma")
        monitor.record_portfolio(1_000_000.0, 831_150.0, {"600519.SH": 200}, "dual_ma")

    # The design's get_trade_history filters, verbatim over the records returned.
    metrics = monitor.get_trade_history()
    metrics = [m for m in metrics if m['tags'].get('strategy') == "dual_ma"]
    metrics = [m for m in metrics if m['tags'].get('symbol') == "600519.SH"]
    metrics = [m for m in metrics if m['tags'].get('action') == "buy".upper()]
    assert [m["value"] for m in metrics] == [1688.5, 1690.0]
    assert [m["name"] for m in metrics] == ["trade_event", "trade_event"]
    assert len(monitor.get_trade_history(action="BUY", run_id=first_run)) == 1   # one run's trades
    assert monitor.get_trade_history(symbol="000001.SZ")[0]["tags"]["action"] == "SELL"

    monitor.record_custom_metric("gpu_memory_mib", 2048.0, tags={"strategy": "dual_ma", "device": "1"})
    custom = monitor.get_custom_metrics(name="gpu_memory_mib")
    assert [(m["value"], m["tags"]["device"]) for m in custom] == [(2048.0, "1")]
    monitor.close()
    handle.shutdown()
    events = [attributes(r) for r in log_records(tmp_path / "logs.jsonl")]
    assert any(e.get("rqa.custom_metric.name") == "gpu_memory_mib" and e.get("rqa.custom_metric.tag.device") == "1"
               for e in events)
    with pytest.raises(KeyError, match="a trade record has tags, name, value, timestamp"):
        metrics[0]["price"]
    with pytest.raises(ValueError, match="run_id"):
        monitor.get_trade_history(run_id=42)
    for bad, field in ((("", 1.0), "name"), (("m", float("nan")), "value"), (("m", 1.0, ["x"]), "tags")):
        with pytest.raises(ValueError, match=field):
            monitor.record_custom_metric(*bad)
    with pytest.raises(TypeError, match="rqa_otel.rqa2025.BacktestMonitor"):
        from rqa_otel.trading import BacktestMonitor as ProjectMonitor

        ProjectMonitor("rqa2025_backtest")


# --- 2.5 TradingErrorHandler with the four errors ---------------------------------------------------


def test_trading_error_handler_with_the_four_errors(file_telemetry, tmp_path):
    handle = file_telemetry(strategy="dual_ma")
    slept = []
    handler = TradingErrorHandler(handle, sleep=slept.append)
    assert handler.retry_strategy[TradingError.ORDER_REJECTED] == (3, 5.0)

    attempts = []
    rejected = OrderRejectedError("price out of limit", strategy="dual_ma", symbol="600519.SH")

    def retry_action():
        attempts.append(1)
        if len(attempts) < 3:
            raise OrderRejectedError("still rejected", strategy="dual_ma")
        return "filled"

    rejected.retry_action = retry_action
    assert handler.handle_order_reject(rejected) == "filled"
    assert slept == [5.0, 5.0]                          # the design's fixed delay

    lost = BrokerConnectionError("broker gone", strategy="dual_ma")
    lost.reconnect = lambda: (_ for _ in ()).throw(BrokerConnectionError("still down"))
    slept.clear()
    with pytest.raises(BrokerConnectionError, match="still down"):
        handler.handle_connection_error(lost)
    assert slept == [10.0] * 5                           # (5, 10.0): five retries

    funds = InsufficientFundsError("need cash", strategy="dual_ma", required=1e6, available=2e5)
    assert handler.handle_insufficient_funds(funds) is None
    limit = PositionLimitError("too big", strategy="dual_ma", symbol="600519.SH", current=1e5, limit=5e4)
    assert handler.handle_position_limit(limit) is None
    handle.shutdown()
    alerts = [attributes(s) for s in spans(tmp_path / "traces.jsonl") if s["name"] == "rqa.alert"]
    by_name = {a["rqa.alert.name"]: a for a in alerts}
    assert by_name["insufficient_funds"]["rqa.alert.severity"] == "critical"
    assert by_name["insufficient_funds"]["rqa.error.required"] == 1e6
    assert by_name["position_limit"]["rqa.alert.severity"] == "warning"
    retried = [s for s in spans(tmp_path / "traces.jsonl") if attributes(s).get("rqa.alert.name") == "retry"]
    retry_events = sorted(len([e for e in s.get("events", []) if e["name"] == "rqa.retry"]) for s in retried)
    assert retry_events == [2, 5]  # each retry an event on its alert span


def test_retry_handler_for_any_exception_types():
    slept = []
    retry = RetryHandler(sleep=slept.append)
    calls = []

    @retry.with_retry(max_retries=2, retry_delay=5.0, retry_exceptions=[ConnectionError])
    def fetch():
        calls.append(1)
        raise ConnectionError("feed down")

    with pytest.raises(ConnectionError):
        fetch()
    assert len(calls) == 3 and slept == [5.0, 5.0]  # max_retries counts retries; a fixed delay is exact

    slept.clear()

    @retry.with_retry(max_retries=3, retry_delay=1.0, retry_exceptions=[TimeoutError], backoff="exponential")
    def slow():
        if len(slept) < 3:
            raise TimeoutError
        return "ok"

    assert slow() == "ok" and slept == [1.0, 2.0, 4.0]

    @retry.with_retry(max_retries=3, retry_delay=1.0, retry_exceptions=[TimeoutError])
    def wrong():
        raise KeyError("not retried")

    with pytest.raises(KeyError):
        wrong()
    for bad in ("ConnectionError", [ConnectionError, "x"], [], 42):
        with pytest.raises(TypeError, match="retry_exceptions"):
            retry.with_retry(retry_exceptions=bad)
    with pytest.raises(ValueError, match="max_retries"):
        retry.with_retry(max_retries=-1)


def test_retry_handler_async_and_jitter(monkeypatch):
    import asyncio

    delays = []

    async def no_wait(seconds):
        delays.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    calls = []

    @RetryHandler().with_retry(max_retries=4, retry_delay=2.0, retry_exceptions=[ConnectionError], jitter=True)
    async def fetch():
        calls.append(1)
        if len(calls) < 5:
            raise ConnectionError
        return "ok"

    assert asyncio.run(fetch()) == "ok" and len(calls) == 5
    assert len(delays) == 4 and all(0 <= d <= 2.0 for d in delays)


# --- 4. the integration table: the four layers ------------------------------------------------------


def test_integration_table_four_layers(file_telemetry, tmp_path, fake_gpus, monkeypatch):
    handle = file_telemetry(strategy="alpha")
    slept = []
    # Data layer: data-load errors retried (TradingErrorHandler + RetryHandler).
    handler = TradingErrorHandler(handle, sleep=slept.append)
    loads = []

    @handler.retry_handler.with_retry(max_retries=3, retry_delay=2.0, retry_exceptions=[IOError])
    def load_bars(symbol):
        loads.append(symbol)
        if len(loads) < 2:
            raise IOError("tushare timeout")
        return [1.0, 2.0]

    assert load_bars("600519.SH") == [1.0, 2.0] and slept == [2.0]
    # Feature layer: feature computation within a quota.
    resources = ResourceManager(handle, registry=Registry(tmp_path / "run"))
    resources.set_strategy_quota("alpha_features", cpu=100 * (os.cpu_count() or 1), gpu_memory=4096, max_workers=1)
    with resources.worker("alpha_features"):
        assert resources.check_quota("alpha_features") is False  # the one worker slot is taken
    assert resources.check_quota("alpha_features") is True
    # Model layer: GPU plus monitor.
    monkeypatch.setenv("FAKE_NVML_PROCESSES", "")
    gpus = GPUManager(resources)
    monitor = BacktestMonitor(app_name="alpha", telemetry=handle, journal_path=tmp_path / "trades.db")
    try:
        device = gpus.choose_device("alpha_features")
        assert device is not None
        monitor.record_custom_metric("gpu_device", float(device), tags={"strategy": "alpha"})
        # Trading layer: order tracking.
        with monitor.run("alpha") as run_id:
            monitor.record_trade("600519.SH", "BUY", 1688.5, 100, "alpha")
        assert [(t["tags"]["symbol"], t["tags"]["action"]) for t in monitor.get_trade_history(run_id=run_id)] == [
            ("600519.SH", "BUY")
        ]
    finally:
        gpus.close()
        monitor.close()


def test_the_design_classes_set_up_the_global_telemetry_on_first_use(tmp_path):
    program = textwrap.dedent("""
        import rqa_otel
        from rqa_otel.rqa2025 import BacktestMonitor, TradingErrorHandler, PositionLimitError
        assert rqa_otel.current() is None
        monitor = BacktestMonitor("rqa2025_backtest")
        assert rqa_otel.current() is not None
        monitor.record_trade("600519.SH", "buy", 1688.5, 100, "dual_ma")
        assert monitor.get_trade_history()[0]["tags"]["action"] == "BUY"
        handler = TradingErrorHandler()
        assert handler.handle_position_limit(PositionLimitError("too big", symbol="600519.SH")) is None
        import os, sys
        from rqa_otel.rqa2025 import ConfigManager
        config_dir = sys.argv[1]
        manager = ConfigManager(config_dir)
        with open(os.path.join(config_dir, "data.yaml"), "w") as file:
            file.write("data: [unclosed")
        assert manager.reload().outcome == "failed" and manager["data"]["source"] == "tushare"
        monitor.close()
        rqa_otel.current().shutdown()
    """)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write(config_dir / "data.yaml", "data: {source: tushare}\n")
    environment = {**os.environ, "RQA_EXPORT__DIRECTORY": str(tmp_path), "RQA_REGISTRY__ENABLED": "false",
                   "RQA_CONFIG__WATCH": "false"}
    completed = subprocess.run([sys.executable, "-c", program, str(config_dir)], env=environment,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    alerts = [s for s in spans(tmp_path / "traces.jsonl") if s["name"] == "rqa.alert"]
    assert [attributes(s)["rqa.alert.name"] for s in alerts] == ["position_limit", "config_reload_failed"]
    assert "data.yaml" in attributes(alerts[1])["rqa.alert.message"]
    resource = json.loads((tmp_path / "traces.jsonl").read_text().splitlines()[0])["resourceSpans"][0]["resource"]
    assert attributes(resource)["service.name"] == "rqa2025_backtest"
