"""The durable spool: what cannot be delivered now is kept on disk and replayed.

Wraps any transport (OTLP, InfluxDB). One spool per (signal, destination),
in ``<export.spool.directory>/<signal>-<hash of destination>/``. docs/spool.md
states the guarantees; in short:

- a payload that cannot be delivered at once (RETRY_LATER), and every
  payload after it while older ones wait, is written as one file: temp
  file, fsync, rename, fsync of the directory. A record is a header (magic,
  value class, item count, body length, CRC-32) and the body, so a torn or
  corrupt file is recognised, moved to ``quarantine/`` and reported, never
  replayed and never crashed on;
- a replayer thread sends the files oldest first, with backoff and full
  jitter, honouring Retry-After, and deletes each one only after the
  back-end accepted it (at-least-once); it starts with the process, so a
  spool left by a killed process is replayed at the next start;
- the directory is bounded by ``export.spool.max_bytes``: to make room the
  oldest low-value files go first, then the oldest normal ones, each
  eviction counted; critical data (trades, portfolio, alerts) is never
  evicted: a critical payload that finds no room is dropped with a critical
  alert, and /ready reports it until there is room again;
- a failed write (disk full) loses only the payload being written, counted
  and alerted; files already written are untouched.

The calling thread is an SDK or log-pipeline worker, never the strategy's:
a submit costs at most one send attempt (none while a backlog waits),
bounded by ``export.spool.send_budget_s`` rather than the full timeout so
that a receiver that hangs costs a file write, not the log buffer, plus one
file write. A rejected batch raises one ``export_rejected`` alert per
signal, destination and reason until a delivery succeeds, and none for a
batch of alert spans (its alert would be refused in turn, forever).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from rqa_otel import names
from rqa_otel._util.fork import in_forked_child
from rqa_otel.export.delivery import (
    Delivery,
    ExportBackoff,
    Outcome,
    Payload,
    Sender,
    SendResult,
    Transport,
    Value,
    send_quietly,
)
from rqa_otel.export.notices import NOTICES, without_url_credentials

_log = logging.getLogger("rqa_otel.export")

MAGIC = b"RQS1"
_HEADER = struct.Struct(">4sBBIII")  # magic, value, signal length, items, body length, crc32
_NAME = re.compile(r"^(\d{20})-(\d+)-(\d{6})\.([0-2])\.(\d+)\.batch$")
"""``<time ns>-<pid>-<sequence>.<value>.<items>.batch``: sorted by name is oldest first."""
QUARANTINE = "quarantine"
_IDLE_RESCAN_S = 5.0
"""How often an idle replayer looks for files written by other processes
(forked workers sharing the directory)."""

AlertSink = Callable[[str, str, str], None]
"""``alert(name, severity, message)``"""


class CorruptRecord(ValueError):
    pass


def encode_record(payload: Payload) -> bytes:
    signal = payload.signal.encode()
    header = _HEADER.pack(
        MAGIC, int(payload.value), len(signal), payload.items, len(payload.body), zlib.crc32(payload.body)
    )
    return header + signal + payload.body


def decode_record(data: bytes) -> Payload:
    """The payload in ``data``; CorruptRecord for anything torn or altered."""
    if len(data) < _HEADER.size:
        raise CorruptRecord(f"{len(data)} bytes, shorter than a header")
    magic, value, signal_length, items, body_length, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptRecord("bad magic")
    start = _HEADER.size + signal_length
    if len(data) != start + body_length:
        raise CorruptRecord(f"{len(data)} bytes where the header says {start + body_length}")
    body = data[start:]
    if zlib.crc32(body) != crc or value > Value.CRITICAL:
        raise CorruptRecord("checksum mismatch")
    return Payload(data[_HEADER.size : start].decode(), body, Value(value), items)


@dataclass
class _Entry:
    name: str
    value: Value
    size: int
    items: int


@dataclass(frozen=True)
class SpoolStats:
    signal: str
    destination: str
    directory: str
    batches: int
    bytes: int


class Spool:
    """A Sender that never loses a payload it could keep (see module doc)."""

    def __init__(
        self,
        signal: str,
        transport: Transport,
        directory: str,
        max_bytes: int,
        events: "SpoolEvents",
        send_timeout_s: float,
        policy: ExportBackoff = ExportBackoff(),
        send_budget_s: float | None = None,
    ) -> None:
        self.signal = signal
        self.transport = transport
        self.directory = directory
        self.max_bytes = max_bytes
        self._events = events
        self._send_timeout_s = send_timeout_s
        self._send_budget_s = min(send_timeout_s, send_budget_s or send_timeout_s)
        self._policy = policy
        self._rejection_alerted: set[str] = set()
        """Reasons already alerted in this rejection episode (ends at the next delivery)."""
        self._lock = threading.Lock()  # the index
        self._submit_lock = threading.Lock()  # one submit at a time keeps order
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._entries: dict[str, _Entry] = {}
        self._bytes = 0
        self._sequence = 0
        self._critical_refused = 0
        self._refusing_critical = False
        self._rescan()  # the directory is created with the first file: no outage, no directory
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._start_replayer()
        in_forked_child(self, Spool.after_fork)  # threads do not survive fork()

    # --- Sender -----------------------------------------------------------------

    def submit(self, payloads: Sequence[Payload]) -> bool:
        """True when every payload was delivered or kept; False when one was
        lost (rejected, no room, disk full: each already counted and
        alerted), so that the caller's own accounting sees the loss too."""
        kept = True
        with self._submit_lock:
            for payload in payloads:
                if self._has_backlog():
                    kept &= self._persist(payload)  # behind older payloads: order is kept
                    continue
                # A short budget, not the full timeout: a receiver that hangs
                # must not hold the exporting thread (and fill the log
                # buffer) when the disk can keep the payload; the replayer
                # retries it with the full timeout on its own thread.
                result = send_quietly(self.transport, payload, self._send_budget_s)
                if result.outcome is Outcome.RETRY_LATER:
                    kept &= self._persist(payload)
                else:
                    self._finished(payload, result)
                    kept &= result.delivered
        return kept

    def flush(self, timeout_s: float) -> bool:
        return True  # nothing is held in memory

    def shutdown(self, timeout_s: float) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, min(timeout_s, 1.0)))
        try:
            self.transport.shutdown()
        except Exception:
            _log.debug("closing %s raised", self.transport.destination, exc_info=True)

    def after_fork(self) -> None:
        """A forked child keeps writing here (file names carry the pid); it
        gets a replayer of its own. Parent and child may then both send the
        same file once: at-least-once, and harmless for InfluxDB."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread = None
        after_fork = getattr(self.transport, "after_fork", None)
        if after_fork is not None:
            after_fork()
        self._start_replayer()

    # --- state for telemetry ----------------------------------------------------

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(self.signal, self.transport.destination, self.directory, len(self._entries), self._bytes)

    def readiness(self) -> tuple[bool, str]:
        stats = self.stats()
        if self._refusing_critical:
            return False, (
                f"spool for {self.signal} to {stats.destination} is full of critical data: "
                f"{self._critical_refused} critical items lost so far"
            )
        if stats.batches:
            return True, f"{stats.batches} batches ({stats.bytes} bytes) spooled for {stats.destination}, replaying"
        return True, f"nothing spooled for {stats.destination}"

    # --- persisting ---------------------------------------------------------------

    def _has_backlog(self) -> bool:
        with self._lock:
            return bool(self._entries)

    def _persist(self, payload: Payload) -> bool:
        record = encode_record(payload)
        with self._lock:
            room = self._make_room(len(record), payload)
            name = self._next_name(payload)
        if not room:
            self._refuse(payload)  # outside the lock: it may raise an alert
            return False
        try:
            if not os.path.isdir(self.directory):
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                self._write_destination_note()
            _write_durably(self.directory, name, record)
        except OSError as exc:
            self._events.dropped(payload, "write_failed")
            self._events.alert(
                names.SPOOL_WRITE_FAILED_ALERT, "critical",
                f"could not spool {payload.items} {payload.signal} items ({payload.value.name.lower()}) "
                f"in {self.directory}: {_describe(exc)}; already spooled batches are intact",
            )
            return False
        with self._lock:
            self._entries[name] = _Entry(name, payload.value, len(record), payload.items)
            self._bytes += len(record)
            self._wake.notify_all()
        return True

    def _make_room(self, size: int, payload: Payload) -> bool:
        """Evict (lowest value, oldest first) until ``size`` fits; called with
        the lock held. Never evicts critical data nor data worth more than
        the newcomer; False when the newcomer has to go instead."""
        victims: list[_Entry] = []
        needed = self._bytes + size - self.max_bytes
        if needed > 0:
            candidates = sorted(
                (e for e in self._entries.values() if e.value < Value.CRITICAL and e.value <= payload.value),
                key=lambda e: (e.value, e.name),
            )
            for entry in candidates:
                if needed <= 0:
                    break
                victims.append(entry)
                needed -= entry.size
        if needed > 0:
            return False
        for entry in victims:
            self._evict(entry)
        if payload.value is Value.CRITICAL:
            self._refusing_critical = False
        return True

    def _evict(self, entry: _Entry) -> None:
        evicted = Payload(self.signal, b"", entry.value, entry.items)
        _remove(os.path.join(self.directory, entry.name))
        self._forget(entry.name)
        self._events.dropped(evicted, "evicted")

    def _refuse(self, payload: Payload) -> None:
        self._events.dropped(payload, "spool_full")
        if payload.value is Value.CRITICAL:
            with self._lock:
                self._critical_refused += payload.items
                first, self._refusing_critical = not self._refusing_critical, True
            if first:
                self._events.alert(
                    names.SPOOL_CRITICAL_DATA_LOST_ALERT, "critical",
                    f"spool {self.directory} ({self.max_bytes} bytes) is full of critical data and "
                    f"{self.transport.destination} is unreachable: {payload.items} {payload.signal} items lost",
                )

    def _next_name(self, payload: Payload) -> str:
        self._sequence = (self._sequence + 1) % 1_000_000
        return f"{time.time_ns():020d}-{os.getpid()}-{self._sequence:06d}.{int(payload.value)}.{payload.items}.batch"

    def _forget(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._bytes -= entry.size

    # --- replaying ------------------------------------------------------------------

    def _start_replayer(self) -> None:
        self._thread = threading.Thread(
            target=self._replay_forever, name=f"rqa-otel spool replay {self.signal}", daemon=True
        )
        self._thread.start()

    def _replay_forever(self) -> None:
        delays: Iterator[float] | None = None
        while True:
            entry = self._oldest()
            if entry is None:
                return
            result = self._replay(entry)
            if result is None or result.outcome is not Outcome.RETRY_LATER:
                delays = None
                continue
            delays = delays or self._policy.delays()
            deadline = time.monotonic() + max(next(delays), result.retry_after_s or 0.0)
            with self._lock:  # new files notify too: wait out the backoff regardless
                while not self._stopping and (remaining := deadline - time.monotonic()) > 0:
                    self._wake.wait(remaining)
                if self._stopping:
                    return

    def _oldest(self) -> _Entry | None:
        """The oldest file, waiting for one; None when stopping."""
        with self._lock:
            while not self._stopping:
                if self._entries:
                    return self._entries[min(self._entries)]
                self._wake.wait(_IDLE_RESCAN_S)
                if not self._entries and not self._stopping:
                    self._rescan_locked()
            return None

    def _replay(self, entry: _Entry) -> SendResult | None:
        path = os.path.join(self.directory, entry.name)
        try:
            payload = decode_record(_read(path))
        except FileNotFoundError:  # replayed or evicted by another process
            with self._lock:
                self._forget(entry.name)
            return None
        except (OSError, CorruptRecord) as exc:
            self._quarantine(entry, exc)
            return None
        result = send_quietly(self.transport, payload, self._send_timeout_s)
        if result.outcome is Outcome.RETRY_LATER:
            return result
        _remove(path)
        with self._lock:
            self._forget(entry.name)
        self._finished(payload, result)
        if result.delivered:
            self._events.replayed(payload)
            self._refusing_critical = False  # there is room again
        return result

    def _finished(self, payload: Payload, result: SendResult) -> None:
        if result.delivered:
            self._rejection_alerted.clear()  # the episode is over
            return
        if result.outcome is not Outcome.REJECTED:
            return
        self._events.dropped(payload, "rejected")
        message = (
            f"{self.transport.destination} rejected {payload.items} {payload.signal} items "
            f"({payload.value.name.lower()} value) for good: {result.detail}"
        )
        reason = result.reason or "rejected"
        # One alert per (destination, signal, reason) and episode; none for
        # a payload of alerts: its alert would go to the same receiver, be
        # refused, and raise the next one, forever.
        notice = ("rejected", self.transport.destination, payload.signal)  # one stderr rate for both
        if is_alert_payload(payload) or reason in self._rejection_alerted:
            NOTICES.warn(notice, message)
            return
        self._rejection_alerted.add(reason)
        self._events.alert(
            names.EXPORT_REJECTED_ALERT, "critical" if payload.value is Value.CRITICAL else "warning", message,
            notice=notice,
        )

    def _quarantine(self, entry: _Entry, error: BaseException) -> None:
        target = os.path.join(self.directory, QUARANTINE)
        try:
            os.makedirs(target, exist_ok=True)
            os.replace(os.path.join(self.directory, entry.name), os.path.join(target, entry.name))
        except OSError:
            _remove(os.path.join(self.directory, entry.name))
        with self._lock:
            self._forget(entry.name)
        self._events.dropped(Payload(self.signal, b"", entry.value, entry.items), "corrupt")
        self._events.alert(
            names.SPOOL_CORRUPT_BATCH_ALERT, "warning",
            f"spooled batch {entry.name} is unreadable ({error}); moved to {target}, not replayed",
        )

    # --- the directory ---------------------------------------------------------------

    def _rescan(self) -> None:
        with self._lock:
            self._rescan_locked()

    def _rescan_locked(self) -> None:
        """Rebuild the index from the directory: files left by a previous
        process (replayed from here), temp files of writers that died
        (quarantined: they were never complete)."""
        entries: dict[str, _Entry] = {}
        total = 0
        try:
            listing = list(os.scandir(self.directory))
        except OSError:
            return
        for item in listing:
            match = _NAME.match(item.name)
            if match:
                try:
                    size = item.stat().st_size
                except OSError:
                    continue
                entries[item.name] = _Entry(item.name, Value(int(match.group(4))), size, int(match.group(5)))
                total += size
            elif item.name.endswith(".tmp") and not _pid_alive(item.name):
                self._quarantine_temp(item.name)
        self._entries, self._bytes = entries, total

    def _quarantine_temp(self, name: str) -> None:
        target = os.path.join(self.directory, QUARANTINE)
        try:
            os.makedirs(target, exist_ok=True)
            os.replace(os.path.join(self.directory, name), os.path.join(target, name))
        except OSError:
            return
        self._events.alert(
            names.SPOOL_CORRUPT_BATCH_ALERT, "warning",
            f"incomplete spool file {name} (its writer died mid-write) moved to {target}, not replayed",
        )

    def _write_destination_note(self) -> None:
        try:
            with open(os.path.join(self.directory, "DESTINATION"), "w", encoding="utf-8") as note:
                note.write(f"{self.signal} to {without_url_credentials(self.transport.destination)}\n")
        except OSError:
            pass


def is_alert_payload(payload: Payload) -> bool:
    """Spans split by value hold only alert spans in their critical payload
    (``delivery.span_value``): the pipeline's own alerts."""
    return payload.signal == "traces" and payload.value is Value.CRITICAL


