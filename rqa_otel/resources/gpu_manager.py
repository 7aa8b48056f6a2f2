"""GPUManager: the RQA2025 design's GPU view for the model layer, over the
NVML sampler the gauges use (rqa_otel.resources.gpu).

    gpus = GPUManager(resource_manager)       # NVML opened once; no GPU: has_gpu False
    gpus.memory()                             # [{"index", "uuid", "name", "used_mib", "total_mib", "free_mib"}]
    gpus.utilization()                        # {index: 0.0 .. 1.0}
    gpus.process_memory()                     # {pid: MiB} over all devices
    device = gpus.choose_device("lstm_alpha") # the device with most free memory that
                                              # holds the strategy's gpu_memory quota; None if none does

Readings are live (one NVML query per call). Without NVML or a GPU every
call answers empty (and ``choose_device`` None): a machine without a GPU is
a normal case for a strategy, not an error.
"""

from __future__ import annotations

from typing import Any

from rqa_otel.resources.gpu import GpuDeviceReading, GpuSampler

MIB = 1 << 20


class GPUManager:
    def __init__(self, resource_manager: Any = None, sampler: GpuSampler | None | str = "auto") -> None:
        """``resource_manager``: where ``choose_device`` finds a strategy's
        gpu_memory quota (a ResourceManager; None: only free memory counts).
        ``sampler``: an open GpuSampler, None for none, "auto" to open NVML."""
        self._resources = resource_manager
        self._sampler = GpuSampler.open() if sampler == "auto" else sampler

    @property
    def has_gpu(self) -> bool:
        return self._sampler is not None and self._sampler.device_count > 0

    @property
    def device_count(self) -> int:
        return self._sampler.device_count if self._sampler is not None else 0

    def devices(self) -> list[GpuDeviceReading]:
        """A reading of every GPU (utilization, memory, temperature, power)."""
        return self._sampler.devices() if self._sampler is not None else []

    def memory(self) -> list[dict[str, Any]]:
        """Memory of every GPU in MiB (devices whose driver does not report it are left out)."""
        return [
            {
                "index": d.index, "uuid": d.uuid, "name": d.name,
                "used_mib": d.memory_used_bytes / MIB, "total_mib": d.memory_total_bytes / MIB,
                "free_mib": (d.memory_total_bytes - d.memory_used_bytes) / MIB,
            }
            for d in self.devices()
            if d.memory_used_bytes is not None and d.memory_total_bytes is not None
        ]

    def utilization(self) -> dict[int, float]:
        """Busy share of each GPU, 0.0 to 1.0 (where the driver reports it)."""
        return {d.index: d.utilization for d in self.devices() if d.utilization is not None}

    def process_memory(self, pid: int | None = None) -> Any:
        """GPU memory per process in MiB, summed over devices ({pid: MiB});
        with ``pid``, that process's figure (0.0 without a GPU context)."""
        used = self._sampler.process_memory() if self._sampler is not None else None
        by_pid = {p: b / MIB for p, b in (used or {}).items()}
        return by_pid if pid is None else by_pid.get(int(pid), 0.0)

    def choose_device(self, strategy: str | None = None, gpu_memory_mib: float | None = None) -> int | None:
        """The index of the device with the most free memory that can hold
        ``gpu_memory_mib`` (default: the strategy's gpu_memory quota; no
        quota: any free memory), or None when none can."""
        needed = gpu_memory_mib
        if needed is None and strategy is not None and self._resources is not None:
            needed = self._resources.quota(strategy).gpu_memory_mib
        if needed is not None and (isinstance(needed, bool) or not isinstance(needed, (int, float)) or needed < 0):
            raise ValueError(f"gpu_memory_mib = {needed!r}: expected a number of MiB >= 0")
        candidates = [m for m in self.memory() if m["free_mib"] > 0 and (needed is None or m["free_mib"] >= needed)]
        if not candidates:
            return None
        return max(candidates, key=lambda m: (m["free_mib"], -m["index"]))["index"]

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
