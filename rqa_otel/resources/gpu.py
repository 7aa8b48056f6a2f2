"""GPU readings through NVML (``import pynvml``, served by nvidia-ml-py).

Nothing here raises into the caller: without NVML the sampler is not
created (one info log says why); a field the driver does not support is
absent (None); a GPU that falls off the bus is reported once and left out
from then on; processes that vanished are simply not in NVML's list.

Per-process GPU memory comes from nvmlDeviceGetComputeRunningProcesses. Its
versions differ by driver: ``_v3`` (drivers >= 510), ``_v2`` (>= 470), and
the unversioned v1 whose records lack the instance ids. As nvitop does, the
newest one the loaded library exports is used, falling back on
FunctionNotFound, and the choice is remembered.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable

from rqa_otel._util.fork import renew_lock_after_fork

_NVML_LIBRARY = "libnvidia-ml.so.1"  # what pynvml's nvmlInit() loads on Linux

_log = logging.getLogger("rqa_otel")
_announced_absent = False


@dataclass(frozen=True, slots=True)
class GpuDeviceReading:
    """One GPU at one instant; a field is None where the driver does not
    report it (NVML_ERROR_NOT_SUPPORTED, NO_PERMISSION)."""

    index: int
    uuid: str
    name: str
    utilization: float | None
    """Share of the last sample period in which a kernel ran, 0 to 1."""
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: float | None
    power_w: float | None


class _ProcessInfoV1(ctypes.Structure):
    """The record of the unversioned call (drivers before 470); pynvml no
    longer defines it, since its unversioned wrapper calls _v3."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


def _process_query_v1(pynvml: Any) -> Callable[[Any], list]:
    def query(handle: Any) -> list:
        function = pynvml._nvmlGetFunctionPointer("nvmlDeviceGetComputeRunningProcesses")
        count = ctypes.c_uint(0)
        result = function(handle, ctypes.byref(count), None)
        if result == pynvml.NVML_SUCCESS:
            return []
        if result != pynvml.NVML_ERROR_INSUFFICIENT_SIZE:
            raise pynvml.NVMLError(result)
        count.value = count.value * 2 + 5  # room for processes started meanwhile
        records = (_ProcessInfoV1 * count.value)()
        pynvml._nvmlCheckReturn(function(handle, ctypes.byref(count), records))
        not_available = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
        return [
            _Process(record.pid, None if record.usedGpuMemory == not_available else record.usedGpuMemory)
            for record in records[: count.value]
        ]

    return query


@dataclass(frozen=True, slots=True)
class _Process:
    pid: int
    usedGpuMemory: int | None


