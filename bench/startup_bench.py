"""run_startup: the wall time of starting (and ending) `python -c pass`
with telemetry, `rqa-otel run` against the stock `opentelemetry-instrument`
(the OTel SDK's own configurator, as opentelemetry-distro registers it),
both exporting OTLP/HTTP to a real rotel, interleaved in one run."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)

# opentelemetry-distro's configurator is `class OpenTelemetryConfigurator(
# _OTelSDKConfigurator): pass`; registering the SDK's class the same way
# gives the stock path without installing anything into the environment.
_ENTRY_POINTS = "[opentelemetry_configurator]\nstock = opentelemetry.sdk._configuration:_OTelSDKConfigurator\n"


def _stock_configurator(directory: str) -> str:
    info = os.path.join(directory, "stock_sdk_configurator-1.0.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as out:
        out.write("Metadata-Version: 2.1\nName: stock-sdk-configurator\nVersion: 1.0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as out:
        out.write(_ENTRY_POINTS)
    return directory


def _timed(command: list[str], env: dict[str, str]) -> float:
    """Wall time to the child's exit. A blocking wait (not subprocess.run's
    timeout, whose wait polls in steps of up to 50 ms) measures it exactly."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killer = threading.Timer(120, child.kill)
    killer.start()
    try:
        returncode = child.wait()
    finally:
        killer.cancel()
    elapsed = time.perf_counter() - started
    if returncode:
        raise subprocess.CalledProcessError(returncode, command)
    return elapsed


def measure(repeat: int) -> dict:
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from backends import Rotel

    rotel = Rotel().start()
    project, anchor, bare = [], [], []
    try:
        with tempfile.TemporaryDirectory() as directory:
            # Both sides start as an installed program does: with bytecode.
            # (pip compiles site-packages at install time; an editable or
            # source checkout writes it on the first start, run untimed below.)
            base = {
                k: v for k, v in os.environ.items()
                if not k.startswith(("RQA_", "OTEL_")) and k != "PYTHONDONTWRITEBYTECODE"
            }
            base.update({
                "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.http_endpoint,
            })
            ours = dict(base, RQA_EXPORT__DIRECTORY=os.path.join(directory, "telemetry"))
            stock = dict(
                base, OTEL_PYTHON_DISTRO="stock", OTEL_PYTHON_CONFIGURATOR="stock",
                # rqa-otel's own instrumentor is not part of the stock path.
                OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="backtrader",
                PYTHONPATH=os.pathsep.join(filter(None, [_stock_configurator(os.path.join(directory, "stock")), base.get("PYTHONPATH")])),
            )
            commands = [
                ([os.path.join(BIN, "rqa-otel"), "run", "--", sys.executable, "-c", "pass"], ours),
                ([os.path.join(BIN, "opentelemetry-instrument"), sys.executable, "-c", "pass"], stock),
            ]
            for command, env in commands:  # untimed: writes any missing bytecode
                _timed(command, env)
            for _ in range(repeat):
                project.append(_timed([os.path.join(BIN, "rqa-otel"), "run", "--", sys.executable, "-c", "pass"], ours))
                anchor.append(_timed([os.path.join(BIN, "opentelemetry-instrument"), sys.executable, "-c", "pass"], stock))
                bare.append(_timed([sys.executable, "-c", "pass"], base))
    finally:
        rotel.stop()
    return {
        "project": statistics.median(project), "anchor": statistics.median(anchor),
        "bare_python_s": round(statistics.median(bare), 4),
    }
