"""The delivery contract every exporter shares: payloads, transports, senders.

An exporter is split in three parts that do one thing each:

- an *encoder* turns one SDK batch (spans, ``MetricsData``, log entries)
  into a list of :class:`Payload`: wire bytes plus the value class of what
  they hold, split by value so that low-value data can be evicted first;
- a :class:`Transport` sends one payload and says what happened
  (:class:`SendResult`): delivered, retry later (5xx, 429, network errors),
  or rejected for good (any other 4xx);
- a :class:`Sender` decides what to do with a batch of payloads:
  :class:`Delivery` sends now, retrying with backoff inside a bounded time
  budget; ``rqa_otel.export.spool.Spool`` persists what cannot be sent
  and replays it later. ``rqa_otel.export.spool.Senders`` picks one of the
  two for every exporter, by ``export.spool.enabled``.

The SDK-facing exporters at the bottom (:class:`PayloadSpanExporter`,
:class:`PayloadMetricExporter`, :class:`PayloadLogRecordExporter` and the log
pipeline's :class:`PayloadLogSink`) glue an encoder to a sender, so OTLP and
InfluxDB differ only in their encoders and transports, and every signal to
every network destination takes the same path: encoder -> transport ->
sender (OTLP's are in ``rqa_otel.export.otlp``, InfluxDB's in
``rqa_otel.export.influx``).

Exports run on the SDK's and the log pipeline's worker threads, never on
the strategy's; every call here is bounded in time so that flush and
shutdown stay bounded too.
"""

from __future__ import annotations

import enum
import logging
import operator
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence, TypeVar

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from rqa_otel import names
from rqa_otel.export.log_sink import LogExportFailed, LogSink
from rqa_otel.export.notices import NOTICES, printable

_log = logging.getLogger("rqa_otel.export")
T = TypeVar("T")


class Value(enum.IntEnum):
    """How much losing a payload matters; the spool evicts the lowest first."""

    LOW = 0
    """Debug and info logs."""
    NORMAL = 1
    """Everything else: warnings and errors, ordinary spans and metrics."""
    CRITICAL = 2
    """Trade, portfolio and alert data: never evicted silently."""


@dataclass(frozen=True)
class Payload:
    """One request's worth of encoded telemetry."""

    signal: str
    """traces | metrics | logs"""
    body: bytes
    """Wire bytes, uncompressed (a transport may gzip them)."""
    value: Value
    items: int
    """Spans, metric data points or log records (or lines) in ``body``."""


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY_LATER = "retry_later"
    """5xx, 429, timeouts and network errors: the same bytes may succeed later."""
    REJECTED = "rejected"
    """Any other 4xx: sending the same bytes again cannot succeed."""


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    retry_after_s: float | None = None
    """The server's Retry-After, when it sent one."""
    detail: str = ""
    """Why it failed (status and the start of the response), without secrets;
    ``send_quietly`` makes it printable (see ``notices.printable``)."""
    reason: str = ""
    """A short, stable name of why (``http_401``), for one alert per reason."""

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.DELIVERED


DELIVERED = SendResult(Outcome.DELIVERED)


class Transport(Protocol):
    """Sends payloads to one destination. ``send`` must not raise for a
    failed delivery (it returns RETRY_LATER or REJECTED) and must return
    within about ``timeout_s``."""

    destination: str
    """Where it sends, as text without secrets (for logs, /ready, alerts)."""

    def send(self, payload: Payload, timeout_s: float) -> SendResult: ...

    def shutdown(self) -> None: ...

    # Optional: ``prepare(payload)`` does ahead of ``send`` what it can
    # (compression), on read_ahead's helper thread.


