"""No secret leaves through any attribute (issue 14, item 2).

Distinct secrets are planted in every place a value can leave by: metric
attributes (a registered secret under an innocent key, a value under
``api_key``, a URL password, a Bearer token), resource attributes (the
``resource_attributes`` setting and OTEL_RESOURCE_ATTRIBUTES), an exemplar
(the overflow series keeps every measurement attribute there), a span link,
an AWS access key id, ``secret VALUE`` without a separator, an alert
message, a vault-decrypted value (a resource attribute under an innocent
key, known only as a registered secret). Then every byte written or sent is searched: the export files,
the text log, the journal, the spool, /metrics, what a real rotel received,
what a real influxd stored, stdout and stderr. Zero hits.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

import rqa_otel
from rqa_otel.trading.monitor import BacktestMonitor
from tests.backends import free_port

SECRETS = {
    "registered": "RegSecret-1111x",
    "api_key": "KeyVal-2222x",
    "url": "UrlPw-3333x",
    "bearer": "BearTok-4444abcd",
    "resource_env": "ResEnvPw-5555x",
    "resource_setting": "ResKey-6666x",
    "exemplar": "ExemPw-7777x",
    "aws": "AKIAQWERTYUIOP123456",
    "no_separator": "NoSep-8888xyz",
    "link": "LinkPw-9999x",
    "alert": "AlertTok-1212x",
    "log_attribute": "LogPw-1313x",
    "vault": "VaultPlain-1414x",
}


def _plant(telemetry: rqa_otel.Telemetry, directory: Path) -> None:
    telemetry.register_secret(SECRETS["registered"])
    meter = telemetry.meter
    orders = meter.create_counter("orders")
    for _ in range(3):  # a series is scrubbed once, used many times
        orders.add(1, {"note": f"from {SECRETS['registered']}", "api_key": SECRETS["api_key"]})
        orders.add(1, {"db.url": f"postgres://quant:{SECRETS['url']}@db:5432/rqa"})
    meter.create_histogram("latency").record(3.0, {"auth.header": "x", "via": f"Bearer {SECRETS['bearer']}"})
    # Past the cardinality limit (2000) a measurement lands on the overflow
    # series, and its attributes are kept whole in the exemplar.
    fills = meter.create_counter("fills")
    with telemetry.tracer.start_as_current_span("cardinality"):
        for i in range(2000):
            fills.add(1, {"i": i})
        # The first measurement on the overflow series: the exemplar
        # reservoir always keeps the first one offered.
        fills.add(1, {"i": -1, "password": SECRETS["exemplar"]})
        fills.add(1, {"i": -2})
    with telemetry.tracer.start_as_current_span("parent") as parent:
        pass
    link = __import__("opentelemetry.trace", fromlist=["Link"]).Link(parent.get_span_context(), {"note": f"password={SECRETS['link']}"})
    with telemetry.tracer.start_as_current_span("linked", links=[link], attributes={"aws": f"key {SECRETS['aws']}"}):
        telemetry.get_logger("app").warning("rotating secret %s", SECRETS["no_separator"], extra={"cfg": f"token={SECRETS['log_attribute']}"})
    telemetry.alert("credential_check", "warning", message=f"token={SECRETS['alert']}")
    monitor = BacktestMonitor(telemetry, journal_path=directory / "trades.db")
    monitor.record_trade("600519.SH", "buy", 1688.5, 100, "dual_ma")
    monitor.flush()
    monitor.close()


def _leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def _all_bytes(directory: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(directory.rglob("*")) if p.is_file())


def _settings(directory: Path, **overrides) -> dict:
    return {
        "export.directory": str(directory),
        "logging.file": str(directory / "app.log"),
        "logging.console": True,
        **overrides,
    }


@pytest.fixture
def planted_env(monkeypatch, tmp_path_factory) -> Path:
    """OTEL_RESOURCE_ATTRIBUTES with a URL password and a value under
    ``api_key``, and a settings file with a vault-encrypted value that
    becomes a resource attribute under an innocent key."""
    from cryptography.fernet import Fernet

    from rqa_otel.config.vault import ConfigVault

    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        f"db.dsn=postgres://u:{SECRETS['resource_env']}@h/x,vendor.api_key={SECRETS['resource_setting']},team=quant",
    )
    key = Fernet.generate_key()
    monkeypatch.setenv("RQA_VAULT_KEYS", key.decode())
    settings = tmp_path_factory.mktemp("settings") / "settings.yaml"
    # service.instance_id becomes the resource attribute service.instance.id
    settings.write_text(f"service:\n  instance_id: {ConfigVault((key,)).encrypt(SECRETS['vault'])}\n")
    settings.chmod(0o600)
    return settings


def test_file_output_metrics_endpoint_journal_and_stderr(planted_env, tmp_path, capfd) -> None:
    port = free_port()
    telemetry = rqa_otel.setup(planted_env, overrides=_settings(tmp_path, **{"ops.http_port": port}), set_global=False)
    _plant(telemetry, tmp_path)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        scraped = response.read().decode()
    telemetry.shutdown()
    written = _all_bytes(tmp_path)
    captured = capfd.readouterr()
    # What was planted did arrive, redacted.
    assert "orders" in scraped and "db_url" in scraped and "[REDACTED]" in scraped
    assert "db.dsn" in written and "vendor.api_key" in written and "service.instance.id" in written and "cfg" in written and "linked" in written
    assert "_exemplar" in written or "exemplars" in written
    assert _leaks(scraped) == []
    assert _leaks(written) == []
    assert _leaks(captured.out + captured.err) == []


def test_otlp_to_rotel_with_spool(planted_env, tmp_path, rotel, capfd) -> None:
    overrides = _settings(
        tmp_path, **{
            "export.traces": "otlp", "export.metrics": "otlp", "export.logs": "otlp",
            "export.otlp.endpoint": rotel.http_endpoint, "export.otlp.protocol": "http/protobuf",
            "export.spool.enabled": True,
        },
    )
    telemetry = rqa_otel.setup(planted_env, overrides=overrides, set_global=False)
    _plant(telemetry, tmp_path)
    assert telemetry.force_flush()
    telemetry.shutdown()
    received = rotel.output()
    assert "db.dsn" in received and "orders" in received and "[REDACTED]" in received
    assert _leaks(received) == []
    assert _leaks(_all_bytes(tmp_path)) == []
    captured = capfd.readouterr()
    assert _leaks(captured.out + captured.err) == []


# The series budget (the default) writes no exemplar points; with it off,
# exemplars reach InfluxDB as ``<metric>_exemplar`` series and are checked too.
NO_SERIES_BUDGET = {"metric_resource_exclude": [], "metric_temporality": "cumulative", "series_limit": 0, "metric_exclude": []}


@pytest.mark.parametrize(
    "budget, expected",
    [({}, {"orders", "logs", "spans"}), (NO_SERIES_BUDGET, {"orders", "logs", "spans", "fills_exemplar"})],
    ids=["series-budget", "no-series-budget"],
)
def test_influxdb_tags_and_fields(planted_env, tmp_path, influxdb_v1, capfd, budget, expected) -> None:
    influxdb_v1.create_database("rqa")
    overrides = _settings(
        tmp_path, **{
            "export.traces": "influxdb", "export.metrics": "influxdb", "export.logs": "influxdb",
            "export.influxdb": {"url": influxdb_v1.url, "v1_compatibility": True, "db": "rqa", **budget},
            "export.spool.enabled": True,
        },
    )
    telemetry = rqa_otel.setup(planted_env, overrides=overrides, set_global=False)
    _plant(telemetry, tmp_path)
    assert telemetry.force_flush()
    telemetry.shutdown()
    measurements = [row["name"] for row in influxdb_v1.points("SHOW MEASUREMENTS", db="rqa")]
    assert expected <= set(measurements)
    stored = json.dumps([influxdb_v1.query(f'SELECT * FROM "{name}"', db="rqa") for name in measurements])
    stored += json.dumps(influxdb_v1.query("SHOW TAG VALUES WITH KEY =~ /.*/", db="rqa"))
    assert "db.dsn" in stored and "[REDACTED]" in stored
    assert _leaks(stored) == []
    assert _leaks(_all_bytes(tmp_path)) == []
    captured = capfd.readouterr()
    assert _leaks(captured.out + captured.err) == []
