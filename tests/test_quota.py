"""ResourceManager and the run-directory registry, in one process.

Readings are given to ``observe`` directly here (StrategyUsage, what the
sampler produces), so each test states the usage it means; the real
sampler with real processes is exercised by test_quota_stress.py and
test_agent.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backends import free_port
from otlp_files import attributes, log_records, metrics, spans
from rqa_otel import setup
from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import SettingsError
from rqa_otel.config.quotas import Quota
from rqa_otel.resources.quota import MIB, QuotaExceeded, ResourceManager
from rqa_otel.resources.registry import Registry
from rqa_otel.resources.sampling import StrategyUsage


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "run")


def usage(strategy: str, *, cpu: float = 0.0, memory_mib: float = 0.0) -> dict[str, StrategyUsage]:
    return {strategy: StrategyUsage(strategy, [os.getpid()], cpu_percent=cpu, rss_bytes=int(memory_mib * MIB))}


# Telemetry of a test's own ResourceManager only: no registration in a run
# directory, no resource sampler.
QUIET = {"registry.enabled": False, "resources.enabled": False}


def exported(tmp_path):
    directory = tmp_path / "telemetry"
    alerts = [attributes(s) for s in spans(directory / "traces.jsonl", missing_ok=True) if s["name"] == "rqa.alert"]
    # Events carry the record's EventName field, never the deprecated event.name attribute.
    records = list(log_records(directory / "logs.jsonl", missing_ok=True))
    assert not [r for r in records if "event.name" in attributes(r)]
    events = [{**attributes(r), "eventName": r["eventName"]} for r in records if "eventName" in r]
    counters: dict[str, float] = {}
    for m in metrics(directory / "metrics.jsonl", missing_ok=True):
        if m["name"] in ("rqa.quota.breaches", "rqa.quota.recoveries"):
            counters[m["name"]] = sum(float(p["asInt"]) for p in m["sum"]["dataPoints"])
    return alerts, events, counters


# --- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"cpu": -5}, "quota s.cpu_percent = -5: expected a number > 0"),
        ({"cpu": 100 * (os.cpu_count() or 1) + 1}, f"this host has {os.cpu_count()} cores, so at most"),
        ({"memory": 0}, "quota s.memory_mib = 0: expected a number > 0"),
        ({"gpu_memory": float("nan")}, "quota s.gpu_memory_mib = nan"),
        ({"max_workers": -1}, "quota s.max_workers = -1: expected an integer >= 0"),
        ({"max_workers": 1.5}, "quota s.max_workers = 1.5"),
    ],
)
def test_a_bad_quota_is_refused_by_name_and_changes_nothing(registry, arguments, message):
    manager = ResourceManager(registry=registry)
    manager.set_strategy_quota("s", cpu=50, max_workers=2)
    before = registry.quotas_path.read_bytes()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        manager.set_strategy_quota("s", **arguments)
    assert registry.quotas_path.read_bytes() == before
    assert manager.quota("s") == Quota(cpu_percent=50, max_workers=2)


def test_unregistering_an_unknown_strategy_or_worker_is_a_no_op(registry):
    manager = ResourceManager(registry=registry)
    assert manager.unregister_strategy_worker("never-seen", "w1") is False
    manager.set_strategy_quota("s", max_workers=1)
    manager.register_strategy_worker("s", "w1")
    assert manager.unregister_strategy_worker("s", "other") is False
    assert list(registry.workers("s")) == ["w1"]
    assert not (registry.directory / "workers" / "never-seen.json").exists()


def test_a_damaged_workers_file_is_read_as_empty_and_rewritten(registry):
    manager = ResourceManager(registry=registry)
    manager.set_strategy_quota("s", max_workers=1)
    registry.ensure()
    (registry.directory / "workers" / "s.json").write_text('{"w0": "not a worker", "w1": {"pid": 1')
    assert manager.register_strategy_worker("s", "w2") == 1
    assert list(json.loads((registry.directory / "workers" / "s.json").read_text())) == ["w2"]


def test_quotas_from_settings_are_validated_and_a_reload_is_all_or_nothing(tmp_path, registry):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("quotas:\n  mean_rev:\n    cpu_percent: 150\n    memory_mib: 2048\n    max_workers: 4\n")
    settings = load_settings(settings_file)
    assert settings.quotas["mean_rev"] == Quota(cpu_percent=150, memory_mib=2048, max_workers=4)
    settings_file.write_text("quotas:\n  mean_rev:\n    cpu_percent: 150\n    max_worker: 4\n")
    with pytest.raises(SettingsError, match="quotas .*quota mean_rev: unknown key.*max_worker.*allowed: cpu_percent"):
        load_settings(settings_file)

    manager = ResourceManager(registry=registry, quotas=settings.quotas)
    with pytest.raises(ValueError, match="quota b.memory_mib = -1"):
        manager.apply_quotas({"a": {"cpu_percent": 10}, "b": {"memory_mib": -1}})
    assert manager.quotas() == {"mean_rev": Quota(cpu_percent=150, memory_mib=2048, max_workers=4)}
    manager.apply_quotas({"a": {"cpu_percent": 10}})
    assert manager.quotas() == {"a": Quota(cpu_percent=10)}



def test_a_manager_built_from_telemetry_follows_its_settings_reloads_and_run_time_quotas_still_win(file_telemetry, tmp_path, registry):
    """A strategy process's manager: quotas change with telemetry.live_settings, not at a restart."""
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("quotas:\n  s: {memory_mib: 100}\n  t: {memory_mib: 100}\n")
    handle = file_telemetry(settings_file, directory=tmp_path / "telemetry", overrides=QUIET)
    manager = ResourceManager(handle, registry=registry)
    pinned = ResourceManager(handle, registry=registry, quotas={"s": {"memory_mib": 7}})  # explicit: not followed
    manager.set_strategy_quota("t", memory=500)  # run time, quotas.json
    settings_file.write_text("quotas:\n  s: {memory_mib: 50}\n  t: {memory_mib: 50}\n")
    assert handle.live_settings.reload().outcome == "changed"
    assert manager.quota("s") == Quota(memory_mib=50) and manager.quota("t") == Quota(memory_mib=500)
    assert pinned.quota("s") == Quota(memory_mib=7)
    manager.observe(usage("s", memory_mib=120))  # smoothed 60: over the new 50, under the old 100
    assert manager.check_quota("s").levels == {"memory": "breach"}

    settings_file.write_text("quotas:\n  s: {memory_mib: -3}\n")  # invalid: nothing changes
    result = handle.live_settings.reload()
    assert result.outcome == "failed" and "quota s.memory_mib = -3" in result.error
    assert manager.quotas() == {"s": Quota(memory_mib=50), "t": Quota(memory_mib=500)}