def classify_http(status: int, headers: Mapping[str, str] | None, body: bytes | str | None, destination: str) -> SendResult:
    """An HTTP answer as an outcome, for every HTTP transport: 2xx delivered;
    5xx and 429 retry later (honouring Retry-After); any other status
    rejected, with the start of the server's answer in the detail."""
    if 200 <= status < 300:
        return DELIVERED
    text = body[:4096].decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")[:4096]
    # A stranger's text: shortened and escaped before anyone prints or stores it.
    detail = f"HTTP {status} from {destination}: {printable(text.strip())}"
    if status >= 500 or status == 429:
        return SendResult(Outcome.RETRY_LATER, _retry_after(headers), detail, f"http_{status}")
    return SendResult(Outcome.REJECTED, None, detail, f"http_{status}")


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP date."""
    value = (headers.get("Retry-After") or headers.get("retry-after")) if headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import email.utils  # here: a date in Retry-After is rare, and the module costs ~3 ms of a start-up

        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# --- value classes ---------------------------------------------------------

_CRITICAL_LOGGERS = frozenset({names.TRADE_EVENT, names.PORTFOLIO_EVENT})
_CRITICAL_METRIC_PREFIXES = ("rqa.trade", "rqa.portfolio", names.ALERTS_COUNTER)
_WARNING = 30


def log_value(entry: Sequence[Any]) -> Value:
    """A log entry (``LogEntry`` fields by position): trade and portfolio
    events are critical, debug and info records low, the rest normal."""
    if entry[2] in _CRITICAL_LOGGERS:
        return Value.CRITICAL
    return Value.LOW if entry[1] < _WARNING else Value.NORMAL


_logger_of = operator.itemgetter(2)
_level_of = operator.itemgetter(1)


def split_logs_by_value(entries: Sequence[Any]) -> list[tuple[Value, list[Any]]]:
    """``split_by_value(entries, log_value)``, at a tenth of its cost in the
    usual case of a batch of one class (no trade or portfolio event, all
    levels on one side of WARNING): then the batch itself is the one group,
    found with C-speed passes over it instead of a Python call per entry."""
    if entries and _CRITICAL_LOGGERS.isdisjoint(map(_logger_of, entries)):
        levels = list(map(_level_of, entries))
        if max(levels) < _WARNING:
            return [(Value.LOW, list(entries))]
        if min(levels) >= _WARNING:
            return [(Value.NORMAL, list(entries))]
    return split_by_value(entries, log_value)


def span_value(span: Any) -> Value:
    """Alert spans are critical; other spans normal."""
    return Value.CRITICAL if span.name == names.ALERT_SPAN else Value.NORMAL


def metrics_value(data: MetricsData) -> Value:
    """A metrics batch holding trade, portfolio or alert instruments is
    critical as a whole (cumulative points are small; splitting would cost
    more than it saves)."""
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name.startswith(_CRITICAL_METRIC_PREFIXES):
                    return Value.CRITICAL
    return Value.NORMAL


def split_by_value(items: Sequence[T], value_of: Callable[[T], Value]) -> list[tuple[Value, list[T]]]:
    """``items`` grouped by value class, order kept within each group,
    highest value first (so that critical data is sent first)."""
    groups: dict[Value, list[T]] = {}
    for item in items:
        groups.setdefault(value_of(item), []).append(item)
    return sorted(groups.items(), key=lambda group: -group[0])


# --- senders -----------------------------------------------------------------


@dataclass(frozen=True)
class ExportBackoff:
    """Exponential backoff with full jitter, as the Collector's
    retry_on_failure does; a server's Retry-After wins when it is longer."""

    base_delay_s: float = 0.5
    max_delay_s: float = 5.0
    """Short: a probe to a local back-end that is down costs next to nothing,
    and a back-end that returns should get the backlog soon."""

    def delays(self) -> Iterator[float]:
        # Imported at the first retry (this generator's first step): the
        # backoff package imports asyncio, ~20 ms of a start-up that may
        # never retry.
        import backoff

        for delay in backoff.expo(base=2, factor=self.base_delay_s, max_value=self.max_delay_s):
            if delay:
                yield backoff.full_jitter(delay)


@dataclass
class SenderCounts:
    """Items per outcome of a Delivery."""

    signal: str
    destination: str
    exported: int = 0
    failed: int = 0
    """Lost: rejected, or not delivered within the budget."""

    def add(self, items: int, delivered: bool) -> None:
        with _COUNTS_LOCK:
            if delivered:
                self.exported += items
            else:
                self.failed += items


