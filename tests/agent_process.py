"""Running the real ``rqa-otel agent`` and a strategy fleet in tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from backends import _make_preexec
from otlp_files import attributes, items

FLEET = Path(__file__).with_name("strategy_fleet.py")


def start_agent(run_dir: Path, export_dir: Path, interval_s: float, http_port: int | None = None,
                settings: Path | None = None) -> subprocess.Popen:
    env = dict(
        os.environ,
        RQA_EXPORT__DIRECTORY=str(export_dir),
        RQA_EXPORT__METRIC_INTERVAL_S="1",
        RQA_RESOURCES__GPU="false",
    )
    env.pop("RQA_SETTINGS_FILE", None)
    command = [sys.executable, "-m", "rqa_otel.cli", "agent", "--run-dir", str(run_dir), "--interval", str(interval_s)]
    if http_port:
        command += ["--http-port", str(http_port)]
    if settings:
        command += ["--settings", str(settings)]
    # SIGTERM when the test process dies, however it dies: no orphaned agent.
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=_make_preexec())


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "agent" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_until(condition: Callable[[], Any], timeout: float, what: str, poll_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Fleet:
    """``strategy_fleet.py`` as a subprocess; its JSON lines collected by a thread."""

    def __init__(self, run_dir: Path, **options: int) -> None:
        command = [sys.executable, str(FLEET), "--run-dir", str(run_dir)]
        for key, value in options.items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=_make_preexec())
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def events(self, event: str) -> list[dict]:
        return [line for line in list(self.lines) if line["event"] == event]

    def stop(self) -> None:
        stop(self.process, 5)


def alert_spans(export_dir: Path, name: str) -> list[dict]:
    spans = items(export_dir / "traces.jsonl", "resourceSpans", "scopeSpans", "spans", missing_ok=True)
    return [attributes(s) | {"_start": int(s["startTimeUnixNano"]) / 1e9} for s in spans
            if s["name"] == "rqa.alert" and attributes(s).get("rqa.alert.name") == name]


def log_events(export_dir: Path, event: str) -> list[dict]:
    records = items(export_dir / "logs.jsonl", "resourceLogs", "scopeLogs", "logRecords", missing_ok=True)
    return [attributes(r) for r in records if r.get("eventName") == event]


def last_counter_values(export_dir: Path, metric: str) -> dict[tuple, float]:
    """Cumulative counter: the last value per attribute set."""
    values: dict[tuple, float] = {}
    for m in items(export_dir / "metrics.jsonl", "resourceMetrics", "scopeMetrics", "metrics", missing_ok=True):
        if m["name"] != metric:
            continue
        for point in m["sum"]["dataPoints"]:
            key = tuple(sorted(attributes(point).items()))
            values[key] = float(point.get("asDouble", point.get("asInt", 0)))
    return values
