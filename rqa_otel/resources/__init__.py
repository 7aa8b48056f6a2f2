"""Resource readings and gauges: host CPU and memory, per-process CPU, RSS,
threads and file descriptors, GPUs through NVML, and per-strategy sums.

    sampler = ResourceSampler()                 # opens NVML when there is one
    readings = sampler.sample(pids)             # {pid: ProcessReading}
    usage = aggregate_by_strategy(readings, {pid: "momentum", ...})
"""

from rqa_otel.resources.gauges import ResourceGauges, ResourceSnapshot
from rqa_otel.resources.gpu import GpuDeviceReading, GpuSampler
from rqa_otel.resources.sampling import (
    HostReading,
    ProcessReading,
    ResourceSampler,
    StrategyUsage,
    aggregate_by_strategy,
)

__all__ = [
    "GpuDeviceReading",
    "GpuSampler",
    "HostReading",
    "ProcessReading",
    "ResourceGauges",
    "ResourceSampler",
    "ResourceSnapshot",
    "StrategyUsage",
    "aggregate_by_strategy",
]
