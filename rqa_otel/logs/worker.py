"""The export worker: drains the buffer in batches, scrubs, sends to the sinks.

One daemon thread per process. It wakes when a batch is full or every
``flush_interval_s``, and on flush(). A failed send is counted (reason
``export_failed`` or ``write_failed``, by level) and never retried here: the
durable spool is the export issue's, and a retry loop would only make
callers wait. Sampling summaries are emitted from here, so they pass neither
through sampling nor through the calling thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rqa_otel import names
from rqa_otel._util.fork import in_forked_child
from rqa_otel.export.accounting import ExportCounts
from rqa_otel.export.log_entry import SHAPED_VALUES, LogEntry, shape_of, with_attribute_dict
from rqa_otel.export.log_sink import LogSink
from rqa_otel.export.notices import NOTICES
from rqa_otel.logs.buffer import EXPORT_FAILED, WRITE_FAILED, Drops, LogBuffer
from rqa_otel.logs.sampling import Sampler
from rqa_otel.scrub import Scrubber

_log = logging.getLogger("rqa_otel.logs")

SUPPRESSED_LOGGER = "rqa_otel.sampling"


@dataclass
class _SinkState:
    sink: LogSink
    counts: ExportCounts
    primary: bool
    failing: bool = False


class LogExportWorker:
    """The log pipeline's worker thread and its sinks (see the module doc):
    ``flush()``, ``shutdown()``, ``readiness()``, ``replace_primary()``."""

    def __init__(
        self,
        buffer: LogBuffer,
        sampler: Sampler,
        drops: Drops,
        scrubber: Scrubber,
        primary: LogSink,
        mirrors: Sequence[LogSink] = (),
        batch_size: int = 2048,
        flush_interval_s: float = 1.0,
        summary_interval_s: float = 10.0,
        default_strategy: str = names.DEFAULT_STRATEGY,
        on_sink_failure: Callable[[str, BaseException | None], None] | None = None,
        attribute_limits: tuple[int | None, int | None] = (None, None),
    ) -> None:
        self.buffer = buffer
        self.sampler = sampler
        self.drops = drops
        self._scrubber = scrubber
        self._sinks = [_SinkState(primary, ExportCounts("logs", primary.description), True)] + [
            _SinkState(sink, ExportCounts("logs", sink.description), False) for sink in mirrors
        ]
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._summary_interval_s = summary_interval_s
        self._default_strategy = default_strategy
        self._on_sink_failure = on_sink_failure
        self._attribute_limits = attribute_limits if attribute_limits != (None, None) else None
        """(value length, count) of OTEL_LOGRECORD_ATTRIBUTE_*_LIMIT (or
        OTEL_ATTRIBUTE_*); None, the default, costs the batch nothing."""
        self._stopping = False
        self._stop_ticket: int | None = None
        self._shape_plans: dict[tuple[str, int], int] = {}
        self._next_primary: LogSink | None = None
        self._start_worker()
        # A strategy that forks its workers (multiprocessing's default on
        # Linux) must not lose their logs: threads do not survive fork().
        in_forked_child(self, LogExportWorker._restart_in_child)

    def _start_worker(self) -> None:
        self._flush_requested = 0
        self._flush_done = 0
        self._flush_cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="rqa-otel log export", daemon=True)
        self._thread.start()

    def _restart_in_child(self) -> None:
        if self._stopping:
            return
        self.buffer.reset_after_fork()
        for state in self._sinks:
            state.sink.after_fork()
        self._start_worker()

    # --- public ---------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def readiness(self) -> tuple[bool, str]:
        failing = [state.sink.description for state in self._sinks if state.failing]
        if not self.alive:
            return False, "the log export worker is not running"
        if failing:
            return False, f"log export failing to {', '.join(failing)}; lost records are counted"
        return True, f"{len(self.buffer)} records buffered of {self.buffer.capacity}"

    def export_counts(self) -> list[ExportCounts]:
        return [state.counts for state in self._sinks]

    def flush(self, timeout_s: float) -> bool:
        """Send everything buffered so far; True if done within ``timeout_s``."""
        return self._wait_flushed(self._request_flush(), timeout_s)

    def _request_flush(self) -> int:
        with self._flush_cond:
            self._flush_requested += 1
            ticket = self._flush_requested
        self.buffer.wake()
        return ticket

    def _wait_flushed(self, ticket: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._flush_cond:
            while self._flush_done < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._flush_cond.wait(min(remaining, 0.05))
                self.buffer.wake()
        return True

    def replace_primary(self, sink: LogSink) -> None:
        """Export to ``sink`` instead of the primary destination from the
        next batch on (a settings reload changed the OTLP endpoint). The
        worker swaps it between batches and closes the old one."""
        self._next_primary = sink
        self.buffer.wake()

    def _swap_primary(self) -> None:
        sink, self._next_primary = self._next_primary, None
        state = self._sinks[0]
        old, state.sink, state.failing = state.sink, sink, False
        state.counts.destination = sink.description
        try:
            old.shutdown()
        except Exception:
            _log.debug("closing %s failed", old.description, exc_info=True)

    def begin_shutdown(self) -> None:
        """Start the last flush and the stop without waiting for them, so
        that the caller can stop other things meanwhile; ``shutdown()`` waits."""
        if self._stop_ticket is None:
            self._stopping = True
            self._stop_ticket = self._request_flush()

    def shutdown(self, timeout_s: float) -> bool:
        # One pass of the worker both flushes and ends it (a flush, then a
        # second wake-up to stop, made every shutdown wait for two).
        self.begin_shutdown()
        flushed = self._wait_flushed(self._stop_ticket, timeout_s)
        self._thread.join(max(0.0, min(timeout_s, 1.0)))
        for state in self._sinks:
            try:
                state.sink.shutdown()
            except Exception:
                _log.debug("closing %s failed", state.sink.description, exc_info=True)
        return flushed

    # --- worker ---------------------------------------------------------------

    def _run(self) -> None:
        next_summary = time.monotonic() + self._summary_interval_s
        while True:
            pending = self._flush_requested > self._flush_done
            wait_s = 0.0 if pending or self._stopping else self._flush_interval_s
            batch = self.buffer.take(self._batch_size, wait_s, wake_at=self._batch_size)
            # Read after take(): every record logged before this flush request
            # is now in `batch` or still in the buffer.
            with self._flush_cond:
                ticket = self._flush_requested
            if self._next_primary is not None:
                self._swap_primary()
            if batch:
                self._export(batch)
            now = time.monotonic()
            if ticket > self._flush_done and not len(self.buffer):
                self._export(self._summaries())  # a flush also reports what was suppressed
                with self._flush_cond:
                    self._flush_done = ticket
                    self._flush_cond.notify_all()
            elif now >= next_summary:
                self._export(self._summaries())
                next_summary = now + self._summary_interval_s
            if self._stopping and not len(self.buffer):
                with self._flush_cond:
                    if self._flush_requested > self._flush_done:
                        continue  # a flush asked for meanwhile: one more pass completes it
                return

    def _summaries(self) -> list[LogEntry]:
        now_ns = time.time_ns()
        return [
            LogEntry(
                now_ns,
                logging.INFO,
                SUPPRESSED_LOGGER,
                f"{count} similar records suppressed (logger {logger_name}, level {logging.getLevelName(levelno)})",
                {
                    names.STRATEGY: self._default_strategy,
                    names.STOCK: names.DEFAULT_STOCK,
                    names.SIGNAL: names.DEFAULT_SIGNAL,
                    names.LOG_SUPPRESSED_COUNT: count,
                    names.LOG_LOGGER: logger_name,
                    names.LOG_LEVEL: logging.getLevelName(levelno),
                },
            )
            for logger_name, levelno, count in self.sampler.take_unreported()
        ]

    def _export(self, batch: list[LogEntry]) -> None:
        if not batch:
            return
        try:
            self._scrub(batch)
        except Exception:
            _log.warning("scrubbing failed; the batch is dropped rather than sent unscrubbed", exc_info=True)
            self.drops.add_entries(EXPORT_FAILED, batch)
            return
        if self._attribute_limits is not None:
            limit_attributes(batch, *self._attribute_limits)
        observed_ns = time.time_ns()
        for state in self._sinks:
            error: BaseException | None = None
            try:
                ok = state.sink.export(batch, observed_ns)
            except Exception as exc:
                ok, error = False, exc
            if ok:
                state.counts.exported += len(batch)
                if state.failing:
                    state.failing = False
                    NOTICES.warn(("recovered", state.sink.description, "logs"), f"exporting logs to {state.sink.description} works again")
                continue
            state.counts.failed += len(batch)
            self.drops.add_entries(EXPORT_FAILED if state.primary else WRITE_FAILED, batch)
            if not state.failing:
                state.failing = True
                NOTICES.warn(
                    ("export_failed", state.sink.description, "logs"),
                    f"exporting logs to {state.sink.description} failed ({error or 'write failed'}); "
                    "logging continues, lost records are counted",
                )
                if self._on_sink_failure is not None:
                    self._on_sink_failure(state.sink.description, error)
        self.buffer.mark_progress()

    def _scrub(self, batch: list[LogEntry]) -> None:
        """Scrub in place; the calls return their argument itself when clean."""
        scrub_text = self._scrubber.scrub_text
        scrub_attributes = self._scrubber.scrub_attributes
        scrub_texts = self._scrubber.scrub_texts
        clean = self._scrubber.clean_text_tuples()
        plans = self._shape_plans
        # Usually no message of a batch can hold a secret: one search for all.
        messages_clean = self._scrubber.all_clean([entry[3] for entry in batch])
        for index, entry in enumerate(batch):
            message = entry[3] if messages_clean else scrub_text(entry[3])
            attributes = entry[4]
            if attributes is None:
                # A registered event shape: only its strings can hold a
                # secret, unless a key itself is secret (then as a dict).
                plan_key = (entry[2], len(entry))
                strings_end = plans.get(plan_key)
                if strings_end is None:
                    strings_end = plans[plan_key] = self._shape_plan(entry[2], len(entry) - SHAPED_VALUES)
                if strings_end:
                    texts = entry[SHAPED_VALUES:strings_end]
                    if texts not in clean:
                        scrubbed = scrub_texts(texts)
                        if scrubbed is not texts:
                            entry = (*entry[:SHAPED_VALUES], *scrubbed, *entry[strings_end:])
                else:
                    entry = with_attribute_dict(entry)
                    attributes = scrub_attributes(entry[4])
                    entry = (*entry[:4], attributes, *entry[5:])
            else:
                attributes = scrub_attributes(attributes)
                if attributes is not entry[4]:
                    entry = (*entry[:4], attributes, *entry[5:])
            if message is not entry[3]:
                entry = (*entry[:3], message, *entry[4:])
            if entry is not batch[index]:
                batch[index] = entry

    def _shape_plan(self, name: str, size: int) -> int:
        """Where a shape's string values end in its entries (of ``size``
        values); 0 when one of its keys is secret (every value then
        redacted, as in a dict)."""
        shape = shape_of(name, size)
        if any(self._scrubber.is_secret_key(key) for key in shape.keys):
            return 0
        return SHAPED_VALUES + len(shape.strings)


def limit_attributes(batch: list, max_length: int | None, max_count: int | None) -> None:
    """Apply the log record attribute limits in place, as the specification
    has them: past ``max_count`` attributes the rest are dropped; strings
    (and the strings in a list) longer than ``max_length`` are cut."""

    def cut(value: Any) -> Any:
        if isinstance(value, str):
            return value[:max_length]
        if isinstance(value, (list, tuple)):
            return [item[:max_length] if isinstance(item, str) else item for item in value]
        return value

    for index, entry in enumerate(batch):
        entry = with_attribute_dict(entry)
        attributes = entry[4]
        if max_count is not None and len(attributes) > max_count:
            attributes = dict(list(attributes.items())[:max_count])
        if max_length is not None:
            attributes = {key: cut(value) for key, value in attributes.items()}
        batch[index] = (*entry[:4], attributes, *entry[5:])


