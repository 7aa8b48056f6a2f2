"""Reading the file exporter's OTLP-JSON lines files (``traces.jsonl``,
``metrics.jsonl``, ``logs.jsonl``: one export request a line) back in tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


SPANS = ("resourceSpans", "scopeSpans", "spans")
LOG_RECORDS = ("resourceLogs", "scopeLogs", "logRecords")
METRICS = ("resourceMetrics", "scopeMetrics", "metrics")


def requests(path: Path) -> list[dict]:
    """Every export request in an OTLP-JSON lines file, parsed."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def items(path: Path, *keys: str, missing_ok: bool = False) -> Iterator[dict]:
    """The objects at ``keys`` in every request of an OTLP-JSON lines file,
    e.g. ``items(p, "resourceSpans", "scopeSpans", "spans")``."""
    if missing_ok and not path.exists():
        return
    for line in path.read_text().splitlines():
        nodes = [json.loads(line)]
        for key in keys:
            nodes = [child for node in nodes for child in node.get(key, [])]
        yield from nodes


def spans(path: Path, *, missing_ok: bool = False) -> Iterator[dict]:
    """Every span in a ``traces.jsonl``."""
    return items(path, *SPANS, missing_ok=missing_ok)


def log_records(path: Path, *, missing_ok: bool = False) -> Iterator[dict]:
    """Every log record in a ``logs.jsonl``."""
    return items(path, *LOG_RECORDS, missing_ok=missing_ok)


def metrics(path: Path, *, missing_ok: bool = False) -> Iterator[dict]:
    """Every metric (of every collection) in a ``metrics.jsonl``."""
    return items(path, *METRICS, missing_ok=missing_ok)


def log_bodies(path: Path) -> list[str]:
    """The string bodies of the log records in a ``logs.jsonl``, in order."""
    return [record["body"]["stringValue"] for record in log_records(path)]


def attributes(item: dict) -> dict[str, Any]:
    """An OTLP-JSON attribute list as a plain dict (values as JSON gives them)."""
    return {a["key"]: next(iter(a["value"].values()), None) for a in item.get("attributes", [])}


def last_points(path: Path, name: str) -> dict[tuple, dict]:
    """The last exported data point of each series of metric ``name`` in an
    OTLP-JSON metrics file, keyed by its sorted attribute items."""
    points = {}
    for metric in metrics(path, missing_ok=True):
        if metric["name"] == name:
            data = metric.get("sum") or metric.get("gauge") or metric.get("histogram")
            for point in data["dataPoints"]:
                points[tuple(sorted(attributes(point).items()))] = point
    return points