class GpuSampler:
    """Device and per-process readings of every GPU NVML sees.

    Build it with :meth:`open`, which returns None (after one info log per
    process) when there is no NVML or no GPU."""

    def __init__(self, pynvml: Any) -> None:
        self._nvml = pynvml
        self._lock = threading.Lock()
        renew_lock_after_fork(self)
        self._handles: dict[int, Any] = {}
        self._identity: dict[int, tuple[str, str]] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self._identity[index] = (
                    self._optional(pynvml.nvmlDeviceGetUUID, handle) or f"GPU-{index}",
                    self._optional(pynvml.nvmlDeviceGetName, handle) or "unknown",
                )
            except pynvml.NVMLError as error:  # lost already: the other GPUs still count
                self._lose(index, error)
                continue
            self._handles[index] = handle
        self._process_query: Callable[[Any], list] | None = None
        self._process_query_version: str | None = None
        self._closed = False

    @classmethod
    def open(cls) -> "GpuSampler | None":
        """A sampler over NVML, or None when NVML or a GPU is missing."""
        try:
            # The library pynvml would load, looked for first: without it
            # (no NVIDIA driver), importing pynvml is ~50 ms of start-up
            # for nothing.
            if sys.platform.startswith("linux"):
                ctypes.CDLL(_NVML_LIBRARY)
        except OSError as error:
            _announce_absent(f"NVML is not available ({_NVML_LIBRARY} cannot be loaded: {error})")
            return None
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as error:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded ...
            _announce_absent(f"NVML is not available ({_describe(error)})")
            return None
        try:
            sampler = cls(pynvml)
        except Exception as error:
            _shutdown(pynvml)
            _announce_absent(f"NVML could not list the GPUs ({_describe(error)})")
            return None
        if not sampler._handles:
            sampler.close()
            _announce_absent("NVML reports no GPU")
            return None
        return sampler

    @property
    def device_count(self) -> int:
        return len(self._handles)

    @property
    def process_query_version(self) -> str | None:
        """Which nvmlDeviceGetComputeRunningProcesses version answers ("v3",
        "v2", "v1"); None before the first process query."""
        return self._process_query_version

    def devices(self) -> list[GpuDeviceReading]:
        """A reading of every GPU still on the bus."""
        nvml = self._nvml
        readings = []
        with self._lock:
            for index, handle in list(self._handles.items()):
                try:
                    utilization = self._optional(nvml.nvmlDeviceGetUtilizationRates, handle)
                    memory = self._optional(nvml.nvmlDeviceGetMemoryInfo, handle)
                    temperature = self._optional(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
                    power_mw = self._optional(nvml.nvmlDeviceGetPowerUsage, handle)
                except Exception as error:
                    self._lose(index, error)
                    continue
                uuid, name = self._identity[index]
                readings.append(
                    GpuDeviceReading(
                        index=index,
                        uuid=uuid,
                        name=name,
                        utilization=None if utilization is None else utilization.gpu / 100.0,
                        memory_used_bytes=None if memory is None else int(memory.used),
                        memory_total_bytes=None if memory is None else int(memory.total),
                        temperature_c=None if temperature is None else float(temperature),
                        power_w=None if power_mw is None else power_mw / 1000.0,
                    )
                )
        return readings

    def process_memory(self) -> dict[int, int] | None:
        """Used GPU memory per pid, summed over the GPUs still on the bus;
        None once no GPU answers (figures unknown, not zero). Processes the
        driver reports without a figure are left out."""
        used: dict[int, int] = {}
        with self._lock:
            if not self._handles:
                return None
            for index, handle in list(self._handles.items()):
                try:
                    processes = self._running_processes(handle)
                except Exception as error:
                    if self._is(error, "NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION"):
                        continue
                    self._lose(index, error)
                    continue
                for process in processes:
                    if process.usedGpuMemory is not None:
                        used[int(process.pid)] = used.get(int(process.pid), 0) + int(process.usedGpuMemory)
            return used if self._handles else None

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._handles.clear()
                _shutdown(self._nvml)

    # --- internals ----------------------------------------------------------

    def _running_processes(self, handle: Any) -> list:
        if self._process_query is not None:
            return self._process_query(handle)
        nvml = self._nvml
        candidates = [
            ("v3", getattr(nvml, "nvmlDeviceGetComputeRunningProcesses_v3", None)),
            ("v2", getattr(nvml, "nvmlDeviceGetComputeRunningProcesses_v2", None)),
            ("v1", _process_query_v1(nvml)),
        ]
        for version, query in candidates:
            if query is None:
                continue
            try:
                processes = query(handle)
            except nvml.NVMLError as error:
                if error.value == nvml.NVML_ERROR_FUNCTION_NOT_FOUND:
                    continue  # an older driver: try the previous version
                raise
            self._process_query, self._process_query_version = query, version
            return processes
        raise nvml.NVMLError(nvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    def _optional(self, function: Callable, *arguments: Any) -> Any:
        """The field's value, or None where the driver cannot report it;
        any other error (GPU lost) propagates."""
        try:
            return function(*arguments)
        except self._nvml.NVMLError as error:
            if self._is(error, "NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION", "NVML_ERROR_NO_DATA"):
                return None
            raise

    def _is(self, error: BaseException, *codes: str) -> bool:
        value = getattr(error, "value", None)
        return value is not None and any(getattr(self._nvml, code, object()) == value for code in codes)

    def _lose(self, index: int, error: BaseException) -> None:
        """A device that failed beyond one field (GPU_IS_LOST, UNKNOWN) is
        reported once and no longer read."""
        self._handles.pop(index, None)
        uuid, name = self._identity.get(index, ("?", "?"))
        _log.warning("GPU %d (%s, %s) stopped answering NVML (%s); its gauges are no longer reported", index, name, uuid, _describe(error))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _shutdown(pynvml: Any) -> None:
    try:
        pynvml.nvmlShutdown()
    except Exception:
        pass


def _announce_absent(reason: str) -> None:
    """The one info log of a process without GPU readings."""
    global _announced_absent
    if not _announced_absent:
        _announced_absent = True
        _log.info("%s: GPU gauges are not reported", reason)
