"""GPU readings through NVML.

This machine has no NVIDIA GPU, so NVML is faked: tests/fake_nvml/fake_nvml.c
is compiled with gcc into a libnvidia-ml.so.1 that pynvml loads through its
real ctypes path (scenarios chosen by FAKE_NVML_SCENARIO). Where a real
NVIDIA GPU is present the same tests run against it unchanged, and the
assertions that only the fake can satisfy (its exact figures, its failure
scenarios) are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import fake_nvml
from otlp_files import attributes, items
from sdk_metrics import points
from rqa_otel import names
from rqa_otel.resources import GpuSampler, ResourceGauges, ResourceSampler

REAL_GPU = fake_nvml.real_gpu_count() > 0
fake_only = pytest.mark.skipif(REAL_GPU, reason="a real NVIDIA GPU is present: fake-only scenario")
GiB = 1024**3


@pytest.fixture(scope="module")
def fake_library(tmp_path_factory) -> Path | None:
    """The fake's directory, loaded into this process (None on a real GPU)."""
    if REAL_GPU:
        return None
    directory = fake_nvml.build(tmp_path_factory.mktemp("fake_nvml"))
    fake_nvml.preload(directory)
    return directory


@pytest.fixture
def nvml(fake_library, monkeypatch):
    """Select a scenario; open samplers with ``nvml()``; all are closed after."""
    opened: list[GpuSampler] = []

    def open_sampler(scenario: str = "normal", processes: str = "") -> GpuSampler | None:
        monkeypatch.setenv("FAKE_NVML_SCENARIO", scenario)
        monkeypatch.setenv("FAKE_NVML_PROCESSES", processes)
        sampler = GpuSampler.open()
        if sampler is not None:
            opened.append(sampler)
        return sampler

    yield open_sampler
    for sampler in opened:
        sampler.close()


