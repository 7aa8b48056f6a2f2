"""What the pages show, assembled from the files and the journal of one
telemetry directory. No HTML here (pages.py), no HTTP (server.py)."""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rqa_otel import names
from rqa_otel.view.files import LogRecord, Span, TelemetryFiles
from rqa_otel.view.journal import Journal

JOURNAL = "trades.db"
PIPELINE_ALERTS = (
    names.LOG_EXPORT_FAILED_ALERT, names.SPOOL_CRITICAL_DATA_LOST_ALERT, names.SPOOL_WRITE_FAILED_ALERT,
    names.SPOOL_CORRUPT_BATCH_ALERT, names.EXPORT_REJECTED_ALERT, names.CONFIG_RELOAD_FAILED_ALERT,
)


class UnknownRun(LookupError):
    pass


class BadQuery(ValueError):
    """A filter value the page cannot use (the message names it)."""


def parse_time(text: str, field: str = "time") -> int | None:
    """A filter's date or date-time (UTC; YYYY-MM-DD[THH:MM[:SS]]) as ns, or None when empty."""
    import datetime as dt

    text = text.strip()
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"{field} {text!r}: expected a date YYYY-MM-DD or a date and time YYYY-MM-DDTHH:MM") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


@dataclass
class RunRow:
    run_id: str
    strategy: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    first_ns: int | None = None
    last_ns: int | None = None
    trades: int = 0
    start_value: float | None = None
    final_value: float | None = None
    max_drawdown: float | None = None
    alerts: int = 0
    finished: bool = False
    trace_id: str = ""

    @property
    def total_return(self) -> float | None:
        if self.start_value and self.final_value is not None:
            return self.final_value / self.start_value - 1
        return None


@dataclass
class LogQuery:
    strategy: str = ""
    stock: str = ""
    signal: str = ""
    level: str = ""
    text: str = ""

    def __call__(self, record: LogRecord) -> bool:
        attributes = record.attributes
        return (
            (not self.strategy or attributes.get(names.STRATEGY) == self.strategy)
            and (not self.stock or attributes.get(names.STOCK) == self.stock)
            and (not self.signal or attributes.get(names.SIGNAL) == self.signal)
            and (not self.level or record.level.upper().startswith(self.level.upper()[:4]))
            and (not self.text or self.text.lower() in record.body.lower())
        )


