"""The durable spool against real back-ends, real SIGKILL and a real full tmpfs.

A back-end that is "down" is a real server killed with SIGKILL (or a port
nobody listens on): connections are refused exactly as in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

import rqa_otel
from backends import InfluxDB1, Rotel, _poll, free_port
from conftest import in_ci
from rqa_otel import names
from rqa_otel.export.delivery import Payload, Value
from rqa_otel.export.otlp.transport import OtlpHttpTransport
from rqa_otel.export.spool import QUARANTINE, Spool, SpoolEvents, decode_record, encode_record
from rqa_otel.trading.monitor import BacktestMonitor

REPO = Path(__file__).resolve().parent.parent


def kill9(backend) -> None:
    os.killpg(backend.process.pid, signal.SIGKILL)
    backend.process.wait()


def wait_until(check, timeout_s: float, what: str):
    return _poll(check, timeout_s, lambda: f"waiting for {what}", interval=0.1)


def spooled_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.batch") if QUARANTINE not in p.parts)


def spooled_items(directory: Path, signal_name: str) -> int:
    """Items in the spooled files, every file read and checked (CRC) the way
    the replayer reads it."""
    return sum(
        payload.items
        for payload in (decode_record(path.read_bytes()) for path in spooled_files(directory))
        if payload.signal == signal_name
    )


def scrape(port: int, path: str) -> str:
    """An ops endpoint's body, also for a 503."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        return error.read().decode()


def logs_rotel(start_backend) -> Rotel:
    """Rotel counting log records cheaply (basic verbosity prints one line per request)."""
    return start_backend(Rotel(debug_log=("logs",), verbosity="basic"))


def otlp_overrides(rotel: Rotel, directory: Path, **extra) -> dict:
    return {
        "export.logs": "otlp", "export.traces": "none", "export.metrics": "none",
        "export.otlp.protocol": "http/protobuf", "export.otlp.endpoint": rotel.http_endpoint,
        "export.otlp.timeout_s": 2, "export.directory": str(directory), **extra,
    }


# --- the spool on its own: eviction, critical data, corrupt files ------------------


def dead_transport() -> OtlpHttpTransport:
    """A real HTTP transport to a port nobody listens on."""
    return OtlpHttpTransport(f"http://127.0.0.1:{free_port()}/v1/logs", {})


def alerts_of(events: SpoolEvents) -> list[tuple[str, str, str]]:
    raised: list[tuple[str, str, str]] = []
    events.route_alerts(lambda *alert: raised.append(alert))
    return raised


def payload(value: Value, size: int = 1000, items: int = 10) -> Payload:
    return Payload("logs", bytes([value]) * size, value, items)


def test_eviction_takes_low_value_first_counts_it_and_never_touches_critical_data(tmp_path):
    events = SpoolEvents()
    raised = alerts_of(events)
    record = len(encode_record(payload(Value.LOW)))
    spool = Spool("logs", dead_transport(), str(tmp_path), 4 * record, events, send_timeout_s=1)
    try:
        spool.submit([payload(Value.LOW), payload(Value.NORMAL), payload(Value.CRITICAL), payload(Value.LOW)])
        assert [p.value for p in map(decode_record, map(Path.read_bytes, spooled_files(tmp_path)))] == [
            Value.LOW, Value.NORMAL, Value.CRITICAL, Value.LOW
        ]
        spool.submit([payload(Value.NORMAL)])  # the oldest low-value file goes
        spool.submit([payload(Value.CRITICAL)])  # then the other low-value one
        spool.submit([payload(Value.LOW)])  # a low-value newcomer never pushes out normal data
        spool.submit([payload(Value.CRITICAL)])  # normal data goes for critical data
        values = [decode_record(p.read_bytes()).value for p in spooled_files(tmp_path)]
        assert values == [Value.CRITICAL, Value.NORMAL, Value.CRITICAL, Value.CRITICAL]
        assert spool.readiness()[0] and not raised

        spool.submit([payload(Value.CRITICAL)])  # the last normal file goes
        values = [Value.CRITICAL] * 4
        spool.submit([payload(Value.CRITICAL, items=7)])  # no room left but critical data
        assert [decode_record(p.read_bytes()).value for p in spooled_files(tmp_path)] == values, "nothing evicted"
        assert [(name, severity) for name, severity, _ in raised] == [(names.SPOOL_CRITICAL_DATA_LOST_ALERT, "critical")]
        ready, reason = spool.readiness()
        assert not ready and "7 critical items lost" in reason
        assert events.dropped_totals() == {
            ("logs", "low", "evicted"): 20, ("logs", "normal", "evicted"): 20,
            ("logs", "low", "spool_full"): 10, ("logs", "critical", "spool_full"): 7,
        }
    finally:
        spool.shutdown(1)


