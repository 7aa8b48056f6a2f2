"""`rqa-otel run` and `opentelemetry-instrument` on unmodified scripts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from otlp_files import attributes, log_bodies, requests
from rqa_otel import names

BIN = Path(sys.executable).parent

STRATEGY_SCRIPT = textwrap.dedent(
    """
    import logging, sys, time
    from opentelemetry import trace

    tracer = trace.get_tracer("my_strategy")
    with tracer.start_as_current_span("session"):
        logging.getLogger("my_strategy").warning("signal BUY 600519.SH", extra={"stock": "600519.SH"})
        if sys.argv[1:] == ["wait"]:
            print("ready", flush=True)
            time.sleep(60)
    print("done")
    """
)


def run_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    env.update({"RQA_EXPORT__DIRECTORY": str(tmp_path / "telemetry"), **extra})
    return env


def span_names_and_resource(path):
    found = {}
    for request in requests(path):
        for rs in request["resourceSpans"]:
            resource = attributes(rs["resource"])
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    found[span["name"]] = (span, resource)
    return found


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "my_strategy.py"
    path.write_text(STRATEGY_SCRIPT)
    return path


def test_unmodified_script_is_instrumented_and_flushed_at_exit(tmp_path, script):
    result = subprocess.run(
        [BIN / "rqa-otel", "run", "--strategy", "alpha", "--service", "desk-1", "--", sys.executable, str(script)],
        env=run_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    spans = span_names_and_resource(tmp_path / "telemetry" / "traces.jsonl")
    _, resource = spans["session"]
    assert resource[names.STRATEGY] == "alpha"
    assert resource[names.SERVICE_NAME] == "desk-1"
    assert log_bodies(tmp_path / "telemetry" / "logs.jsonl") == ["signal BUY 600519.SH"]


def test_sigterm_ends_open_spans_and_flushes(tmp_path, script):
    process = subprocess.Popen(
        [BIN / "rqa-otel", "run", "--strategy", "alpha", "--", sys.executable, str(script), "wait"],
        env=run_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    spans = span_names_and_resource(tmp_path / "telemetry" / "traces.jsonl")
    session, _ = spans["session"]
    assert int(session["endTimeUnixNano"]) > int(session["startTimeUnixNano"])
    assert log_bodies(tmp_path / "telemetry" / "logs.jsonl") == ["signal BUY 600519.SH"]


def test_missing_script_fails_with_a_clear_message(tmp_path):
    started = time.monotonic()
    result = subprocess.run(
        [BIN / "rqa-otel", "run", "--", sys.executable, str(tmp_path / "no_such_strategy.py")],
        env=run_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "script not found" in result.stderr and "no_such_strategy.py" in result.stderr
    assert time.monotonic() - started < 30


def test_missing_command_and_bad_settings_fail_before_running(tmp_path):
    missing = subprocess.run(
        [BIN / "rqa-otel", "run", "--", "no-such-binary-xyz"], env=run_env(tmp_path), capture_output=True, text=True
    )
    assert missing.returncode == 127 and "command not found: no-such-binary-xyz" in missing.stderr

    bad = subprocess.run(
        [BIN / "rqa-otel", "run", "--", sys.executable, "-c", "print('ran')"],
        env=run_env(tmp_path, RQA_EXPORT__TRACES="zipkin"), capture_output=True, text=True,
    )
    assert bad.returncode != 0 and "ran" not in bad.stdout
    assert "export.traces = 'zipkin'" in bad.stderr and "RQA_EXPORT__TRACES" in bad.stderr


def test_opentelemetry_instrument_with_our_distro_gives_the_same_setup(tmp_path, script):
    instrument = shutil.which("opentelemetry-instrument", path=str(BIN))
    assert instrument, "opentelemetry-instrument is installed with opentelemetry-instrumentation"
    env = run_env(tmp_path, OTEL_PYTHON_DISTRO="rqa", OTEL_PYTHON_CONFIGURATOR="rqa", RQA_STRATEGY="alpha")
    result = subprocess.run(
        [instrument, sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    spans = span_names_and_resource(tmp_path / "telemetry" / "traces.jsonl")
    assert spans["session"][1][names.STRATEGY] == "alpha"
    assert log_bodies(tmp_path / "telemetry" / "logs.jsonl") == ["signal BUY 600519.SH"]