_COUNTS_LOCK = threading.Lock()


class Sender(Protocol):
    """What an exporter hands its payloads to."""

    transport: Transport

    def submit(self, payloads: Sequence[Payload]) -> bool:
        """True when every payload was delivered or durably kept for later."""
        ...

    def flush(self, timeout_s: float) -> bool: ...

    def shutdown(self, timeout_s: float) -> None: ...


class Delivery:
    """Sends now, retrying RETRY_LATER with backoff until ``budget_s`` is
    spent; no persistence. A REJECTED payload is reported (warning with the
    server's detail) and never retried; ``submit`` returns False for any
    payload not delivered, so the exporter's accounting counts it, and
    ``last_failure`` says why."""

    def __init__(self, signal: str, transport: Transport, budget_s: float, policy: ExportBackoff = ExportBackoff()) -> None:
        self.transport = transport
        self.budget_s = budget_s
        self.policy = policy
        self.counts = SenderCounts(signal, transport.destination)
        self.last_failure = ""
        """The detail of the last payload not delivered (without secrets)."""
        self._stopping = threading.Event()

    def send_with_retries(self, payload: Payload, budget_s: float) -> SendResult:
        """The last result: DELIVERED, REJECTED, or RETRY_LATER when the
        budget ran out (or shutdown began)."""
        deadline = time.monotonic() + budget_s
        delays = self.policy.delays()
        while True:
            remaining = deadline - time.monotonic()
            result = send_quietly(self.transport, payload, max(0.001, remaining))
            if result.outcome is not Outcome.RETRY_LATER:
                return result
            delay = max(next(delays), result.retry_after_s or 0.0)
            if time.monotonic() + delay >= deadline or self._stopping.wait(delay):
                return result

    def submit(self, payloads: Sequence[Payload]) -> bool:
        deadline = time.monotonic() + self.budget_s
        ok = True
        for payload in payloads:
            result = self.send_with_retries(payload, max(0.0, deadline - time.monotonic()))
            if result.outcome is Outcome.REJECTED:  # permanent: reported, never dropped silently
                # Rate-limited on stderr (logs at full rate would repeat it a
                # hundred times a second); the counts have every one.
                NOTICES.warn(
                    ("rejected", self.transport.destination, payload.signal),
                    f"{self.transport.destination} rejected {payload.items} {payload.signal} "
                    f"({payload.value.name.lower()} value): {result.detail}",
                )
            if not result.delivered:
                self.last_failure = result.detail or "not delivered in time"
            self.counts.add(payload.items, result.delivered)
            ok = ok and result.delivered
        return ok

    def flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> None:
        self._stopping.set()
        _quietly(self.transport.shutdown)

    def after_fork(self) -> None:
        after_fork = getattr(self.transport, "after_fork", None)
        if after_fork is not None:
            after_fork()


DETAIL_LIMIT = 400
"""Characters of a failure's detail: the destination plus the start of the answer."""


def send_quietly(transport: Transport, payload: Payload, timeout_s: float) -> SendResult:
    """A transport that raises is treated as a network error: retry later.
    Every sender sends through here, so this is where a failure's detail is
    made safe to print and store, whichever transport wrote it."""
    try:
        result = transport.send(payload, timeout_s)
    except Exception as exc:
        result = SendResult(Outcome.RETRY_LATER, detail=f"{type(exc).__name__}: {exc}", reason=type(exc).__name__)
    if result.detail:
        safe = printable(result.detail, DETAIL_LIMIT)
        if safe != result.detail:
            result = replace(result, detail=safe)
    return result


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception:
        _log.debug("closing a transport raised", exc_info=True)


# --- encoding while sending ------------------------------------------------------


_DONE = object()