@pytest.fixture
def rqa_log():
    """Records of the `rqa_otel` logger (which may not propagate to root)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("rqa_otel")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture
def sleepers():
    started = []

    def start(count: int) -> list[int]:
        started.extend(subprocess.Popen(["sleep", "60"]) for _ in range(count))
        return [p.pid for p in started[-count:]]

    yield start
    for process in started:
        process.kill()
        process.wait()


def _gauges(gpu: GpuSampler, targets: dict[int, str]):
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    gauges = ResourceGauges(provider.get_meter("test"), ResourceSampler(gpu=gpu), lambda: targets)
    return reader, gauges


def test_devices_are_read_field_by_field(nvml):
    gpu = nvml()
    devices = gpu.devices()
    assert devices and len({d.uuid for d in devices}) == len(devices)
    for device in devices:
        assert device.memory_total_bytes > 0
        assert 0 <= device.memory_used_bytes <= device.memory_total_bytes
        assert device.utilization is None or 0 <= device.utilization <= 1
        assert device.temperature_c is None or 0 < device.temperature_c < 120
        assert device.power_w is None or 0 < device.power_w < 2000
    if not REAL_GPU:
        first, second = devices
        assert (first.name, first.utilization, first.temperature_c, first.power_w) == ("Fake NVIDIA T0", 0.37, 54.0, 65.25)
        assert (first.memory_total_bytes, second.memory_total_bytes) == (16 * GiB, 24 * GiB)


def test_gpu_gauges_have_one_series_per_device_and_cover_the_processes(nvml):
    gpu = nvml()
    reader, gauges = _gauges(gpu, {os.getpid(): "self"})
    found = points(reader)
    devices = {attrs[names.HW_ID] for _, attrs in found[names.HW_GPU_MEMORY_LIMIT]}
    assert len(devices) == gpu.device_count
    assert {attrs[names.HW_TYPE] for _, attrs in found[names.HW_GPU_MEMORY_LIMIT]} == {"gpu"}
    # This process has no GPU context (0 bytes) on the fake and, unless it
    # runs CUDA, on a real GPU: a figure, not an absence.
    [(used, attrs)] = found[names.PROCESS_GPU_MEMORY_USAGE]
    assert attrs == {names.STRATEGY: "self", names.PROCESS_PID: os.getpid()} and used >= 0
    assert found[names.STRATEGY_GPU_MEMORY_USAGE] == [(used, {names.STRATEGY: "self"})]


@fake_only
def test_gpu_memory_is_attributed_to_strategies_through_pids(nvml, sleepers):
    a1, a2, b, idle = sleepers(4)
    gpu = nvml(processes=f"0:{a1}:{GiB},1:{a1}:{GiB // 2},0:{a2}:{3 * GiB},1:{b}:{5 * GiB}")
    targets = {a1: "alpha", a2: "alpha", b: "beta", idle: "gamma"}
    reader, _ = _gauges(gpu, targets)
    found = points(reader)
    per_process = {attrs[names.PROCESS_PID]: value for value, attrs in found[names.PROCESS_GPU_MEMORY_USAGE]}
    assert per_process == {a1: GiB + GiB // 2, a2: 3 * GiB, b: 5 * GiB, idle: 0}
    per_strategy = {attrs[names.STRATEGY]: value for value, attrs in found[names.STRATEGY_GPU_MEMORY_USAGE]}
    assert per_strategy == {"alpha": 4 * GiB + GiB // 2, "beta": 5 * GiB, "gamma": 0}
    used = {attrs[names.HW_ID][-1]: value for value, attrs in found[names.HW_GPU_MEMORY_USAGE]}
    assert used == {"0": 4 * GiB + GiB // 4, "1": 5 * GiB + GiB // 2 + GiB // 4}
    assert {attrs[names.HW_TYPE] for _, attrs in found[names.HW_POWER]} == {"gpu"}
    assert sorted(value for value, _ in found[names.HW_TEMPERATURE]) == [54.0, 71.0]
    assert gpu.process_query_version == "v3"


@fake_only
def test_vanished_pids_in_nvmls_list_are_ignored(nvml, sleepers):
    alive, ended = sleepers(2)
    gpu = nvml(processes=f"0:{alive}:{GiB},0:{ended}:{2 * GiB}")
    subprocess.run(["kill", "-9", str(ended)], check=True)
    os.waitpid(ended, 0)
    sampler = ResourceSampler(gpu=gpu)
    readings = sampler.sample([alive, ended])
    assert set(readings) == {alive}
    assert readings[alive].gpu_memory_bytes == GiB


@fake_only
def test_unsupported_fields_are_absent_and_the_rest_reported(nvml):
    gpu = nvml("not_supported")
    reader, _ = _gauges(gpu, {})
    found = points(reader)
    assert len(found[names.HW_GPU_MEMORY_USAGE]) == 2 and len(found[names.HW_GPU_MEMORY_LIMIT]) == 2
    for name in (names.HW_GPU_UTILIZATION, names.HW_TEMPERATURE, names.HW_POWER):
        assert not found.get(name)


@fake_only
def test_a_lost_gpu_is_reported_once_and_left_out(nvml, rqa_log, tmp_path, monkeypatch):
    lost = tmp_path / "gpu1-lost"
    monkeypatch.setenv("FAKE_NVML_LOST_FILE", str(lost))
    gpu = nvml()
    reader, _ = _gauges(gpu, {})
    assert len(points(reader)[names.HW_GPU_UTILIZATION]) == 2
    lost.touch()  # GPU 1 falls off the bus
    for _ in range(3):
        found = points(reader)
        assert [attrs[names.HW_ID][-1] for _, attrs in found[names.HW_GPU_UTILIZATION]] == ["0"]
    warnings = [r for r in rqa_log if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "GPU 1" in warnings[0].getMessage()
    lost.unlink()  # NVML does not bring a lost GPU back without a reset: it stays out
    assert [d.index for d in gpu.devices()] == [0]


@fake_only
def test_once_every_gpu_is_lost_gpu_memory_is_unknown_not_zero(nvml, sleepers, tmp_path, monkeypatch):
    (pid,) = sleepers(1)
    lost = tmp_path / "lost"
    monkeypatch.setenv("FAKE_NVML_LOST_FILE", str(lost))
    gpu = nvml(processes=f"0:{pid}:{GiB}")
    reader, gauges = _gauges(gpu, {pid: "alpha"})
    assert points(reader)[names.STRATEGY_GPU_MEMORY_USAGE] == [(GiB, {names.STRATEGY: "alpha"})]
    lost.write_text("all")
    found = points(reader)
    assert not found.get(names.STRATEGY_GPU_MEMORY_USAGE) and not found.get(names.PROCESS_GPU_MEMORY_USAGE)
    assert not found.get(names.HW_GPU_UTILIZATION)
    assert found[names.STRATEGY_MEMORY_USAGE]  # the rest goes on
    assert gauges.last.processes[pid].gpu_memory_bytes is None


@fake_only
def test_a_gpu_lost_from_the_start_leaves_the_others(nvml, rqa_log):
    gpu = nvml("gpu_lost")
    assert [d.index for d in gpu.devices()] == [0]
    assert gpu.process_memory() == {}
    assert len([r for r in rqa_log if r.levelno == logging.WARNING]) == 1


@fake_only
def test_no_driver_or_no_gpu_means_no_sampler(nvml):
    assert nvml("driver_not_loaded") is None
    assert nvml("no_gpu") is None


_PROBE = """
import json, logging, sys
from rqa_otel.resources import GpuSampler
gpu = GpuSampler.open()
print(json.dumps({"memory": gpu.process_memory() if gpu else None,
                  "version": gpu.process_query_version if gpu else None}))