# --- workers --------------------------------------------------------------------


def test_max_workers_holds_when_threads_race(registry):
    manager = ResourceManager(registry=registry)
    manager.set_strategy_quota("s", max_workers=3)
    barrier, results = threading.Barrier(16), []

    def claim(n: int) -> None:
        barrier.wait()
        try:
            manager.register_strategy_worker("s", f"w{n}")
            results.append("admitted")
        except QuotaExceeded as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("admitted") == 3
    assert all("strategy 's' already has 3 of max_workers=3 workers registered" in r for r in results if r != "admitted")
    assert len(registry.workers("s")) == 3


def test_the_worker_block_registers_and_always_unregisters(registry):
    manager = ResourceManager(registry=registry)
    manager.set_strategy_quota("s", max_workers=1)
    with pytest.raises(RuntimeError, match="boom"):
        with manager.worker("s", "w1"):
            assert manager.check_quota("s").workers == 1
            with pytest.raises(QuotaExceeded) as refused:
                with manager.worker("s", "w2"):
                    pass
            assert (refused.value.strategy, refused.value.limit, refused.value.current) == ("s", 1, 1)
            raise RuntimeError("boom")
    assert registry.workers("s") == {}
    with manager.worker("s") as worker_id:  # the slot is free again
        assert list(registry.workers("s")) == [worker_id]