def read_ahead(payloads: Iterable[Payload], prepare: Callable[[Payload], Any] | None = None) -> Iterator[Payload]:
    """``payloads`` (a lazy encoder's), encoded one ahead on a helper thread
    while the caller sends the one before: the server parses request N
    while request N+1 is written, and the socket wait releases the GIL.
    Senders see the same payloads in the same order, one at a time, so
    retries and the spool's ordering are unchanged; at most three payloads
    live at once (being sent, ready, and one encoded waiting for room). An
    encoder's exception is raised where its payload would have come. A
    list passes through. ``prepare`` (a transport's, e.g. gzip) runs on
    the helper thread too, after each payload but the first; a failure
    there is left for the send to meet."""
    if isinstance(payloads, (list, tuple)):
        yield from payloads
        return
    source = iter(payloads)
    first = next(source, _DONE)  # the first payload has nothing to overlap with
    if first is _DONE:
        return
    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for payload in source:
                if prepare is not None:
                    try:
                        prepare(payload)
                    except Exception:
                        _log.debug("preparing a payload raised; it is sent unprepared", exc_info=True)
                while not stop.is_set():
                    try:
                        ready.put(payload, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item: Any = _DONE
        except BaseException as exc:  # raised in the caller's thread
            item = exc
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    helper = threading.Thread(target=produce, name="rqa-otel-encode-ahead", daemon=True)
    helper.start()
    try:
        yield first
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # the caller stopped early or finished: the encoder is idle before the next export uses it
        stop.set()
        helper.join()


# --- SDK-facing exporters ------------------------------------------------------


class _PayloadExporter:
    """What the SDK-facing exporters share: an encoder and a sender."""

    def __init__(self, encode: Callable[..., list[Payload]], sender: Sender) -> None:
        self.encode = encode
        self.sender = sender

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        return self.sender.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        self.sender.shutdown(5.0)


class PayloadSpanExporter(_PayloadExporter, SpanExporter):
    """An SDK SpanExporter: ``encode(spans) -> [Payload]``, then the sender."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        ok = self.sender.submit(self.encode(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE


class PayloadMetricExporter(MetricExporter):
    """An SDK MetricExporter: ``encode(metrics_data) -> [Payload]``, then the
    sender. Cumulative temporality, explicit-bucket histograms: what both
    OTLP back-ends and the otel2influx conversion expect."""

    def __init__(self, encode: Callable[[MetricsData], list[Payload]], sender: Sender, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encode = encode
        self.sender = sender

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        prepare = getattr(self.sender.transport, "prepare", None)
        ok = self.sender.submit(read_ahead(self.encode(metrics_data), prepare))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.sender.flush(timeout_millis / 1000)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.sender.shutdown(timeout_millis / 1000)


class PayloadLogRecordExporter(_PayloadExporter):
    """An SDK LogRecordExporter (for code that uses the SDK's own log
    processors): ``encode(log_data_batch) -> [Payload]``, then the sender."""

    def export(self, batch: Sequence[Any]):
        from opentelemetry.sdk._logs.export import LogExportResult

        ok = self.sender.submit(self.encode(batch))
        return LogExportResult.SUCCESS if ok else LogExportResult.FAILURE


class PayloadLogSink(LogSink):
    """For the project's log pipeline: ``encode(entries, observed_ns) ->
    [Payload]``, then the sender."""

    def __init__(self, encode: Callable[[Sequence[Any], int], list[Payload]], sender: Sender) -> None:
        self.encode = encode
        self.sender = sender
        self.description = sender.transport.destination

    def export(self, batch: Sequence[Any], observed_ns: int) -> bool:
        """True when delivered (or kept by the spool). When not, the
        sender's ``last_failure``, if it keeps one (a Delivery), is raised
        as :class:`LogExportFailed` for the worker's alert; a Spool has
        already counted and alerted its losses itself."""
        if self.sender.submit(self.encode(batch, observed_ns)):
            return True
        failure = getattr(self.sender, "last_failure", "")
        if failure:
            raise LogExportFailed(failure)
        return False

    def after_fork(self) -> None:
        after_fork = getattr(self.sender, "after_fork", None)
        if after_fork is not None:
            after_fork()

    def shutdown(self) -> None:
        self.sender.shutdown(1.0)
