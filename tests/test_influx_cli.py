"""The influxdb exporter from setup() and the command line, against real servers:
`rqa-otel demo --influxdb` into InfluxDB 1.x (v1 compatibility) and
VictoriaMetrics (/api/v2/write), `rqa-otel replay` to rotel (OTLP) and
InfluxDB 1.x, and the settings' errors."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_files import items

import rqa_otel
from rqa_otel import names
from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import SettingsError

DEMO_YEARS = "1"


def _cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rqa_otel.cli", *arguments], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def _journal_counts(directory: Path) -> dict[tuple[str, str], int]:
    with sqlite3.connect(directory / "trades.db") as db:
        return {(s, y): n for s, y, n in db.execute("SELECT strategy, symbol, count(*) FROM trade_rows GROUP BY 1, 2")}


def test_demo_into_influxdb_1x_trades_queryable_by_strategy_and_symbol(influxdb_v1, tmp_path) -> None:
    influxdb_v1.create_database("rqa")
    done = _cli("demo", "--json", "--quiet", "--years", DEMO_YEARS, "--output", str(tmp_path),
                "--influxdb", influxdb_v1.url, "--influxdb-v1-compatibility", "--influxdb-db", "rqa")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["flushed"] and all(c["failed"] == 0 and "InfluxDB 1.x" in c["destination"] for c in summary["telemetry"])
    journal = _journal_counts(tmp_path)
    assert sum(journal.values()) == summary["trades"] > 0

    # Each trade once, by strategy and symbol, with InfluxQL: what a dashboard asks.
    for (strategy, symbol), count in journal.items():
        rows = influxdb_v1.points(
            f"""SELECT "body", "attributes" FROM "logs" WHERE "rqa.strategy" = '{strategy}' AND "rqa.stock" = '{symbol}' """
            f"""AND "attributes" =~ /"{names.TRADE_SIDE}"/""",
            db="rqa",
        )
        assert len(rows) == count, (strategy, symbol, rows)
        assert all(json.loads(row["attributes"])[names.TRADE_PRICE] > 0 for row in rows)
    # The trade counters too, tagged the same way: increments (the series budget).
    [total] = influxdb_v1.points(f'SELECT sum("gauge") FROM "{names.TRADES_COUNTER}"', db="rqa")
    assert total["sum"] == summary["trades"]
    assert influxdb_v1.points('SELECT * FROM "spans"', db="rqa")


def test_demo_into_victoria_metrics_through_api_v2_write(victoria_metrics, tmp_path) -> None:
    done = _cli("demo", "--json", "--quiet", "--years", DEMO_YEARS, "--output", str(tmp_path),
                "--influxdb", victoria_metrics.url, "--influxdb-bucket", "rqa", "--influxdb-org", "rqa")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert all(c["failed"] == 0 and "/api/v2/write" in c["destination"] for c in summary["telemetry"])
    journal = _journal_counts(tmp_path)
    series = victoria_metrics.wait_for_export(f'{{__name__="{names.TRADES_COUNTER}_gauge"}}', min_series=len(journal))
    totals: dict[tuple[str, str], int] = {}
    for one in series:  # one series per side, its increments (the series budget) added up
        key = (one["metric"][names.STRATEGY], one["metric"][names.STOCK])
        totals[key] = totals.get(key, 0) + int(sum(one["values"]))
    assert totals == journal


def test_setup_influxdb_redacts_its_own_password(start_backend, tmp_path) -> None:
    from test_influx_exporter import AuthInfluxDB1, create_admin

    influx = start_backend(AuthInfluxDB1())
    create_admin(influx)
    influx.q('CREATE DATABASE "rqa"')
    telemetry = rqa_otel.setup(
        set_global=False, strategy="redact",
        overrides={
            "export.traces": "none", "export.metrics": "none", "export.logs": "influxdb",
            "export.influxdb": {"url": influx.url, "v1_compatibility": True, "db": "rqa",
                                "username": "admin", "password": "s3cret"},
            "export.spool.directory": str(tmp_path / "spool"),
        },
    )
    telemetry.get_logger("ops").warning("connected with s3cret as the password")
    assert telemetry.shutdown(timeout_s=10)
    [row] = influx.q('SELECT "body" FROM "logs"', db="rqa")["results"][0]["series"][0]["values"]
    assert "s3cret" not in row[1] and "[REDACTED]" in row[1]


def test_influxdb_exporter_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match=r"export\.influxdb\.url is empty, but export\.logs = influxdb"):
        load_settings(overrides={"export.logs": "influxdb"})
    with pytest.raises(SettingsError, match=r"export\.influxdb\.db is empty"):
        load_settings(overrides={"export.metrics": "influxdb", "export.influxdb": {"url": "http://h:8086", "v1_compatibility": True}})
    with pytest.raises(SettingsError, match=r"export\.influxdb\.span_dimensions.*duplicate dimension\(s\): a"):
        load_settings(overrides={"export.influxdb.span_dimensions": ["a", "a"]})
    with pytest.raises(SettingsError, match=r"export\.influxdb\.metrics_schema.*telegraf-prometheus-v2"):
        load_settings(overrides={"export.influxdb.metrics_schema": "v3"})


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> Path:
    """The embedded default's OTLP-JSON files of one demo run."""
    directory = tmp_path_factory.mktemp("demo")
    done = _cli("demo", "--quiet", "--json", "--years", DEMO_YEARS, "--output", str(directory))
    assert done.returncode == 0, done.stderr
    return directory


