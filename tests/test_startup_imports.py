"""What `rqa-otel run` loads: a feature's code only when the feature is used.
With the embedded default (files) and with OTLP/HTTP, the program's
interpreter imports no gRPC, InfluxDB, NVML, dynaconf/YAML or asyncio code,
from its start to the end of its telemetry's shutdown; the `rqa-otel`
command itself imports no telemetry pipeline to launch the program."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_run_command import run_env

from rqa_otel import names

BIN = Path(sys.executable).parent

# Modules a user should not pay for unless the feature is used.
FEATURE_MODULES = (
    "grpc", "dynaconf", "ruamel", "influxdb_client", "rqa_otel.export.influx", "rqa_otel.influx", "pynvml", "asyncio",
    "google.protobuf",  # OTLP metrics are written directly; protobuf only for spans (none here)
    "urllib3",  # OTLP/HTTP goes through http.client; urllib3 is the InfluxDB exporter's
)

# Flushes and stops telemetry first, so what the export imports counts too.
REPORT_MODULES = (
    "import json, sys, rqa_otel\n"
    "telemetry = rqa_otel.current()\n"
    "assert telemetry is not None, 'telemetry was not set up'\n"
    "telemetry.shutdown()\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


def _loaded(modules: list[str], prefixes=FEATURE_MODULES) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def _child_modules(tmp_path, env) -> list[str]:
    done = subprocess.run(
        [str(BIN / "rqa-otel"), "run", "--", sys.executable, "-c", REPORT_MODULES],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_embedded_default_loads_no_feature_it_does_not_use(tmp_path):
    modules = _child_modules(tmp_path, run_env(tmp_path))
    assert "rqa_otel.pipeline" in modules  # telemetry was on
    assert _loaded(modules) == []
    assert (tmp_path / "telemetry" / "metrics.jsonl").stat().st_size > 0


def test_otlp_http_loads_no_feature_it_does_not_use(tmp_path, rotel):
    env = run_env(
        tmp_path, OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", OTEL_EXPORTER_OTLP_ENDPOINT=rotel.http_endpoint,
    )
    modules = _child_modules(tmp_path, env)
    assert _loaded(modules) == []
    assert rotel.wait_for_metric(names.STRATEGY_PROCESS_COUNT)  # the resource gauges went out


def test_the_run_command_imports_no_telemetry_pipeline(tmp_path):
    # The command execs the program, so its imports are read from
    # -X importtime (a command-line option: the program does not inherit it).
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "from rqa_otel.cli import main; main(['run', '--', 'true'])"],
        env=run_env(tmp_path), capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    imported = [line.rpartition("|")[2].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "rqa_otel.cli.run" in imported
    assert _loaded(imported, ("rqa_otel.pipeline", "rqa_otel.telemetry", "rqa_otel.config", "opentelemetry")) == []


def test_the_programs_own_objects_are_still_collected(tmp_path):
    # rqa-otel run starts telemetry without the cyclic GC and freezes what it
    # made (gc.freeze); the program runs with the GC on, and what it makes is
    # collected as without telemetry.
    program = (
        "import gc\n"
        "class Node:\n"
        "    def __del__(self):\n"
        "        print('collected', flush=True)\n"
        "a, b = Node(), Node()\n"
        "a.other, b.other = b, a\n"
        "del a, b\n"
        "print('frozen', gc.get_freeze_count() > 0, 'enabled', gc.isenabled(), 'found', gc.collect() >= 2, flush=True)\n"
    )
    done = subprocess.run(
        [str(BIN / "rqa-otel"), "run", "--", sys.executable, "-c", program],
        env=run_env(tmp_path), capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["collected", "collected", "frozen True enabled True found True"]
