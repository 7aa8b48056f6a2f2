"""The setup() handle: alerts, bounded shutdown, failure isolation, idempotence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import rqa_otel
from otlp_files import attributes, log_bodies, metrics, spans
from rqa_otel import names


def test_alert_is_a_tagged_child_span_and_is_counted(file_telemetry, tmp_path):
    telemetry = file_telemetry(strategy="alpha")
    with telemetry.tracer.start_as_current_span("backtest") as parent:
        telemetry.alert("quota_breach", "critical", message="cpu 130% of quota", attributes={"rqa.quota.cpu": 1.3})
        telemetry.alert("quota_breach", "critical", strategy="beta")
        telemetry.alert("slow_feed", "info")
    assert telemetry.shutdown()

    alerts = [span for span in spans(tmp_path / "traces.jsonl") if span["name"] == names.ALERT_SPAN]
    assert len(alerts) == 3
    first = attributes(alerts[0])
    assert first[names.ALERT_NAME] == "quota_breach"
    assert first[names.ALERT_SEVERITY] == "critical"
    assert first[names.STRATEGY] == "alpha"
    assert first[names.ALERT_MESSAGE] == "cpu 130% of quota"
    assert first["rqa.quota.cpu"] == 1.3
    assert alerts[0]["status"]["code"] == 2  # ERROR for critical
    assert alerts[0]["parentSpanId"] == format(parent.get_span_context().span_id, "016x")
    assert attributes(alerts[1])[names.STRATEGY] == "beta"

    counted = {}
    for metric in metrics(tmp_path / "metrics.jsonl"):
        if metric["name"] == names.ALERTS_COUNTER:
            for point in metric["sum"]["dataPoints"]:
                key = tuple(sorted(attributes(point).items()))
                counted[key] = int(point["asInt"])
    assert counted == {
        ((names.ALERT_NAME, "quota_breach"), (names.ALERT_SEVERITY, "critical"), (names.STRATEGY, "alpha")): 1,
        ((names.ALERT_NAME, "quota_breach"), (names.ALERT_SEVERITY, "critical"), (names.STRATEGY, "beta")): 1,
        ((names.ALERT_NAME, "slow_feed"), (names.ALERT_SEVERITY, "info"), (names.STRATEGY, "alpha")): 1,
    }


def test_alert_with_bad_severity_is_refused_and_nothing_is_emitted(file_telemetry, tmp_path):
    telemetry = file_telemetry(strategy="alpha")
    with pytest.raises(ValueError, match="'urgent' is not one of info, warning, critical"):
        telemetry.alert("x", "urgent")
    telemetry.shutdown()
    assert not (tmp_path / "traces.jsonl").exists()


def test_shutdown_is_bounded_when_the_collector_does_not_answer(rotel):
    # A real rotel, frozen with SIGSTOP: the kernel still accepts connections,
    # nothing ever answers them. The stock SDK waits out its per-request
    # timeout (here 30 s) and retries; shutdown must not.
    telemetry = rqa_otel.setup(
        overrides={
            "export": {"traces": "otlp", "metrics": "otlp", "logs": "otlp", "shutdown_timeout_s": 1.5},
            "export.otlp": {"endpoint": rotel.grpc_endpoint, "timeout_s": 30},
        },
        set_global=False,
    )
    os.kill(rotel.process.pid, signal.SIGSTOP)
    try:
        with telemetry.tracer.start_as_current_span("order"):
            telemetry.get_logger("bounded").warning("sent while the collector hangs")
        telemetry.meter.create_counter("orders").add(1)
        started = time.monotonic()
        flushed = telemetry.shutdown()
        elapsed = time.monotonic() - started
    finally:
        os.kill(rotel.process.pid, signal.SIGCONT)
    assert elapsed < 2.5, f"shutdown took {elapsed:.1f} s with a 1.5 s limit"
    assert flushed is False, "shutdown reports that telemetry was abandoned"


def test_export_failure_never_reaches_strategy_code(file_telemetry, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the telemetry directory should be")
    telemetry = file_telemetry(directory=blocker, strategy="alpha")
    logger = telemetry.get_logger("isolation")
    for i in range(50):
        with telemetry.tracer.start_as_current_span("bar"):
            logger.info("bar %d", i)
            telemetry.alert("drawdown", "warning")
    assert telemetry.force_flush() is True  # the providers flushed; the exporter failed
    telemetry.shutdown()
    counts = {c.signal: c for c in telemetry.export_counts()}
    # 50 bar spans, 50 drawdown alerts, and the alert that log records are being lost
    assert counts["traces"].exported == 0 and counts["traces"].failed == 101
    assert counts["logs"].failed == 50


def test_disabled_signals_use_no_op_providers(file_telemetry, tmp_path):
    telemetry = file_telemetry(strategy="alpha",
                               overrides={"export.traces": "none", "export.metrics": "none", "export.logs": "none"})
    with telemetry.tracer.start_as_current_span("x") as span:
        assert not span.is_recording()
    telemetry.get_logger("off").error("goes nowhere")
    assert telemetry.shutdown() and telemetry.export_counts() == []
    assert list(tmp_path.iterdir()) == []


SECOND_SETUP = textwrap.dedent(
    """
    import logging, sys, rqa_otel
    first = rqa_otel.setup(strategy="alpha")
    second = rqa_otel.setup(strategy="alpha")
    third = rqa_otel.setup(strategy="beta")
    assert first is second is third is rqa_otel.current()
    logging.getLogger("app").info("once")
    """
)


def test_setup_twice_returns_the_same_handle_and_logs_once(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SECOND_SETUP],
        cwd=tmp_path,
        env={**os.environ, "RQA_EXPORT__DIRECTORY": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "called again with different settings" in result.stderr
    bodies = log_bodies(tmp_path / "out" / "logs.jsonl")
    assert bodies.count("once") == 1, "one handler on the root logger, flushed once at exit"
