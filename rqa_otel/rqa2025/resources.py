"""ResourceManager as the design has it: ``check_quota(strategy) -> bool``
that reflects usage NOW, and the design's worker rule.

    manager = ResourceManager()
    manager.set_strategy_quota("alpha", cpu=50, gpu_memory=2048, max_workers=4)
    manager.register_strategy_worker("alpha", "w1")
    if manager.check_quota("alpha"): ...
    manager.clear_strategy_quota("alpha")

``check_quota``:
- a strategy without a quota: True (the design's "no limit");
- workers: True only while ``len(workers) < max_workers`` (room for one more);
- CPU, RSS and GPU memory: each below its limit (the design's strict ``<``).
  The figures are those of the last observation (the agent's smoothed
  ``observe``) when it is younger than one interval (``resources.interval_s``);
  otherwise the strategy's processes (those registered in the run directory,
  and its workers' processes) are sampled on the call: /proc reads only, and
  NVML's per-process query when the quota limits GPU memory. The bound is
  stated in docs/migration.md and measured by the ``check_quota_sampled``
  bench row. CPU is the average since the previous sample of that strategy
  (since the process started, at the first one).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Mapping

from rqa_otel.resources.quota import MIB, Quota, QuotaCheck
from rqa_otel.resources.quota import ResourceManager as _ProjectResourceManager
from rqa_otel.resources.sampling import ResourceSampler, StrategyUsage, aggregate_by_strategy
from rqa_otel.telemetry import current


class ResourceManager(_ProjectResourceManager):
    def __init__(self, telemetry: Any = None, *, interval_s: float | None = None, **options: Any) -> None:
        """``telemetry``: where breaches are reported (default: the process's
        handle, if set up; none needed). Other options as the project's
        ResourceManager (registry, quotas, smoothing, warn_ratio, cpu_count)."""
        telemetry = telemetry if telemetry is not None else current()
        super().__init__(telemetry, **options)
        settings = telemetry.settings if telemetry is not None else None
        self.interval_s = interval_s if interval_s is not None else (settings.resources.interval_s if settings else 10.0)
        self._observed: dict[str, float] = {}  # strategy -> monotonic time of its last observation
        self._samplers: dict[tuple[str, bool], ResourceSampler] = {}
        self._samplers_lock = threading.Lock()
        self._gpu: Any = "unopened"

    def observe(self, usage, now=None):
        seen = time.monotonic()
        transitions = super().observe(usage, now)
        for strategy in self.quotas():
            self._observed[strategy] = seen
        return transitions

    def check_quota(self, strategy: str) -> bool:  # type: ignore[override]
        """True when the strategy may take more work: no quota, or every
        limited resource below its limit and room for one more worker."""
        quotas = self.quotas()
        if strategy not in quotas:
            return True
        quota = quotas[strategy]
        if quota.max_workers is not None and not len(self.registry.workers(strategy)) < quota.max_workers:
            return False
        if all(quota.limit(resource) is None for resource in ("cpu", "memory", "gpu_memory")):
            return True
        observed = self._observed.get(strategy)
        if observed is not None and time.monotonic() - observed < self.interval_s:
            return super().check_quota(strategy).ok
        usage = self.usage_now(strategy)
        return _within(quota, usage)

    def quota_status(self, strategy: str) -> QuotaCheck:
        """The project's detailed answer (levels, smoothed usage, workers)."""
        return super().check_quota(strategy)

    def usage_now(self, strategy: str) -> StrategyUsage:
        """The strategy's usage sampled now (see the module's docstring)."""
        pids = {entry.pid: strategy for entry in self.registry.processes() if entry.strategy == strategy}
        for worker in self.registry.workers(strategy).values():
            pids[int(worker["pid"])] = strategy
        with_gpu = self.quota(strategy).gpu_memory_mib is not None
        sampler = self._sampler(strategy, with_gpu)
        readings = sampler.sample(list(pids))
        return aggregate_by_strategy(readings, pids).get(strategy) or StrategyUsage(strategy)

    def _sampler(self, strategy: str, with_gpu: bool) -> ResourceSampler:
        # One per strategy: a sampler forgets the CPU baselines of pids it
        # was not asked about, and strategies are asked about one at a time.
        with self._samplers_lock:
            sampler = self._samplers.get((strategy, with_gpu))
            if sampler is None:
                sampler = self._samplers[(strategy, with_gpu)] = ResourceSampler(gpu=self._gpu_sampler() if with_gpu else None)
            return sampler

    def _gpu_sampler(self):
        if self._gpu == "unopened":
            from rqa_otel.resources.gpu import GpuSampler  # NVML loads only for a GPU quota

            self._gpu = GpuSampler.open()
        return self._gpu


def _within(quota: Quota, usage: StrategyUsage) -> bool:
    readings: Mapping[str, float | None] = {
        "cpu": usage.cpu_percent,
        "memory": usage.rss_bytes / MIB,
        "gpu_memory": None if usage.gpu_memory_bytes is None else usage.gpu_memory_bytes / MIB,
    }
    for resource, reading in readings.items():
        limit = quota.limit(resource)
        if limit is None or reading is None:
            continue  # no limit, or no GPU figure to judge by (the design: gpu_ok without a GPU)
        if not reading < limit or math.isnan(reading):
            return False
    return True
