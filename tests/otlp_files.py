"""Reading the embedded default's OTLP-JSON files back in tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


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


def attributes(item: dict) -> dict[str, Any]:
    """An OTLP-JSON attribute list as a plain dict (values as JSON gives them)."""
    return {a["key"]: next(iter(a["value"].values()), None) for a in item.get("attributes", [])}


def last_points(path: Path, name: str) -> dict[tuple, dict]:
    """The last exported data point of each series of metric ``name`` in an
    OTLP-JSON metrics file, keyed by its sorted attribute items."""
    points = {}
    for metric in items(path, "resourceMetrics", "scopeMetrics", "metrics", missing_ok=True):
        if metric["name"] == name:
            data = metric.get("sum") or metric.get("gauge") or metric.get("histogram")
            for point in data["dataPoints"]:
                points[tuple(sorted(attributes(point).items()))] = point
    return points