def test_replay_to_a_collector_over_otlp(rotel, demo_files) -> None:
    files = [str(demo_files / name) for name in ("traces.jsonl", "metrics.jsonl", "logs.jsonl")]
    done = _cli("replay", *files, "--to", f"otlp://{rotel.grpc_endpoint.split('//')[1]}")
    assert done.returncode == 0, done.stderr
    records = list(items(demo_files / "logs.jsonl", "resourceLogs", "scopeLogs", "logRecords"))
    assert f"{len(records)} log records" in done.stderr and "sent to" in done.stderr
    run_span = next(s for s in items(demo_files / "traces.jsonl", "resourceSpans", "scopeSpans", "spans")
                    if s["name"] == names.BACKTEST_SPAN)  # the demo's alerts are spans too
    [received] = rotel.wait_for_span(run_span["name"])
    assert received["trace_id"].lower() == run_span["traceId"]
    rotel.wait_for(lambda out: len(rotel.logs()) >= len(records), timeout=15)


def test_replay_to_influxdb_1x_and_bad_arguments(influxdb_v1, demo_files) -> None:
    influxdb_v1.create_database("rqa")
    done = _cli("replay", str(demo_files / "logs.jsonl"), "--to", "influxdb", influxdb_v1.url, "--v1-compatibility",
                "--db", "rqa", "--log-record-dimensions", "service.name,rqa.stock", "--quiet")
    assert done.returncode == 0, done.stderr
    records = list(items(demo_files / "logs.jsonl", "resourceLogs", "scopeLogs", "logRecords"))
    [count] = influxdb_v1.points('SELECT count("body") FROM "logs"', db="rqa")
    assert count["count"] == len(records)

    wrong = _cli("replay", str(demo_files / "logs.jsonl"), "--to", "influxdb", influxdb_v1.url, "--db", "missing", "--quiet")
    assert wrong.returncode == 1 and "database not found" in wrong.stderr
    assert _cli("replay", "x.jsonl", "--to", "kafka://h:1").stderr.count("expected otlp://HOST:PORT") == 1
    assert "give --bucket (and --org)" in _cli("replay", "x.jsonl", "--to", "influxdb", influxdb_v1.url).stderr
    assert "give --influxdb-bucket" in _cli("demo", "--influxdb", influxdb_v1.url).stderr
    missing = _cli("replay", str(demo_files / "nope.jsonl"), "--to", "otlp://127.0.0.1:9")
    assert missing.returncode == 2 and "nope.jsonl: cannot read" in missing.stderr
