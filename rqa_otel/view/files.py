"""The telemetry directory's OTLP-JSON lines files, read incrementally.

Each file is read from where the last read stopped (its offset is
remembered), one complete line (one export request) at a time. A last line
without its newline is a write in progress: it is left for the next read.
A line that is not valid JSON (a crash mid-write, a disk that filled up) is
skipped and counted; the pipeline page shows the counts.

What is kept in memory is small and bounded: spans (traces are few per
run), per-trace aggregates of the logs (signals by stock, records by level)
with the offsets of the lines that hold each trace's records, and recent
points of the metrics the resource and pipeline pages draw. Log records
themselves stay on disk: a log search re-reads only the lines of its trace.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Iterator

from rqa_otel import names

TRACES, METRICS, LOGS = "traces.jsonl", "metrics.jsonl", "logs.jsonl"
READ_BLOCK = 1 << 20
POINTS_PER_SERIES = 2_000
"""Metric points kept per series (the newest): enough for a chart, bounded."""

RESOURCE_METRICS = (
    names.STRATEGY_CPU_PERCENT, names.STRATEGY_MEMORY_USAGE, names.STRATEGY_GPU_MEMORY_USAGE,
    names.QUOTA_LIMIT_GAUGE, names.QUOTA_USAGE_GAUGE, names.QUOTA_UTILIZATION_GAUGE, names.QUOTA_STATE_GAUGE,
    names.QUOTA_BREACHES_COUNTER,
)
PIPELINE_METRICS = (
    names.LOG_RECORDS_DROPPED_COUNTER, names.LOG_RECORDS_SUPPRESSED_COUNTER, names.SPOOL_SIZE_GAUGE,
    names.SPOOL_DROPPED_COUNTER, names.SPOOL_REPLAYED_COUNTER, names.CONFIG_RELOADS_COUNTER,
    names.CONFIG_LAST_RELOAD_SUCCESSFUL_GAUGE,
)
_KEPT_METRICS = frozenset(RESOURCE_METRICS + PIPELINE_METRICS)


def value_of(any_value: dict) -> Any:
    """An OTLP-JSON AnyValue as a Python value (64-bit ints are strings there)."""
    for key, value in any_value.items():
        if key == "intValue":
            return int(value)
        if key == "arrayValue":
            return [value_of(item) for item in value.get("values", [])]
        if key == "kvlistValue":
            return attributes_of(value)
        return value
    return None


def attributes_of(node: dict) -> dict[str, Any]:
    return {item["key"]: value_of(item.get("value", {})) for item in node.get("attributes", node.get("values", []))}


@dataclass
class FileState:
    """How far one file has been read, and what was wrong with it."""

    path: str
    offset: int = 0
    lines: int = 0
    corrupt: int = 0
    pending: int = 0  # bytes of an unfinished last line
    identity: tuple[int, int] | None = None
    restarts: int = 0  # times the file was replaced or shortened (rotated) and read again from its start

    def new_lines(self) -> Iterator[tuple[int, bytes]]:
        """(offset, line) of each complete line written since the last call.
        A file replaced (rotated) or shortened is read again from its start."""
        try:
            handle = open(self.path, "rb")
        except OSError:
            return
        with handle:
            status = os.fstat(handle.fileno())
            identity = (status.st_dev, status.st_ino)
            if identity != self.identity or status.st_size < self.offset:
                if self.identity is not None:
                    self.restarts += 1
                self.identity, self.offset, self.pending = identity, 0, 0
            handle.seek(self.offset)
            line_start = self.offset
            pieces: list[bytes] = []  # the parts of a line longer than what was read so far
            while True:
                block = handle.read(READ_BLOCK)
                if not block:
                    break
                start = 0
                while True:
                    end = block.find(b"\n", start)
                    if end < 0:
                        pieces.append(block[start:])
                        break
                    if pieces:  # joined once: a line of many blocks costs no repeated copies
                        pieces.append(block[start:end])
                        line = b"".join(pieces)
                        pieces = []
                    else:
                        line = block[start:end]
                    yield line_start, line
                    line_start += len(line) + 1
                    self.lines += 1
                    self.offset = line_start
                    start = end + 1
            self.pending = sum(map(len, pieces))


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    status: str
    service: str


@dataclass
class TraceLogs:
    """What the logs say about one trace (one run): aggregates, and where its lines are."""

    lines: list[int] = field(default_factory=list)  # offsets in logs.jsonl
    signals: Counter = field(default_factory=Counter)  # (stock, signal) -> records
    levels: Counter = field(default_factory=Counter)
    records: int = 0


@dataclass
class LogRecord:
    time_ns: int
    level: str
    body: str
    attributes: dict[str, Any]
    trace_id: str
    scope: str


class TelemetryFiles:
    """The OTLP-JSON files of one telemetry directory, kept up to date by ``refresh()``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.files = {name: FileState(os.path.join(directory, name)) for name in (TRACES, LOGS, METRICS)}
        self.spans: dict[str, list[Span]] = defaultdict(list)  # trace id -> spans
        self.runs: dict[str, Span] = {}  # run id -> its rqa.backtest span
        self.run_traces: dict[str, str] = {}  # run id -> trace id, also from trade events before the run span ends
        self.alerts: list[Span] = []
        self.log_events: dict[str, list[LogRecord]] = defaultdict(list)  # quota warnings and recoveries
        self.trace_logs: dict[str, TraceLogs] = defaultdict(TraceLogs)
        self.metrics: dict[str, dict[tuple, deque]] = defaultdict(dict)  # name -> series key -> (time, value)
        self.version = 0  # bumped whenever something new was read
        self.indexed = dict.fromkeys(self.files, 0)  # offset up to which each file is in the aggregates
        self._lock = threading.RLock()

    def exists(self) -> bool:
        return any(os.path.exists(state.path) for state in self.files.values())

    def refresh(self, pause=None) -> bool:
        """Read what was appended since the last call; True if anything was.
        One caller at a time (TelemetryView serializes them); pages read
        meanwhile, under the lock taken per line, and see the lines so far.
        ``pause()``, called between lines, lets a page being served go first
        (reading holds the GIL)."""
        changed = False
        for name, add in ((TRACES, self._add_spans), (LOGS, self._add_logs), (METRICS, self._add_metrics)):
            state = self.files[name]
            restarts = state.restarts
            for line_offset, line in state.new_lines():
                if name == LOGS and state.restarts != restarts:
                    # Rotated: the offsets kept point into the old file. The
                    # aggregates stay; a search covers the current file.
                    restarts = state.restarts
                    with self._lock:
                        for logs in self.trace_logs.values():
                            logs.lines.clear()
                if pause is not None:
                    pause()
                request = self._parse(name, line)
                with self._lock:
                    if request is not None:
                        try:
                            add(request, line_offset)
                        except (ValueError, KeyError, TypeError, AttributeError):  # JSON, but not OTLP
                            state.corrupt += 1
                    self.indexed[name] = line_offset + len(line) + 1  # up to this line, included
                    self.version += 1
                changed = True
            with self._lock:
                self.indexed[name] = state.offset
        return changed

    def _parse(self, name: str, line: bytes) -> dict | None:
        if not line.strip():
            return None
        try:
            request = json.loads(line)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self.files[name].corrupt += 1
            return None
        return request

    # --- traces ---------------------------------------------------------------

    def _add_spans(self, request: dict, line_offset: int) -> None:
        for resource_spans in request.get("resourceSpans", []):
            service = attributes_of(resource_spans.get("resource", {})).get("service.name", "")
            for scope_spans in resource_spans.get("scopeSpans", []):
                for raw in scope_spans.get("spans", []):
                    span = Span(
                        raw["traceId"], raw["spanId"], raw.get("parentSpanId", ""), raw["name"],
                        int(raw["startTimeUnixNano"]), int(raw["endTimeUnixNano"]), attributes_of(raw),
                        [(e.get("name", ""), int(e.get("timeUnixNano", 0)), attributes_of(e)) for e in raw.get("events", [])],
                        raw.get("status", {}).get("message", ""), service,
                    )
                    self.spans[span.trace_id].append(span)
                    if span.name == names.BACKTEST_SPAN and names.RUN_ID in span.attributes:
                        run_id = str(span.attributes[names.RUN_ID])
                        self.runs[run_id] = span
                        self.run_traces[run_id] = span.trace_id
                    if names.ALERT_NAME in span.attributes:
                        self.alerts.append(span)

    # --- logs -----------------------------------------------------------------

    def _add_logs(self, request: dict, line_offset: int) -> None:
        """Aggregates of one line's records. The hot loop of the reader (a
        million records a minute's backtest): plain dict lookups, and the
        attributes looked at are only the few it counts by."""
        trace_logs, run_traces = self.trace_logs, self.run_traces
        wanted = _AGGREGATED_KEYS
        for resource_logs in request.get("resourceLogs", ()):
            for scope_logs in resource_logs.get("scopeLogs", ()):
                scope = scope_logs.get("scope", {}).get("name", "")
                is_trade = scope == names.TRADE_EVENT
                last_trace, logs = None, None
                for raw in scope_logs.get("logRecords", ()):
                    found = {}
                    for item in raw.get("attributes", ()):
                        key = item["key"]
                        if key in wanted:
                            found[key] = value_of(item["value"])
                    event = found.get(names.EVENT_NAME) or scope
                    if event in _QUOTA_EVENTS:
                        self.log_events[event].append(_record(raw, scope))
                    trace_id = raw.get("traceId")
                    if not trace_id:
                        continue
                    if trace_id != last_trace:
                        last_trace, logs = trace_id, trace_logs[trace_id]
                        if not logs.lines or logs.lines[-1] != line_offset:
                            logs.lines.append(line_offset)
                    logs.records += 1
                    logs.levels[raw.get("severityText", "")] += 1
                    signal = found.get(names.SIGNAL)
                    if signal and not is_trade and signal != names.DEFAULT_SIGNAL:
                        logs.signals[(str(found.get(names.STOCK, "")), str(signal))] += 1
                    run_id = found.get(names.RUN_ID)
                    if run_id and run_id not in run_traces:
                        run_traces[str(run_id)] = trace_id

    def search_logs(self, trace_id: str | None, match, offset: int, limit: int) -> tuple[list[LogRecord], bool]:
        """Records of ``trace_id`` (every record when None) for which
        ``match(record)`` holds, oldest first: ``limit`` of them after
        skipping ``offset``, and whether more follow. Reads only the lines
        that hold the trace's records, and stops once the page is full."""
        with self._lock:
            state = self.files[LOGS]
            logs = self.trace_logs.get(trace_id) if trace_id else None
            offsets = list(logs.lines) if logs else []
            indexed = self.indexed[LOGS] if trace_id else 0
        found: list[LogRecord] = []
        try:
            handle = open(state.path, "rb")
        except OSError:
            return [], False
        with handle:
            # The lines indexed as holding the trace, then whatever the
            # reader has not reached yet (only lines that name the trace).
            needle = f'"traceId":"{trace_id}"'.encode() if trace_id else b""
            lines = chain(_lines_at(handle, offsets), _lines_from(handle, indexed, needle))
            for line in lines:
                try:
                    request = json.loads(line)
                except ValueError:
                    continue
                for record in _records(request):
                    if (trace_id is None or record.trace_id == trace_id) and match(record):
                        if offset:
                            offset -= 1
                            continue
                        if len(found) == limit:
                            return found, True
                        found.append(record)
        return found, False

    # --- metrics --------------------------------------------------------------

    def _add_metrics(self, request: dict, line_offset: int) -> None:
        for resource_metrics in request.get("resourceMetrics", []):
            resource = attributes_of(resource_metrics.get("resource", {}))
            process = (resource.get("service.name", ""), resource.get("process.pid", ""))
            for scope_metrics in resource_metrics.get("scopeMetrics", []):
                for metric in scope_metrics.get("metrics", []):
                    name = metric.get("name")
                    if name not in _KEPT_METRICS:
                        continue
                    body = metric.get("gauge") or metric.get("sum") or {}
                    series = self.metrics[name]
                    for point in body.get("dataPoints", []):
                        value = point.get("asDouble", point.get("asInt"))
                        if value is None:
                            continue
                        key = process + tuple(sorted((k, str(v)) for k, v in attributes_of(point).items()))
                        points = series.get(key)
                        if points is None:
                            points = series[key] = deque(maxlen=POINTS_PER_SERIES)
                        points.append((int(point.get("timeUnixNano", 0)), float(value)))

    def latest(self, name: str) -> dict[tuple, float]:
        """The last value of each series of a metric."""
        with self._lock:
            return {key: points[-1][1] for key, points in self.metrics.get(name, {}).items() if points}

    def read_stats(self) -> list[FileState]:
        with self._lock:
            return [FileState(**vars(state)) for state in self.files.values()]


_AGGREGATED_KEYS = frozenset((names.STOCK, names.SIGNAL, names.RUN_ID, names.EVENT_NAME))
_QUOTA_EVENTS = frozenset((names.QUOTA_WARNING_EVENT, names.QUOTA_RECOVERED_EVENT))


def _record(raw: dict, scope: str) -> LogRecord:
    body = raw.get("body", {})
    return LogRecord(
        int(raw.get("timeUnixNano") or raw.get("observedTimeUnixNano") or 0),
        raw.get("severityText", ""), str(value_of(body)) if body else "", attributes_of(raw),
        raw.get("traceId", ""), scope,
    )


def _records(request: dict) -> Iterator[LogRecord]:
    for resource_logs in request.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            scope = scope_logs.get("scope", {}).get("name", "")
            for raw in scope_logs.get("logRecords", []):
                yield _record(raw, scope)


def _lines_at(handle, offsets: list[int]) -> Iterator[bytes]:
    for offset in offsets:
        handle.seek(offset)
        yield handle.readline()


def _lines_from(handle, start: int, needle: bytes) -> Iterator[bytes]:
    handle.seek(start)
    for line in handle:
        if line.endswith(b"\n") and needle in line:
            yield line
