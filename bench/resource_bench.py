"""One side of the resource_collect benchmark, in a fresh process.

    python bench/resource_bench.py project CYCLES   # rqa-otel: 100 real processes
    python bench/resource_bench.py anchor CYCLES    # system-metrics: this process

Both sides are measured the same way: one metric reader collection
(``InMemoryMetricReader.get_metrics_data()``: every callback, the SDK's
aggregation) per cycle. Prints {"cycle_ms": [...], "sample_ms": [...]}.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

PROCESSES = 100


def _cycles(reader: InMemoryMetricReader, cycles: int, before=lambda: None) -> list[float]:
    reader.get_metrics_data()  # warm up: first readings, instrument setup
    durations = []
    for _ in range(cycles):
        before()
        started = time.perf_counter()
        reader.get_metrics_data()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def project(cycles: int) -> dict:
    from rqa_otel.resources import ResourceGauges, ResourceSampler

    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(PROCESSES)]
    try:
        targets = {process.pid: f"strategy-{index % 10}" for index, process in enumerate(sleepers)}
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        sampler = ResourceSampler(gpu="auto")
        gauges = ResourceGauges(provider.get_meter("bench"), sampler, lambda: targets)
        cycle_ms = _cycles(reader, cycles)
        assert gauges.samples_taken == cycles + 1, "one sample per collection"
        sample_ms = []
        for _ in range(cycles):
            started = time.perf_counter()
            gauges.refresh()
            sample_ms.append((time.perf_counter() - started) * 1000)
        assert len(gauges.last.processes) == PROCESSES, "not every process was read"
        return {"cycle_ms": cycle_ms, "sample_ms": sample_ms}
    finally:
        for process in sleepers:
            process.kill()
            process.wait()


def anchor(cycles: int) -> dict:
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    SystemMetricsInstrumentor().instrument(meter_provider=provider)  # its default configuration
    return {"cycle_ms": _cycles(reader, cycles)}


if __name__ == "__main__":
    mode, count = sys.argv[1], int(sys.argv[2])
    print(json.dumps({"project": project, "anchor": anchor}[mode](count)))