def test_torn_corrupt_and_half_written_files_are_quarantined_and_the_rest_replayed_in_order(tmp_path, start_backend):
    rotel = start_backend(Rotel(debug_log=("logs",)))  # detailed: the records' bodies, in arrival order
    kill9(rotel)
    transport = OtlpHttpTransport(f"{rotel.http_endpoint}/v1/logs", {})
    writer = Spool("logs", transport, str(tmp_path), 10**9, SpoolEvents(), send_timeout_s=1)
    from rqa_otel.export.otlp.encoding import LogPayloads
    from rqa_otel.export.otlp.log_encoding import LogsEncoder

    encode = LogPayloads(LogsEncoder({"service.name": "spool-test"}))
    for batch in range(5):
        writer.submit(encode([(time.time_ns(), 20, "quant", f"record {batch}.{i}", {}, 0, 0, 0) for i in range(10)], 0))
    writer.shutdown(1)
    files = spooled_files(tmp_path)
    assert len(files) == 5
    files[1].write_bytes(files[1].read_bytes()[:-3])  # torn
    corrupt = bytearray(files[3].read_bytes())
    corrupt[-1] ^= 0xFF
    files[3].write_bytes(bytes(corrupt))  # flipped bit
    (tmp_path / f".{files[4].name}.999999999.tmp").write_bytes(b"RQS1 half")  # its writer died mid-write

    rotel.restart()
    events = SpoolEvents()
    raised = alerts_of(events)
    reader = Spool("logs", OtlpHttpTransport(f"{rotel.http_endpoint}/v1/logs", {}), str(tmp_path), 10**9, events, 1)
    try:
        wait_until(lambda: not spooled_files(tmp_path), 15, "the spool to drain")
        wait_until(lambda: len(rotel.logs()) >= 30, 10, "30 records at rotel")
    finally:
        reader.shutdown(1)
    expected = [f"record {batch}.{i}" for batch in (0, 2, 4) for i in range(10)]
    assert [record["body"] for record in rotel.logs()] == expected, "each record once, oldest batch first"
    assert sorted(p.name for p in (tmp_path / QUARANTINE).iterdir()) == sorted(
        [files[1].name, files[3].name, f".{files[4].name}.999999999.tmp"]
    )
    assert [name for name, _, _ in raised] == [names.SPOOL_CORRUPT_BATCH_ALERT] * 3
    assert events.dropped_totals() == {("logs", "low", "corrupt"): 20}
    assert events.replayed_totals() == {"logs": 30}


def test_critical_data_refused_by_a_full_spool_shows_in_ready_and_as_a_critical_alert(tmp_path, start_backend):
    rotel = logs_rotel(start_backend)
    kill9(rotel)
    ops_port = free_port()
    telemetry = rqa_otel.setup(
        strategy="spool_full",
        overrides=otlp_overrides(
            rotel, tmp_path / "out",
            **{"export.spool.max_bytes": 100_000, "logging.batch_size": 100, "ops.http_port": ops_port},
        ),
        set_global=False,
    )
    monitor = BacktestMonitor(telemetry, journal_path=tmp_path / "journal.db")
    log = telemetry.get_logger("quant.debug")
    for i in range(2_000):
        log.info("quote %d", i)  # low value: evicted first
        monitor.record_trade("600519.SH", "buy", 1688.5, 100, "spool_full")
    assert telemetry.force_flush(10)
    ready = json.loads(scrape(ops_port, "/ready"))
    check = ready["checks"][f"{names.SPOOL_READINESS}_logs"]
    assert ready["status"] == "failing" and not check["ok"] and "critical items lost" in check["reason"]
    metrics = scrape(ops_port, "/metrics")
    assert f'rqa_alert_name="{names.SPOOL_CRITICAL_DATA_LOST_ALERT}",rqa_alert_severity="critical"' in metrics
    dropped = telemetry.senders.events.dropped_totals()
    assert dropped[("logs", "low", "evicted")] > 0 and dropped[("logs", "critical", "spool_full")] > 0
    assert ("logs", "critical", "evicted") not in dropped
    telemetry.shutdown()