def test_a_worker_whose_process_was_killed_frees_its_slot(registry):
    manager = ResourceManager(registry=registry)
    manager.set_strategy_quota("s", max_workers=1)
    code = (
        "import sys, time; from rqa_otel.resources.quota import ResourceManager; "
        "from rqa_otel.resources.registry import Registry; "
        f"ResourceManager(registry=Registry({str(registry.directory)!r})).register_strategy_worker('s', 'crashed'); "
        "print('in', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "in"
        with pytest.raises(QuotaExceeded):
            manager.register_strategy_worker("s", "mine")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert manager.register_strategy_worker("s", "mine") == 1
    assert list(registry.workers("s")) == ["mine"]


# --- episodes -------------------------------------------------------------------


def test_one_alert_per_breach_episode_one_recovery_event_and_counters_agree(file_telemetry, tmp_path, registry):
    handle = file_telemetry(directory=tmp_path / "telemetry", overrides=QUIET)
    manager = ResourceManager(handle, registry=registry, quotas={"s": {"memory_mib": 100}, "calm": {"memory_mib": 100}})
    readings = [50, 250, 250, 95, 250, 0, 0, 0, 0]  # one episode; 95 is smoothed away
    readings += [300, 300, 0, 0, 0, 0]  # a second one
    levels = []
    for index, mib in enumerate(readings):
        if index == 2:
            assert not manager.check_quota("s") and manager.check_quota("calm")
        manager.observe({**usage("s", memory_mib=mib), **usage("calm", memory_mib=40)})
        levels.append(manager.check_quota("s").levels["memory"])
    # Smoothed (EMA 0.5): 25, 137, 194, 144, 197, 98 (still above 90 %: breach), 49 ...
    assert levels == ["ok", "breach", "breach", "breach", "breach", "breach", "ok", "ok", "ok",
                      "breach", "breach", "breach", "ok", "ok", "ok"]
    handle.shutdown()

    spans, events, counters = exported(tmp_path)
    assert [(s["rqa.alert.name"], s["rqa.strategy"], s["rqa.quota.resource"], s["rqa.alert.severity"]) for s in spans] == [
        ("quota_breach", "s", "memory", "critical")] * 2
    recoveries = [e for e in events if e["eventName"] == "rqa.quota.recovered"]
    assert [e["rqa.quota.episode_id"] for e in recoveries] == [s["rqa.quota.episode_id"] for s in spans]
    assert counters == {"rqa.quota.breaches": 2, "rqa.quota.recoveries": 2}
    assert "exceeds its quota of 100 MiB" in spans[0]["rqa.alert.message"]


def test_readings_hovering_at_the_quota_do_not_flap(file_telemetry, tmp_path, registry):
    handle = file_telemetry(directory=tmp_path / "telemetry", overrides=QUIET)
    manager = ResourceManager(handle, registry=registry, quotas={"s": {"cpu_percent": 100}})
    for percent in [130, 90] * 20:  # unsmoothed, this would be 20 episodes
        manager.observe(usage("s", cpu=percent))
    handle.shutdown()
    spans, _, counters = exported(tmp_path)
    assert len(spans) == 1 and counters == {"rqa.quota.breaches": 1}


def test_warning_at_80_percent_is_an_event_not_an_alert(file_telemetry, tmp_path, registry):
    handle = file_telemetry(directory=tmp_path / "telemetry", overrides=QUIET)
    manager = ResourceManager(handle, registry=registry, quotas={"s": {"cpu_percent": 50}})
    for _ in range(6):
        manager.observe(usage("s", cpu=45))  # converges to 90 % of the quota
    assert manager.check_quota("s").levels == {"cpu": "warning"} and manager.check_quota("s")
    handle.shutdown()
    spans, events, _ = exported(tmp_path)
    assert spans == []
    assert [e["eventName"] for e in events] == ["rqa.quota.warning"]


def test_a_restored_manager_continues_the_episode_without_a_second_alert(file_telemetry, tmp_path, registry):
    first = ResourceManager(registry=registry, quotas={"s": {"memory_mib": 100}})
    first.observe(usage("s", memory_mib=400))
    saved = json.loads(json.dumps(first.state()))  # what the agent writes to disk
    [episode] = first.open_episodes().values()

    handle = file_telemetry(directory=tmp_path / "telemetry", overrides=QUIET)
    second = ResourceManager(handle, registry=registry, quotas={"s": {"memory_mib": 100}})
    second.restore(saved)
    assert second.open_episodes()[("s", "memory")]["episode_id"] == episode["episode_id"]
    for mib in (400, 0, 0, 0):
        second.observe(usage("s", memory_mib=mib))
    handle.shutdown()
    spans, events, _ = exported(tmp_path)
    assert spans == []
    assert [(e["eventName"], e["rqa.quota.episode_id"]) for e in events] == [("rqa.quota.recovered", episode["episode_id"])]


# --- registry ---------------------------------------------------------------------


def test_setup_registers_its_process_and_shutdown_removes_it(tmp_path):
    run_dir = tmp_path / "run"
    handle = setup(set_global=False, strategy="mean_rev",
                   overrides={"registry.dir": str(run_dir), "export.traces": "none", "export.metrics": "none",
                              "export.logs": "none"})
    # set_global=False builds a handle without registering (tests, second pipelines); setup() registers:
    assert Registry(run_dir).processes() == []
    handle.shutdown()
    code = (
        "import rqa_otel, json; from rqa_otel.resources.registry import Registry; "
        f"t = rqa_otel.setup(strategy='mean_rev', overrides={{'registry.dir': {str(run_dir)!r}, 'export.traces': 'none', "
        "'export.metrics': 'none', 'export.logs': 'none'}); "
        f"print(json.dumps([vars(e) for e in Registry({str(run_dir)!r}).processes()])); t.shutdown(); "
        f"print(len(Registry({str(run_dir)!r}).processes()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    [entry] = json.loads(out[0])
    assert entry["strategy"] == "mean_rev" and entry["service"] == "rqa-strategy" and entry["start"] > 0
    assert out[1] == "0"


def test_an_unwritable_run_directory_costs_setup_one_warning(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    code = (
        "import rqa_otel; "
        f"t = rqa_otel.setup(overrides={{'registry.dir': {str(blocker / 'run')!r}, 'export.traces': 'none', "
        "'export.metrics': 'none', 'export.logs': 'none'}); t.alert('still_works'); t.shutdown(); print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok"
    warnings = [line for line in result.stderr.splitlines() if "run directory" in line]
    assert len(warnings) == 1 and "the host agent will not watch it" in warnings[0]


def test_stale_entries_dead_or_reused_pids_are_removed(registry):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        registry.register_process("dies", "svc", pid=child.pid)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    mine = registry.register_process("alive", "svc")
    # This pid, but a different start time: a reused pid's leftover.
    reused = json.loads((registry.directory / "processes" / f"{os.getpid()}.json").read_text())
    (registry.directory / "processes" / "1.json").write_text(json.dumps({**reused, "pid": 1, "start": 1}))
    assert registry.processes() == [mine]
    assert sorted(os.listdir(registry.directory / "processes")) == [f"{os.getpid()}.json"]


def test_registry_files_are_written_atomically(registry):
    """A reader never sees half a file: os.replace of a complete temporary file."""
    manager = ResourceManager(registry=registry)
    stop, seen = threading.Event(), []

    def read_all_the_time() -> None:
        while not stop.is_set():
            text = registry.quotas_path.read_text() if registry.quotas_path.exists() else "{}"
            seen.append(json.loads(text))  # raises on a torn file

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        for n in range(200):
            manager.set_strategy_quota(f"s{n}", cpu=10)
    finally:
        stop.set()
        reader.join()
    assert len(json.loads(registry.quotas_path.read_text())) == 200 and seen
    assert [p.name for p in Path(registry.directory).iterdir() if p.name.endswith(".tmp")] == []


def test_a_forked_child_exiting_leaves_its_parents_registration(tmp_path):
    run_dir = tmp_path / "run"
    code = (
        "import os, rqa_otel; from rqa_otel.resources.registry import Registry; "
        f"t = rqa_otel.setup(strategy='forks', overrides={{'registry.dir': {str(run_dir)!r}, 'export.traces': 'none', "
        "'export.metrics': 'none', 'export.logs': 'none'}); "
        "pid = os.fork()\n"
        "if pid == 0:\n    t.shutdown(); os._exit(0)\n"
        f"os.waitpid(pid, 0); print(len(Registry({str(run_dir)!r}).processes()))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1"


def test_a_multiprocessing_worker_of_a_strategy_is_registered_under_its_strategy(tmp_path):
    run_dir = tmp_path / "run"
    code = (
        "import multiprocessing as mp, rqa_otel; from rqa_otel.resources.registry import Registry\n"
        "def count(_):\n"
        f"    return sorted((e.strategy, e.pid == __import__('os').getpid()) for e in Registry({str(run_dir)!r}).processes())\n"
        "if __name__ == '__main__':\n"
        f"    t = rqa_otel.setup(strategy='pooled', overrides={{'registry.dir': {str(run_dir)!r}, 'export.traces': 'none', "
        "'export.metrics': 'none', 'export.logs': 'none'})\n"
        "    with mp.get_context('fork').Pool(1) as pool:\n"
        "        print(pool.map(count, [0])[0])\n"
        "    t.shutdown()\n"
    )
    script = tmp_path / "pooled.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[('pooled', False), ('pooled', True)]"


def test_a_strategy_process_is_not_ready_while_the_agent_reports_it_in_breach(tmp_path):
    registry = Registry(tmp_path / "run").ensure()
    code = (
        "import json, sys, urllib.request, rqa_otel\n"
        f"t = rqa_otel.setup(strategy='hungry', overrides={{'registry.dir': {str(registry.directory)!r}, "
        "'export.traces': 'none', 'export.metrics': 'none', 'export.logs': 'none', 'ops.http_port': %d})\n"
        "def ready():\n"
        "    try:\n"
        "        return urllib.request.urlopen('http://%%s:%%d/ready' %% t.ops_address).status, ''\n"
        "    except urllib.error.HTTPError as e:\n"
        "        return e.code, json.loads(e.read())['checks']['quotas']['reason']\n"
        "print(ready()); sys.stdout.flush(); sys.stdin.readline(); print(ready()); t.shutdown()\n"
    ) % free_port()
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "(200, '')"
    registry.write_json(registry.agent_status_path, {"at": time.time(), "interval_s": 1, "breaches": [
        {"strategy": "hungry", "resource": "memory"}, {"strategy": "other", "resource": "cpu"}]})
    out, _ = child.communicate("go\n", timeout=30)
    assert out.strip() == "(503, 'strategy hungry is over its memory quota (host agent)')"


def test_quota_keeps_its_old_import_path():
    from rqa_otel.resources import quota

    assert quota.Quota is Quota