"""


@fake_only
@pytest.mark.parametrize(("variant", "version"), [("no_v3", "v2"), ("v1_only", "v1")])
def test_older_drivers_fall_back_to_v2_then_v1(tmp_path, variant, version):
    """Drivers export only the older process queries: the library on
    LD_LIBRARY_PATH in a fresh process lacks the newer symbols."""
    directory = fake_nvml.build(tmp_path, variant)
    environment = dict(os.environ, LD_LIBRARY_PATH=str(directory), FAKE_NVML_SCENARIO="normal",
                       FAKE_NVML_PROCESSES=f"0:4242:{GiB},1:4242:{GiB},1:4343:7")
    completed = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=environment, check=True)
    answer = json.loads(completed.stdout)
    assert answer == {"memory": {"4242": 2 * GiB, "4343": 7}, "version": version}


@pytest.mark.skipif(REAL_GPU, reason="NVML is present here")
def test_without_nvml_setup_says_so_once_and_exports_no_gpu_gauge(tmp_path):
    """No libnvidia-ml at all (the fake not on the library path): setup() and
    two collections work, one info line explains the missing GPU gauges."""
    script = (
        "import rqa_otel, sys\n"
        f"t = rqa_otel.setup(strategy='s', set_global=False, overrides={{'export.directory': {str(tmp_path)!r}, "
        "'resources.host': True, 'export.logs': 'none'})\n"
        "t.force_flush(); t.resource_gauges.refresh(); t.force_flush(); t.shutdown()\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_NVML", "LD_LIBRARY_PATH"))}
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment)
    assert completed.returncode == 0, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if "GPU" in line]
    assert len(lines) == 1 and lines[0].startswith("rqa-otel: INFO NVML is not available"), completed.stderr
    exported = (tmp_path / "metrics.jsonl").read_text()
    assert names.SYSTEM_CPU_UTILIZATION in exported and names.PROCESS_MEMORY_USAGE in exported
    assert "hw.gpu" not in exported and "gpu.memory" not in exported


def test_setup_does_not_wait_for_nvml_which_opens_in_the_background(fake_library, tmp_path, monkeypatch):
    """nvmlInit() may take seconds without the persistence daemon: setup(),
    which runs in the strategy's thread, must not wait for it; NVML opens on
    a background thread and the first collection reads the GPUs."""
    import pynvml

    import rqa_otel

    monkeypatch.setenv("FAKE_NVML_SCENARIO", "normal")
    monkeypatch.setenv("FAKE_NVML_PROCESSES", f"0:{os.getpid()}:{GiB}")
    if not REAL_GPU:
        monkeypatch.setenv("FAKE_NVML_INIT_DELAY_MS", "1500")
    opened_before = pynvml._nvmlLib_refcount
    started = time.monotonic()
    telemetry = rqa_otel.setup(
        strategy="gpu_user", set_global=False,
        overrides={"export.directory": str(tmp_path), "export.logs": "none", "export.traces": "none"},
    )
    try:
        if not REAL_GPU:
            assert time.monotonic() - started < 1.0, "setup() waited for nvmlInit"
        telemetry.force_flush()  # the collection waits for the opening thread
        assert pynvml._nvmlLib_refcount == opened_before + 1
    finally:
        telemetry.shutdown()
    assert pynvml._nvmlLib_refcount == opened_before
    if not REAL_GPU:
        exported = {
            attributes(point)[names.STRATEGY]: int(point["asInt"])
            for metric in items(tmp_path / "metrics.jsonl", "resourceMetrics", "scopeMetrics", "metrics")
            if metric["name"] == names.STRATEGY_GPU_MEMORY_USAGE
            for point in metric["sum"]["dataPoints"]
        }
        assert exported == {"gpu_user": GiB}