def _write_durably(directory: str, name: str, record: bytes) -> None:
    """Temp file, fsync, rename, fsync the directory: after a crash either
    the whole record is there under its final name or nothing is."""
    temp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        # Owner-only: the spool holds trades and positions.
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
            file.write(record)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temp, os.path.join(directory, name))
    except OSError:
        _remove(temp)
        raise
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # the rename is done; a directory fsync is best effort on some file systems


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _pid_alive(temp_name: str) -> bool:
    try:
        pid = int(temp_name.rsplit(".", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _describe(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    return str(exc)


def spool_directory(base: str, signal: str, destination: str) -> str:
    digest = hashlib.sha1(destination.encode()).hexdigest()[:12]
    return os.path.join(base, f"{signal}-{digest}")


class SpoolEvents:
    """Counts and alerts of every spool in a process: ``Telemetry`` observes
    the counts (``rqa.export.spool.*``) and routes the alerts; alerts raised
    before it is ready (a quarantine at start) wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dropped: dict[tuple[str, str, str], int] = {}
        self._replayed: dict[str, int] = {}
        self._alert: AlertSink | None = None
        self._pending: list[tuple[str, str, str]] = []

    def dropped(self, payload: Payload, reason: str) -> None:
        key = (payload.signal, payload.value.name.lower(), reason)
        with self._lock:
            self._dropped[key] = self._dropped.get(key, 0) + payload.items
        if reason == "rejected":
            return  # the rejection itself is reported, with the server's answer
        # Rate-limited on stderr; rqa.export.spool.dropped has every count.
        NOTICES.warn(
            ("spool_dropped", key),
            f"spool: {payload.items} {payload.signal} items ({payload.value.name.lower()} value) dropped: {reason}",
        )

    def replayed(self, payload: Payload) -> None:
        with self._lock:
            self._replayed[payload.signal] = self._replayed.get(payload.signal, 0) + payload.items

    def dropped_totals(self) -> dict[tuple[str, str, str], int]:
        """Items by (signal, value, reason)."""
        with self._lock:
            return dict(self._dropped)

    def replayed_totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._replayed)

    def alert(self, name: str, severity: str, message: str, notice: object = None) -> None:
        """Raise the alert, and print it on stderr rate-limited by ``notice``
        (a key of ``notices.Notices``; default: the alert's name)."""
        NOTICES.warn(notice or ("spool_alert", name), message)
        with self._lock:
            sink = self._alert
            if sink is None:
                self._pending.append((name, severity, message))
                return
        _alert_quietly(sink, name, severity, message)

    def route_alerts(self, sink: AlertSink) -> None:
        with self._lock:
            self._alert, pending, self._pending = sink, self._pending, []
        for name, severity, message in pending:
            _alert_quietly(sink, name, severity, message)


def _alert_quietly(sink: AlertSink, name: str, severity: str, message: str) -> None:
    try:
        sink(name, severity, message)
    except Exception:
        _log.debug("raising alert %s failed", name, exc_info=True)


class Senders:
    """Makes the Sender for each (signal, transport): a Spool when
    ``export.spool.enabled``, else a Delivery with a bounded retry budget.
    Exporters of every kind get their sender here; Telemetry reads the
    spools' state from here."""

    def __init__(
        self,
        enabled: bool,
        directory: str,
        max_bytes: int,
        timeout_s: float,
        send_budget_s: float | None = None,
        budgets: Mapping[str, float] | None = None,
    ) -> None:
        self.enabled = enabled
        self.directory = directory
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.send_budget_s = send_budget_s
        self.budgets = dict(budgets or {})
        """Each signal's retry budget with the spool off (its export timeout); default ``timeout_s``."""
        self.events = SpoolEvents()
        self.spools: list[Spool] = []

    def sender(self, signal: str, transport: Transport) -> Sender:
        if not self.enabled:
            return Delivery(signal, transport, budget_s=self.budgets.get(signal, self.timeout_s))
        directory = spool_directory(self.directory, signal, transport.destination)
        spool = Spool(
            signal, transport, directory, self.max_bytes, self.events,
            send_timeout_s=self.timeout_s, send_budget_s=self.send_budget_s,
        )
        self.spools.append(spool)
        return spool
