"""Cheap resource readings of the host and of many processes.

One collection cycle over 100 processes must cost a few milliseconds, so the
per-process path reads ``/proc/<pid>/stat`` (CPU times, threads, RSS) with
``os.read`` and counts ``/proc/<pid>/fd`` entries: two system calls and one
directory listing per process, where psutil's ``Process`` API would open
``stat``, ``statm`` and ``status`` separately and build objects for each.
Where ``/proc`` is missing (not Linux) psutil does the same job, slower.

CPU percent is a rate, so the sampler keeps each process's previous CPU
times, keyed by (pid, start time) so that a reused pid starts afresh. The
first reading of a process is its average since it started.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

import psutil

from rqa_otel._util.fork import renew_lock_after_fork

if TYPE_CHECKING:
    from rqa_otel.resources.gpu import GpuDeviceReading, GpuSampler

_HAVE_PROC = os.path.isdir("/proc/self")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if _HAVE_PROC else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if _HAVE_PROC else 4096


@dataclass(frozen=True, slots=True)
class ProcessReading:
    """One process at one instant."""

    pid: int
    cpu_percent: float
    """CPU time used since the previous reading (or since the process
    started) per wall-clock time, in percent of ONE core: 250.0 is two and a
    half cores busy."""
    rss_bytes: int
    threads: int
    open_fds: int | None
    """None where the process's fd table may not be read (another user's)."""
    gpu_memory_bytes: int | None = None
    """GPU memory used by the process over all devices; None without NVML or
    where the driver does not report it; 0 for a process with no GPU context."""
    cpu_user_share: float = 1.0
    """The share of ``cpu_percent`` spent in user mode (the rest in the
    kernel), over the same window: process.cpu.utilization reports each
    mode (``cpu.mode``)."""


@dataclass(frozen=True, slots=True)
class HostReading:
    """The whole machine at one instant."""

    cpu_percent: float
    """Busy share of all cores since the previous reading, 0 to 100."""
    cpu_count: int
    memory_used_bytes: int
    """Total minus available (the kernel's MemAvailable), as psutil and
    ``free`` count it."""
    memory_total_bytes: int
    gpus: tuple["GpuDeviceReading", ...] = ()

    @property
    def memory_utilization(self) -> float:
        return self.memory_used_bytes / self.memory_total_bytes if self.memory_total_bytes else 0.0


@dataclass(slots=True)
class StrategyUsage:
    """The sum of one strategy's processes (a strategy may run several
    worker processes, each with threads)."""

    strategy: str
    pids: list[int] = field(default_factory=list)
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    threads: int = 0
    open_fds: int = 0
    gpu_memory_bytes: int | None = None

    @property
    def processes(self) -> int:
        return len(self.pids)


def aggregate_by_strategy(
    readings: Mapping[int, ProcessReading], pid_to_strategy: Mapping[int, str]
) -> dict[str, StrategyUsage]:
    """Sum readings per strategy. Pids without a reading (vanished) count for
    nothing; readings of pids without a strategy are left out. A strategy's
    GPU memory stays None until one of its processes reports a figure."""
    usage: dict[str, StrategyUsage] = {}
    for pid, strategy in pid_to_strategy.items():
        reading = readings.get(pid)
        if reading is None:
            continue
        total = usage.get(strategy)
        if total is None:
            total = usage[strategy] = StrategyUsage(strategy)
        total.pids.append(pid)
        total.cpu_percent += reading.cpu_percent
        total.rss_bytes += reading.rss_bytes
        total.threads += reading.threads
        total.open_fds += reading.open_fds or 0
        if reading.gpu_memory_bytes is not None:
            total.gpu_memory_bytes = (total.gpu_memory_bytes or 0) + reading.gpu_memory_bytes
    return usage


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


class ResourceSampler:
    """Readings of processes and of the host; thread-safe, never raises for
    a process that vanished or may not be read (it is left out).

    ``gpu``: a :class:`~rqa_otel.resources.gpu.GpuSampler`, or ``"auto"`` to
    open NVML at the first reading when it is there (GPU figures stay absent
    when it is not), or None for no GPU readings at all. Without the
    persistence daemon nvmlInit() may take seconds, so "auto" never opens it
    in the constructor, which setup() runs in the strategy's thread.
    """

    MIN_WINDOW_S = 0.2

    def __init__(self, gpu: "GpuSampler | str | None" = "auto") -> None:
        if gpu not in (None, "auto") and not hasattr(gpu, "process_memory"):
            raise ValueError(f"gpu = {gpu!r}: expected a GpuSampler, 'auto' or None")
        self._gpu_pending = gpu == "auto"
        self._gpu: GpuSampler | None = None if gpu == "auto" else gpu  # type: ignore[assignment]
        self._lock = threading.Lock()
        renew_lock_after_fork(self)
        # (pid, start ticks) -> (cpu ticks, monotonic time, percent) of the previous reading.
        self._previous: dict[tuple[int, int], tuple[int, float, float]] = {}
        self._previous_host: tuple[int, int] | None = None  # (busy ticks, total ticks)
        self._uptime_s = 0.0
        self.cpu_count = os.cpu_count() or 1

    @property
    def gpu(self) -> "GpuSampler | None":
        """The NVML sampler, None without NVML (opened here on first use)."""
        if self._gpu_pending:
            # NVML (ctypes, pynvml) loads only where a GPU is asked for.
            from rqa_otel.resources.gpu import GpuSampler

            with self._lock:
                if self._gpu_pending:
                    self._gpu = GpuSampler.open()
                    self._gpu_pending = False
        return self._gpu

    def open_gpu_in_background(self) -> None:
        """Open NVML now on a daemon thread (loading the library costs
        milliseconds, nvmlInit() without the persistence daemon seconds), so
        that the first collection, which may run in a flush or shutdown()
        on the strategy's thread, does not pay for it."""
        if self._gpu_pending:
            threading.Thread(target=lambda: self.gpu, name="rqa-otel-nvml-open", daemon=True).start()

    @property
    def may_read_gpus(self) -> bool:
        """False once it is known that there will be no GPU readings."""
        return self._gpu_pending or self._gpu is not None

    # --- processes ----------------------------------------------------------

    def sample(self, pids: Iterable[int]) -> dict[int, ProcessReading]:
        """Read each pid once; vanished pids are absent from the result."""
        gpu_memory = self.gpu.process_memory() if self.gpu is not None else None
        read_one = self._read_proc if _HAVE_PROC else self._read_psutil
        readings: dict[int, ProcessReading] = {}
        seen: set[tuple[int, int]] = set()
        with self._lock:
            now = time.monotonic()
            # Process start times count from boot; /proc/uptime has the 10 ms
            # resolution that psutil.boot_time() (whole seconds) lacks.
            self._uptime_s = float(_read("/proc/uptime").split()[0]) if _HAVE_PROC else 0.0
            for pid in pids:
                try:
                    key, reading = read_one(pid, now)
                except (OSError, ValueError, IndexError, psutil.Error):
                    continue  # gone between listing and reading, or a zombie
                seen.add(key)
                if gpu_memory is not None:
                    reading = _with_gpu(reading, gpu_memory.get(pid, 0))
                readings[pid] = reading
            # Forget processes not asked about this cycle, so the table never grows.
            for key in [key for key in self._previous if key not in seen]:
                del self._previous[key]
        return readings

    def _read_proc(self, pid: int, now: float) -> tuple[tuple[int, int], ProcessReading]:
        raw = _read(f"/proc/{pid}/stat")
        # The command name (field 2) may hold spaces and parentheses: split
        # after its last ')'. fields[0] is then the state (field 3).
        fields = raw[raw.rindex(b")") + 2 :].split()
        if fields[0] == b"Z":
            raise ValueError("zombie")
        user_ticks, system_ticks = int(fields[11]), int(fields[12])  # utime, stime
        threads = int(fields[17])
        start_ticks = int(fields[19])
        rss_bytes = int(fields[21]) * _PAGE_SIZE
        try:
            open_fds: int | None = len(os.listdir(f"/proc/{pid}/fd"))
        except PermissionError:
            open_fds = None
        age_s = self._uptime_s - start_ticks / _CLOCK_TICKS
        key = (pid, start_ticks)
        percent, user_share = self._cpu_percent(key, user_ticks, system_ticks, age_s, now)
        return key, ProcessReading(pid, percent, rss_bytes, threads, open_fds, cpu_user_share=user_share)

    def _cpu_percent(
        self, key: tuple[int, int], user_ticks: int, system_ticks: int, age_s: float, now: float
    ) -> tuple[float, float]:
        """Percent of one core since the previous reading, and its user-mode
        share. CPU times count in ticks (10 ms), so over a short window one
        tick would read as a huge rate: a window shorter than MIN_WINDOW_S
        keeps the previous figures and their baseline."""
        cpu_ticks = user_ticks + system_ticks
        previous = self._previous.get(key)
        if previous is None:  # first sight: the average since the process started
            previous = (0, now - max(age_s, 1e-3), 0.0, 0, 1.0)
        elif now - previous[1] < self.MIN_WINDOW_S:
            return previous[2], previous[4]
        percent = min(_percent(cpu_ticks - previous[0], _CLOCK_TICKS, now - previous[1]), 100.0 * self.cpu_count)
        ticks = cpu_ticks - previous[0]
        user_share = min(max((user_ticks - previous[3]) / ticks, 0.0), 1.0) if ticks > 0 else previous[4]
        self._previous[key] = (cpu_ticks, now, percent, user_ticks, user_share)
        return percent, user_share

    def _read_psutil(self, pid: int, now: float) -> tuple[tuple[int, int], ProcessReading]:
        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            user_ticks, system_ticks = int(times.user * _CLOCK_TICKS), int(times.system * _CLOCK_TICKS)
            start_ticks = int(process.create_time() * _CLOCK_TICKS)
            rss_bytes = process.memory_info().rss
            threads = process.num_threads()
            try:
                open_fds: int | None = process.num_fds()
            except (psutil.AccessDenied, AttributeError):
                open_fds = None
        key = (pid, start_ticks)
        age_s = time.time() - process.create_time()
        percent, user_share = self._cpu_percent(key, user_ticks, system_ticks, age_s, now)
        return key, ProcessReading(pid, percent, rss_bytes, threads, open_fds, cpu_user_share=user_share)

    # --- host ---------------------------------------------------------------

    def sample_host(self) -> HostReading:
        """CPU busy share since the previous call (since boot on the first),
        memory, and the GPU devices NVML reports."""
        busy, total = _host_cpu_ticks()
        with self._lock:
            previous = self._previous_host or (0, 0)
            self._previous_host = (busy, total)
        elapsed = total - previous[1]
        cpu_percent = 100.0 * (busy - previous[0]) / elapsed if elapsed > 0 else 0.0
        memory = psutil.virtual_memory()
        gpus = self.gpu.devices() if self.gpu is not None else ()
        return HostReading(
            cpu_percent=min(max(cpu_percent, 0.0), 100.0),
            cpu_count=self.cpu_count,
            memory_used_bytes=memory.total - memory.available,
            memory_total_bytes=memory.total,
            gpus=tuple(gpus),
        )

    def close(self) -> None:
        with self._lock:
            self._gpu_pending = False
        if self._gpu is not None:
            self._gpu.close()


def _percent(ticks: int, ticks_per_s: int, elapsed_s: float) -> float:
    return max(0.0, 100.0 * ticks / ticks_per_s / elapsed_s) if elapsed_s > 0 else 0.0


def _with_gpu(reading: ProcessReading, gpu_memory_bytes: int) -> ProcessReading:
    return ProcessReading(
        reading.pid, reading.cpu_percent, reading.rss_bytes, reading.threads, reading.open_fds, gpu_memory_bytes,
        reading.cpu_user_share,
    )


def _host_cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of all cores since boot."""
    if _HAVE_PROC:
        values = [int(value) for value in _read("/proc/stat").split(b"\n", 1)[0].split()[1:]]
        # user nice system idle iowait irq softirq steal (guest is in user already)
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values[:8])
        return total - idle, total
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return int((total - idle) * 100), int(total * 100)