def test_a_batch_the_back_end_rejects_for_good_is_not_spooled_but_counted_and_alerted(tmp_path, start_backend):
    influxdb = InfluxTarget(start_backend)
    ops_port = free_port()
    overrides = influxdb.overrides(tmp_path / "out", **{"export.influxdb.db": "no_such_db", "ops.http_port": ops_port})
    telemetry = rqa_otel.setup(strategy="spool_rejected", overrides=overrides, set_global=False)
    monitor = BacktestMonitor(telemetry, journal_path=tmp_path / "journal.db")
    for i in range(10):
        monitor.record_trade("600519.SH", "buy", 1688.5, 100, "spool_rejected", timestamp=FIRST_BAR_NS + i * BAR_NS)
    telemetry.force_flush(10)
    assert telemetry.senders.events.dropped_totals() == {("logs", "critical", "rejected"): 10}
    assert not spooled_files(tmp_path / "out"), "a permanent failure is not retried"
    metrics = scrape(ops_port, "/metrics")
    assert f'rqa_alert_name="{names.EXPORT_REJECTED_ALERT}",rqa_alert_severity="critical"' in metrics
    assert telemetry.log_drops() == {("export_failed", "INFO"): 10}, "the exporter's own accounting sees the loss"
    telemetry.shutdown()


# --- (c) the spool's file system fills up --------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 1 MiB tmpfs (mounting needs root or CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        reason = f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}"
        if in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_spool_disk_keeps_the_strategy_running_raises_an_alert_and_corrupts_nothing(
    tmp_path, tiny_tmpfs, start_backend
):
    rotel = logs_rotel(start_backend)
    kill9(rotel)
    ops_port = free_port()
    telemetry = rqa_otel.setup(
        strategy="spool_c",
        overrides=otlp_overrides(rotel, tmp_path / "out", **{"export.spool.directory": str(tiny_tmpfs), "ops.http_port": ops_port}),
        set_global=False,
    )
    monitor = BacktestMonitor(telemetry, journal_path=tmp_path / "journal.db")
    trades = 20_000  # about 7 MB of OTLP trade events for a 1 MiB file system
    with monitor.run("spool_c"):
        for i in range(trades):
            monitor.record_trade("600519.SH", "buy", 1688.5, 100 + i % 7, "spool_c")
    assert telemetry.force_flush(10)
    assert len(monitor.get_trade_history()) == trades, "the strategy ran to the end"

    dropped = telemetry.senders.events.dropped_totals()
    assert dropped.get(("logs", "critical", "write_failed"), 0) > 0
    metrics = scrape(ops_port, "/metrics")
    assert f'rqa_alert_name="{names.SPOOL_WRITE_FAILED_ALERT}"' in metrics and 'rqa_alert_severity="critical"' in metrics
    kept = spooled_items(tiny_tmpfs, "logs")  # every spooled file passes its checksum
    assert 0 < kept < trades
    assert kept + dropped[("logs", "critical", "write_failed")] == trades, "each trade either kept or counted"

    rotel.restart()
    wait_until(lambda: not spooled_files(tiny_tmpfs), 30, "the spool to drain after the back-end returned")
    wait_until(lambda: rotel.log_records_received() >= kept, 10, f"{kept} records at rotel")
    telemetry.shutdown()
    assert rotel.log_records_received() == kept
    assert not (Path(telemetry.senders.spools[0].directory) / QUARANTINE).exists()


# --- the back-ends of (a) and (b): InfluxDB 1.x, and rotel for the OTLP path -------------

BAR_NS = 60 * 10**9
FIRST_BAR_NS = 1_704_153_600 * 10**9  # 2024-01-02: one minute bar per trade, so every trade is its own point


class InfluxTarget:
    """InfluxDB 1.x through the influxdb exporter (v1_compatibility): one
    point per (measurement, tags, timestamp), so it shows exactly-once."""

    def __init__(self, start_backend) -> None:
        self.backend = start_backend(InfluxDB1())
        self.backend.create_database("rqa")

    def overrides(self, directory: Path, **extra) -> dict:
        return {
            "export.logs": "influxdb", "export.traces": "none", "export.metrics": "none",
            "export.influxdb.url": self.backend.url, "export.influxdb.v1_compatibility": True,
            "export.influxdb.db": "rqa", "export.otlp.timeout_s": 2, "export.directory": str(directory), **extra,
        }

    def trades(self) -> int:
        rows = self.backend.points("""SELECT count("body") FROM "logs" WHERE "body" =~ /^(buy|sell) /""", db="rqa")
        return rows[0]["count"] if rows else 0


