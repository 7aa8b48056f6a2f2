"""Observable gauges over a :class:`ResourceSampler`.

The OpenTelemetry SDK calls every observable instrument's callback at each
collection. Sampling once per callback would read ``/proc`` a dozen times
per cycle, so all callbacks share one :class:`ResourceSnapshot`: a callback
that already observed the current snapshot starts a new cycle (each callback
runs once per collection), and so does a snapshot older than ``max_age_s``.
The host agent calls :meth:`ResourceGauges.refresh` on its own schedule; the
next collection exports that same snapshot, which its quota checks saw.

Names follow the semantic conventions where they have one (``system.*``,
``process.*``, ``hw.*``); per-strategy sums and per-process GPU memory have
none and live under ``rqa.`` (docs/telemetry.md lists them all).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from rqa_otel import names
from rqa_otel.resources.sampling import (
    HostReading,
    ProcessReading,
    ResourceSampler,
    StrategyUsage,
    aggregate_by_strategy,
    renew_lock_after_fork,
)

_log = logging.getLogger("rqa_otel")

Targets = Callable[[], Mapping[int, str]]
"""``() -> {pid: strategy}``: the processes to watch, asked once per cycle."""


@dataclass(frozen=True)
class ResourceSnapshot:
    """What one collection cycle read."""

    host: HostReading | None
    processes: Mapping[int, ProcessReading]
    strategies: Mapping[int, str]
    """pid -> strategy of every process asked about (vanished ones included)."""
    usage: Mapping[str, StrategyUsage]
    taken_at: float = field(default_factory=time.monotonic)
    """time.monotonic() of the reading."""


_EMPTY = ResourceSnapshot(None, {}, {}, {}, 0.0)


class ResourceGauges:
    """Host, per-process, per-strategy and GPU gauges on ``meter``.

    ``targets`` names the processes and their strategies; ``host=False``
    leaves out the host and GPU device gauges (for a strategy process whose
    host an agent already reports). GPU gauges report only when the sampler
    has NVML. Listeners get the snapshot of every refresh() (quota checks).
    """

    def __init__(
        self,
        meter: Meter,
        sampler: ResourceSampler,
        targets: Targets,
        *,
        host: bool = True,
        max_age_s: float = 1.0,
    ) -> None:
        self.sampler = sampler
        self._targets = targets
        self._host = host
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        renew_lock_after_fork(self)
        self._snapshot = _EMPTY
        self._observed: set[int] = set()  # instruments that observed self._snapshot
        self._listeners: list[Callable[[ResourceSnapshot], None]] = []
        self.samples_taken = 0
        self._create_instruments(meter)

    # --- sampling -----------------------------------------------------------

    def add_listener(self, listener: Callable[[ResourceSnapshot], None]) -> None:
        """Call ``listener(snapshot)`` after each :meth:`refresh`, the owner's
        schedule. Samples that metric collections take in between are
        exported but not passed on, so a listener's smoothing advances once
        per refresh whatever the export interval. Its errors are logged,
        never raised into the sampling."""
        self._listeners.append(listener)

    def refresh(self) -> ResourceSnapshot:
        """Sample now, whatever the age of the last snapshot, and tell the
        listeners; the next collection exports this snapshot."""
        with self._lock:
            snapshot = self._take()
            for listener in self._listeners:
                try:
                    listener(snapshot)
                except Exception:
                    _log.exception("a resource snapshot listener failed")
            return snapshot

    def snapshot(self, observer: int | None = None) -> ResourceSnapshot:
        """The current snapshot, or a new one when ``observer`` (an
        instrument's number) has observed it already or it is older than
        ``max_age_s``."""
        with self._lock:
            if observer in self._observed or time.monotonic() - self._snapshot.taken_at >= self._max_age_s:
                self._take()
            if observer is not None:
                self._observed.add(observer)
            return self._snapshot

    @property
    def last(self) -> ResourceSnapshot:
        """The last snapshot taken (empty before the first)."""
        return self._snapshot

    def _take(self) -> ResourceSnapshot:
        strategies = dict(self._targets())
        processes = self.sampler.sample(strategies)
        host = self.sampler.sample_host() if self._host else None
        snapshot = ResourceSnapshot(host, processes, strategies, aggregate_by_strategy(processes, strategies))
        self._snapshot = snapshot
        self._observed = set()
        self.samples_taken += 1
        return snapshot

    # --- instruments --------------------------------------------------------

    def _create_instruments(self, meter: Meter) -> None:
        observers = iter(range(1_000))

        def observe(extract: Callable[[ResourceSnapshot], Iterable[Observation]]):
            observer = next(observers)

            def callback(options: CallbackOptions) -> Iterable[Observation]:
                try:
                    return list(extract(self.snapshot(observer)))
                except Exception:  # telemetry never breaks the collection
                    _log.exception("resource sampling failed")
                    return []

            return [callback]

        cores = self.sampler.cpu_count

        def per_process(value):
            return lambda snapshot: _per_process(snapshot, value, cores)

        def per_strategy(value):
            return lambda snapshot: _per_strategy(snapshot, value)

        def per_gpu(value):
            return lambda snapshot: _per_gpu(snapshot, value)

        groups = [(_HOST_INSTRUMENTS, lambda extract: extract)] if self._host else []
        groups += [(_PROCESS_INSTRUMENTS, per_process), (_STRATEGY_INSTRUMENTS, per_strategy)]
        # Without NVML the GPU instruments observe nothing, so no GPU metric
        # is exported (the sampler said why, once).
        if self.sampler.may_read_gpus:
            groups += [(_PROCESS_GPU_INSTRUMENTS, per_process), (_STRATEGY_GPU_INSTRUMENTS, per_strategy)]
            if self._host:
                groups.append((_GPU_DEVICE_INSTRUMENTS, per_gpu))
        for table, extractor in groups:
            for name, updown, unit, description, value in table:
                create = meter.create_observable_up_down_counter if updown else meter.create_observable_gauge
                create(name, observe(extractor(value)), unit=unit, description=description)


# --- instruments: (name, up-down counter?, unit, description, value) ------------
# Semantic conventions make sizes and counts up-down counters, ratios gauges.

_HOST_INSTRUMENTS = (
    (names.SYSTEM_CPU_UTILIZATION, False, "1", "Busy share of all logical CPUs since the previous reading, 0 to 1.",
     lambda s: _host(s, lambda h: h.cpu_percent / 100.0)),
    (names.SYSTEM_MEMORY_USAGE, True, "By", "Memory in use: total minus available.",
     lambda s: _host(s, lambda h: h.memory_used_bytes, {names.SYSTEM_MEMORY_STATE: "used"})),
    (names.SYSTEM_MEMORY_LIMIT, True, "By", "Total physical memory.",
     lambda s: _host(s, lambda h: h.memory_total_bytes)),
    (names.SYSTEM_MEMORY_UTILIZATION, False, "1", "Memory in use over total memory, 0 to 1.",
     lambda s: _host(s, lambda h: h.memory_utilization, {names.SYSTEM_MEMORY_STATE: "used"})),
)
_PROCESS_INSTRUMENTS = (
    (names.PROCESS_CPU_UTILIZATION, False, "1",
     "CPU time per elapsed time and logical CPU since the previous reading, 0 to 1, by cpu.mode.",
     lambda r, cores: [(r.cpu_percent / 100.0 / cores * r.cpu_user_share, {names.CPU_MODE: "user"}),
                       (r.cpu_percent / 100.0 / cores * (1.0 - r.cpu_user_share), {names.CPU_MODE: "system"})]),
    (names.PROCESS_MEMORY_USAGE, True, "By", "Resident set size of the process.", lambda r, cores: r.rss_bytes),
    (names.PROCESS_THREAD_COUNT, True, "{thread}", "Threads of the process.", lambda r, cores: r.threads),
    (names.PROCESS_FILE_DESCRIPTOR_COUNT, True, "{file_descriptor}", "Open file descriptors of the process.",
     lambda r, cores: r.open_fds),
)
_STRATEGY_INSTRUMENTS = (
    (names.STRATEGY_CPU_USAGE, False, "{cpu}",
     "CPU used by all processes of the strategy, in cores busy (2.5 = two and a half cores).",
     lambda u: u.cpu_percent / 100.0),
    (names.STRATEGY_MEMORY_USAGE, True, "By", "Resident set size summed over the strategy's processes.",
     lambda u: u.rss_bytes),
    (names.STRATEGY_THREAD_COUNT, True, "{thread}", "Threads summed over the strategy's processes.",
     lambda u: u.threads),
    (names.STRATEGY_FILE_DESCRIPTOR_COUNT, True, "{file_descriptor}",
     "Open file descriptors summed over the strategy's processes.", lambda u: u.open_fds),
    (names.STRATEGY_PROCESS_COUNT, True, "{process}", "Live processes of the strategy.", lambda u: u.processes),
)
_PROCESS_GPU_INSTRUMENTS = (
    (names.PROCESS_GPU_MEMORY_USAGE, True, "By",
     "GPU memory used by the process over all GPUs (NVML compute processes).", lambda r, cores: r.gpu_memory_bytes),
)
_STRATEGY_GPU_INSTRUMENTS = (
    (names.STRATEGY_GPU_MEMORY_USAGE, True, "By", "GPU memory summed over the strategy's processes.",
     lambda u: u.gpu_memory_bytes),
)
_GPU_DEVICE_INSTRUMENTS = (
    (names.HW_GPU_UTILIZATION, False, "1", "Share of the last sample period in which a kernel ran on the GPU, 0 to 1.",
     lambda d: d.utilization),
    (names.HW_GPU_MEMORY_USAGE, True, "By", "GPU memory used.", lambda d: d.memory_used_bytes),
    (names.HW_GPU_MEMORY_LIMIT, True, "By", "GPU memory in total.", lambda d: d.memory_total_bytes),
    (names.HW_TEMPERATURE, False, "Cel", "GPU core temperature.", lambda d: d.temperature_c),
    (names.HW_POWER, False, "W", "Power drawn by the GPU board.", lambda d: d.power_w),
)


# --- extractors: snapshot -> observations ---------------------------------------


def _host(snapshot: ResourceSnapshot, value: Callable[[HostReading], float], attributes=None) -> Iterable[Observation]:
    if snapshot.host is not None:
        yield Observation(value(snapshot.host), attributes)


def _per_process(
    snapshot: ResourceSnapshot, value: Callable[[ProcessReading, int], float | int | None], cores: int
) -> Iterable[Observation]:
    for pid, reading in snapshot.processes.items():
        figure = value(reading, cores)
        if figure is None:
            continue
        attributes = {names.STRATEGY: snapshot.strategies.get(pid, names.DEFAULT_STRATEGY), names.PROCESS_PID: pid}
        if isinstance(figure, list):  # one observation per (value, extra attributes): cpu.mode
            for part, extra in figure:
                yield Observation(part, {**attributes, **extra})
        else:
            yield Observation(figure, attributes)


def _per_strategy(snapshot: ResourceSnapshot, value: Callable[[StrategyUsage], float | int | None]) -> Iterable[Observation]:
    for strategy, usage in snapshot.usage.items():
        figure = value(usage)
        if figure is not None:
            yield Observation(figure, {names.STRATEGY: strategy})


def _per_gpu(snapshot: ResourceSnapshot, value: Callable) -> Iterable[Observation]:
    for device in snapshot.host.gpus if snapshot.host is not None else ():
        figure = value(device)
        if figure is not None:
            yield Observation(figure, {names.HW_ID: device.uuid, names.HW_NAME: device.name, names.HW_TYPE: "gpu"})
