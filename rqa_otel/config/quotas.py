"""The ``Quota`` value: one strategy's resource limits, as settings give them.

Pure data and validation, so the settings loader can parse ``quotas.*``
without importing the ResourceManager that enforces them
(``rqa_otel.resources.quota``, which re-exports ``Quota``).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Quota:
    """Limits of one strategy; None means no limit on that resource."""

    cpu_percent: float | None = None
    """Percent of ONE core, summed over the strategy's processes (250 = 2.5 cores)."""
    memory_mib: float | None = None
    """Resident memory (RSS) summed over the strategy's processes, MiB."""
    gpu_memory_mib: float | None = None
    """GPU memory summed over the strategy's processes and devices, MiB."""
    max_workers: int | None = None
    """Workers registered at once (``ResourceManager.worker``)."""

    FIELDS = ("cpu_percent", "memory_mib", "gpu_memory_mib", "max_workers")

    def validated(self, strategy: str, cpu_count: int | None = None) -> "Quota":
        """This quota, or ValueError naming the strategy, the field and what is allowed."""
        cpu_count = cpu_count or os.cpu_count() or 1
        for name in ("cpu_percent", "memory_mib", "gpu_memory_mib"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"quota {strategy}.{name} = {value!r}: expected a number > 0 (or none for no limit)")
        if self.cpu_percent is not None and self.cpu_percent > 100 * cpu_count:
            raise ValueError(
                f"quota {strategy}.cpu_percent = {self.cpu_percent!r}: this host has {cpu_count} cores, so at most "
                f"{100 * cpu_count} (percent of one core)"
            )
        workers = self.max_workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
            raise ValueError(f"quota {strategy}.max_workers = {workers!r}: expected an integer >= 0 (or none)")
        return self

    @classmethod
    def from_mapping(cls, strategy: str, data: Mapping[str, Any], cpu_count: int | None = None) -> "Quota":
        """From settings (``quotas.<strategy>.*``) or quotas.json."""
        if not isinstance(data, Mapping):
            raise ValueError(f"quota {strategy}: expected a mapping with {', '.join(cls.FIELDS)}")
        unknown = sorted(set(map(str, data)) - set(cls.FIELDS))
        if unknown:
            raise ValueError(f"quota {strategy}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(cls.FIELDS)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, str):  # from an RQA_* variable or a hand-written file
                try:
                    value = int(value) if key == "max_workers" else float(value)
                except ValueError:
                    raise ValueError(f"quota {strategy}.{key} = {value!r}: expected a number") from None
            values[str(key)] = value
        return cls(**values).validated(strategy, cpu_count)

    def limit(self, resource: str) -> float | None:
        """The limit in the unit of the smoothed reading (percent, MiB, workers)."""
        return {
            "cpu": self.cpu_percent,
            "memory": self.memory_mib,
            "gpu_memory": self.gpu_memory_mib,
            "workers": self.max_workers,
        }[resource]

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}