class OtlpTarget:
    """rotel over OTLP/HTTP: counts what arrives (no deduplication)."""

    def __init__(self, start_backend) -> None:
        self.backend = logs_rotel(start_backend)

    def overrides(self, directory: Path, **extra) -> dict:
        return otlp_overrides(self.backend, directory, **extra)

    def trades(self) -> int:
        return self.backend.log_records_received()


# --- (b) the strategy process is killed while the back-end is down ---------------------

STRATEGY = textwrap.dedent(
    """
    import json, sys, time
    import rqa_otel
    from rqa_otel.trading.monitor import BacktestMonitor

    overrides, trades, journal = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    FIRST_BAR_NS, BAR_NS = int(sys.argv[4]), int(sys.argv[5])
    telemetry = rqa_otel.setup(strategy="spool_b", overrides=overrides)
    if trades:
        monitor = BacktestMonitor(telemetry, journal_path=journal)
        with monitor.run("spool_b"):
            for i in range(trades):
                monitor.record_trade("000001.SZ", "sell", 12.5, 100, "spool_b", timestamp=FIRST_BAR_NS + i * BAR_NS)
                if i % 1000 == 999:
                    time.sleep(0.02)  # a strategy that is still running when it is killed
    else:  # the next start: only replay what the killed run left
        while any(spool.stats().batches for spool in telemetry.senders.spools):
            time.sleep(0.1)
        print("drained", flush=True)
    """
)


def run_strategy(overrides: dict, trades: int, journal: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", STRATEGY, json.dumps(overrides), str(trades), str(journal), str(FIRST_BAR_NS), str(BAR_NS)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("target_kind", [InfluxTarget, OtlpTarget], ids=["influxdb", "otlp"])
def test_a_strategy_killed_with_sigkill_while_the_back_end_is_down_delivers_its_spool_at_the_next_start(
    tmp_path, start_backend, target_kind
):
    target = target_kind(start_backend)
    kill9(target.backend)
    spool_dir = tmp_path / "spool"
    overrides = target.overrides(tmp_path / "out", **{"export.spool.directory": str(spool_dir)})
    first = run_strategy(overrides, 1_000_000, tmp_path / "journal.db")
    try:
        wait_until(lambda: spooled_items(spool_dir, "logs") >= 20_000, 60, "20,000 trades spooled")
        assert first.poll() is None, "killed mid-run"
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    spooled = spooled_items(spool_dir, "logs")  # complete files only: a torn one would fail here

    target.backend.restart()
    second = run_strategy(overrides, 0, tmp_path / "journal.db")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0 and "drained" in out, err
    wait_until(lambda: target.trades() >= spooled, 10, f"{spooled} trades delivered")
    assert target.trades() == spooled, "every spooled trade delivered, once"
    assert not spooled_files(spool_dir)


# --- (a) the back-end is killed for 30 s during a 100,000-trade run ---------------------

OUTAGE_S = 30.0  # the issue's


def test_a_30_s_influxdb_outage_during_a_100000_trade_run_stores_every_trade_exactly_once(tmp_path, start_backend):
    influxdb = InfluxTarget(start_backend)
    telemetry = rqa_otel.setup(strategy="spool_a", overrides=influxdb.overrides(tmp_path / "out"), set_global=False)
    monitor = BacktestMonitor(telemetry, journal_path=tmp_path / "journal.db")
    trades, killed_at, back_at = 100_000, 20_000, 80_000
    per_pause = 1_000
    pause_s = OUTAGE_S / ((back_at - killed_at) / per_pause)
    with monitor.run("spool_a"):
        for i in range(trades):
            if i == killed_at:
                kill9(influxdb.backend)
                down_since = time.monotonic()
            elif i == back_at:
                time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
                influxdb.backend.restart()  # same data directory and port
            elif killed_at < i < back_at and i % per_pause == 0:
                time.sleep(pause_s)  # trading goes on through the outage
            side = "buy" if i % 2 else "sell"
            monitor.record_trade("600519.SH", side, 1688.5, 100, "spool_a", timestamp=FIRST_BAR_NS + i * BAR_NS)
    assert telemetry.force_flush(10)
    assert telemetry.log_drops() == {}
    spool = telemetry.senders.spools[0]
    wait_until(lambda: spool.stats().batches == 0, 30, "the spool to drain")
    telemetry.shutdown()
    assert telemetry.senders.events.replayed_totals()["logs"] > 0, "the outage was ridden out by the spool"
    assert telemetry.senders.events.dropped_totals() == {}
    assert influxdb.trades() == trades, "every trade point present exactly once"