class TelemetryView:
    """One telemetry directory: ``refresh()`` reads what is new (called by
    the server's poller, about every 0.5 s, and before each page)."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        self.files = TelemetryFiles(self.directory)
        self.journal = Journal(os.path.join(self.directory, JOURNAL))
        self._refresh_lock = threading.Lock()

    def has_data(self) -> bool:
        return self.files.exists() or self.journal.exists()

    def refresh(self, pause=None) -> None:
        if self._refresh_lock.acquire(blocking=False):
            try:
                self.files.refresh(pause)
            finally:
                self._refresh_lock.release()

    def version(self) -> str:
        """Changes whenever more of the files has been read or journal rows
        were committed (what a page shows changes only then)."""
        return f"{self.files.version}-{'-'.join(map(str, self.journal.version()))}-{int(self.has_data())}"

    # --- runs ---------------------------------------------------------------------

    def runs(self, strategy: str = "") -> list[RunRow]:
        totals = self.journal.run_totals()
        performance = self.journal.runs_performance()
        strategies = self.journal.run_strategies()
        ids = list(dict.fromkeys(list(self.files.runs) + self.journal.run_ids()))
        rows = [self._row(run_id, totals, performance, strategies) for run_id in ids]
        rows = [row for row in rows if not strategy or row.strategy == strategy]
        return sorted(rows, key=lambda r: r.last_ns or 0, reverse=True)

    def _row(self, run_id: str, totals, performance, strategies) -> RunRow:
        row = RunRow(run_id)
        span = self.files.runs.get(run_id)
        if span is not None:
            row.finished = True
            row.strategy = str(span.attributes.get(names.STRATEGY, ""))
            prefix = names.STRATEGY_PARAMETER_PREFIX
            row.parameters = {k[len(prefix):]: v for k, v in span.attributes.items() if k.startswith(prefix)}
        row.trace_id = self.files.run_traces.get(run_id, "")
        total = totals.get(run_id)
        if total:
            row.trades, row.first_ns, row.last_ns = total.trades, total.first_ns, total.last_ns
        perf = performance.get(run_id)
        if perf:
            row.strategy = row.strategy or perf["strategy"]
            row.first_ns = min(filter(None, (row.first_ns, perf["first_ns"])))
            row.last_ns = max(filter(None, (row.last_ns, perf["last_ns"])))
            row.start_value, row.final_value = perf["start_value"], perf["final_value"]
            row.max_drawdown = perf["max_drawdown"]
        row.strategy = row.strategy or strategies.get(run_id, "")
        row.alerts = sum(1 for s in self.files.spans.get(row.trace_id, ()) if names.ALERT_NAME in s.attributes)
        return row

    def resolve(self, run_id: str) -> str:
        """The full run id of ``run_id`` or of a unique prefix of one."""
        known = list(dict.fromkeys(list(self.files.runs) + self.journal.run_ids()))
        if run_id in known:
            return run_id
        matches = [known_id for known_id in known if known_id.startswith(run_id)] if run_id else []
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UnknownRun(f"run id {run_id!r} is ambiguous: it starts {len(matches)} runs; give more of it")
        raise UnknownRun(
            f"run id {run_id!r} not found in {self.directory}; "
            f"{len(known)} run(s) known there" + (f", e.g. {known[0]}" if known else "")
        )

    def run(self, run_id: str, equity=None) -> RunRow:
        """One run's summary row, from its own journal rows only: the trade
        count, and the performance from ``equity`` (Journal.equity) when given."""
        run_id = self.resolve(run_id)
        count = self.journal.trade_count(run_id)
        if equity is not None and equity.points:
            performance = {run_id: {
                "strategy": "", "first_ns": equity.time_ns[0], "last_ns": equity.time_ns[-1],
                "start_value": equity.value[0], "final_value": equity.value[-1], "max_drawdown": equity.max_drawdown,
            }}
        else:
            performance = self.journal.run_performance(run_id)
        row = self._row(run_id, {}, performance, {})
        row.trades = count
        if not row.strategy:
            row.strategy = self.journal.run_strategies().get(run_id, "")
        return row

    def spans(self, row: RunRow) -> list[Span]:
        return list(self.files.spans.get(row.trace_id, ()))

    def run_alerts(self, row: RunRow) -> list[Span]:
        return [s for s in self.spans(row) if names.ALERT_NAME in s.attributes]

    def signals(self, row: RunRow) -> dict[str, Counter]:
        """Signals per stock, from the run's log records (indexed so far)."""
        result: dict[str, Counter] = {}
        logs = self.files.trace_logs.get(row.trace_id)
        for (stock, signal), count in (logs.signals.items() if logs else ()):
            result.setdefault(stock, Counter())[signal] += count
        return dict(sorted(result.items()))

    def logs(self, row: RunRow, query: LogQuery, page: int, page_size: int = 50) -> tuple[list[LogRecord], bool]:
        if not row.trace_id:
            return [], False
        return self.files.search_logs(row.trace_id, query, page * page_size, page_size)

    # --- resources ------------------------------------------------------------------

    def resources(self) -> dict[str, dict[str, Any]]:
        """Per strategy: the last CPU, RSS and GPU memory, their quotas and
        state, breach episodes (alert spans) and warnings (log events)."""
        strategies: dict[str, dict[str, Any]] = {}

        def entry(strategy: str) -> dict[str, Any]:
            return strategies.setdefault(strategy, {"usage": {}, "quota": {}, "state": {}, "episodes": [],
                                                    "warnings": [], "recovered": [], "history": {}})

        def attribute(key: tuple, name: str) -> str:
            return dict(key[2:]).get(name, "")

        for metric, label in ((names.STRATEGY_CPU_PERCENT, "cpu"), (names.STRATEGY_MEMORY_USAGE, "memory"),
                              (names.STRATEGY_GPU_MEMORY_USAGE, "gpu_memory")):
            for key, points in self.files.metrics.get(metric, {}).items():
                strategy = attribute(key, names.STRATEGY)
                if strategy and points:
                    entry(strategy)["usage"][label] = points[-1][1]
                    entry(strategy)["history"][label] = list(points)
        for key, value in self.files.latest(names.QUOTA_LIMIT_GAUGE).items():
            strategy = attribute(key, names.STRATEGY)
            if strategy:
                entry(strategy)["quota"][attribute(key, names.QUOTA_RESOURCE)] = value
        for key, value in self.files.latest(names.QUOTA_STATE_GAUGE).items():
            strategy = attribute(key, names.STRATEGY)
            if strategy:
                entry(strategy)["state"][attribute(key, names.QUOTA_RESOURCE)] = value
        for alert in self.files.alerts:
            if alert.attributes.get(names.ALERT_NAME) == names.QUOTA_BREACH_ALERT:
                entry(str(alert.attributes.get(names.STRATEGY, "")))["episodes"].append(alert)
        for event, slot in ((names.QUOTA_WARNING_EVENT, "warnings"), (names.QUOTA_RECOVERED_EVENT, "recovered")):
            for record in self.files.log_events.get(event, ()):
                entry(str(record.attributes.get(names.STRATEGY, "")))[slot].append(record)
        return dict(sorted(strategies.items()))

    # --- pipeline -------------------------------------------------------------------

    def pipeline(self) -> dict[str, Any]:
        totals: dict[str, list[tuple[str, float]]] = {}
        for metric in (names.LOG_RECORDS_DROPPED_COUNTER, names.LOG_RECORDS_SUPPRESSED_COUNTER, names.SPOOL_SIZE_GAUGE,
                       names.SPOOL_DROPPED_COUNTER, names.SPOOL_REPLAYED_COUNTER, names.CONFIG_RELOADS_COUNTER,
                       names.CONFIG_LAST_RELOAD_SUCCESSFUL_GAUGE):
            totals[metric] = sorted(
                (", ".join(f"{k}={v}" for k, v in key[2:]) or "-", value)
                for key, value in self.files.latest(metric).items()
            )
        reloads = [s for spans in self.files.spans.values() for s in spans if s.name == names.CONFIG_RELOAD_SPAN]
        alerts = [a for a in self.files.alerts if a.attributes.get(names.ALERT_NAME) in PIPELINE_ALERTS]
        return {"metrics": totals, "reloads": sorted(reloads, key=lambda s: s.start_ns), "alerts": alerts,
                "files": self.files.read_stats()}
