"""The host agent as a user runs it: ``rqa-otel agent --http-port``, a real
supervisor and worker, real strategy processes, kill -9."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backends import free_port, http_request

from test_deploy_configs import _load_yaml
from config_saves import rename_save
from agent_process import Fleet, alert_spans, log_events, start_agent, status, stop, wait_until
from rqa_otel.agent.supervisor import restart_delay
from rqa_otel.resources.registry import process_start

INTERVAL_S = 0.3


def health(port: int) -> tuple[int, dict]:
    try:
        code, body = http_request("GET", f"http://127.0.0.1:{port}/health", timeout=2)
    except OSError:
        return 0, {}
    return code, json.loads(body)


def test_kill_9_of_the_worker_it_is_back_within_5_s_with_its_state_and_no_strategy_is_touched(tmp_path):
    run_dir, export_dir, port = tmp_path / "run", tmp_path / "telemetry", free_port()
    agent = start_agent(run_dir, export_dir, INTERVAL_S, http_port=port)
    fleet = Fleet(run_dir, count=3, memory_breachers=1)
    try:
        wait_until(lambda: len(fleet.events("race")) == 6, 20, "the strategies to register")
        children = {line["strategy"]: line for line in fleet.events("child")}
        starts = {line["pid"]: process_start(line["pid"]) for line in children.values()}
        code, body = wait_until(lambda: (h := health(port))[0] == 200 and h[1]["processes"] == 3 and h, 20,
                                "a healthy agent watching 3 processes")
        first_worker = body["worker_pid"]
        assert first_worker and body["recovered"] == {"tracks": 0, "episodes": 0}

        # An open breach episode, already alerted, before the crash.
        os.kill(children["s000"]["pid"], signal.SIGUSR1)
        wait_until(lambda: status(run_dir).get("breaches"), 10, "the breach of s000")
        wait_until(lambda: alert_spans(export_dir, "quota_breach"), 10, "its alert to be exported")
        code, ready = http_request("GET", f"http://127.0.0.1:{port}/ready", timeout=2)
        assert code == 503 and "s000/memory" in json.loads(ready)["checks"]["quotas"]["reason"]

        os.kill(first_worker, signal.SIGKILL)
        killed_at = time.monotonic()
        code, body = wait_until(
            lambda: (h := health(port))[0] == 200 and h[1]["worker_pid"] not in (None, first_worker) and h,
            5, "a new worker reporting fresh collections",
        )
        assert time.monotonic() - killed_at < 5
        assert body["restarts"] == 1 and body["last_worker_exit"]["returncode"] == -signal.SIGKILL
        assert body["last_collection"] < 3 * INTERVAL_S
        # Registrations and quota state came back from disk.
        assert body["processes"] == 3
        assert body["recovered"]["episodes"] == 1 and body["recovered"]["tracks"] >= 3
        # The strategies did not notice: same processes, still running.
        assert {pid: process_start(pid) for pid in starts} == starts

        os.kill(children["s000"]["pid"], signal.SIGUSR2)
        wait_until(lambda: status(run_dir).get("breaches") == [] and status(run_dir)["pid"] != first_worker, 10,
                   "the breach to recover under the new worker")
        metrics_code, metrics = http_request("GET", f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert metrics_code == 200
        assert re.search(rb'^rqa_strategy_memory_usage_bytes{.*rqa_strategy="s000".*} ', metrics, re.M), metrics[:2000]
    finally:
        fleet.stop()
        stop(agent)

    # One episode across the crash: one alert, one recovery, the same id.
    [alert] = alert_spans(export_dir, "quota_breach")
    [recovery] = log_events(export_dir, "rqa.quota.recovered")
    assert alert["rqa.strategy"] == recovery["rqa.strategy"] == "s000"
    assert alert["rqa.quota.episode_id"] == recovery["rqa.quota.episode_id"]


def test_a_second_agent_on_the_same_run_directory_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    agent = start_agent(run_dir, tmp_path / "telemetry", 1.0)
    try:
        wait_until(lambda: status(run_dir).get("cycle"), 20, "the first agent to collect")
        second = subprocess.run(
            [sys.executable, "-m", "rqa_otel.cli", "agent", "--run-dir", str(run_dir)],
            capture_output=True, text=True, timeout=30,
        )
        assert second.returncode == 1
        assert f"already watches the run directory {run_dir}" in second.stderr
        assert f"pid {agent.pid}" in second.stderr
    finally:
        stop(agent)


def test_a_worker_that_keeps_dying_is_restarted_with_growing_backoff():
    """The supervisor's schedule (the kill -9 test above covers a single death)."""
    assert [restart_delay(n, 30) for n in range(8)] == [0, 0, 0.5, 1, 2, 4, 8, 16]
    assert restart_delay(20, 30) == 30


@pytest.mark.parametrize(
    "argument, message",
    [("--interval=0", "expected a number of seconds > 0"), ("--interval=abc", "expected a number of seconds > 0"),
     ("--http-port=70000", "expected a TCP port, 0 (off) to 65535"), ("--http-port=-1", "expected a TCP port")],
)
def test_agent_rejects_a_bad_argument(argument, message):
    result = subprocess.run([sys.executable, "-m", "rqa_otel.cli", "agent", argument], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr


# --- what keeps the supervisor itself running ------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_systemd_unit_restarts_the_agent_always():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(ROOT / "deploy" / "rqa-otel-agent.service")
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert " agent --http-port " in service["ExecStart"]
    verify = shutil.which("systemd-analyze")
    if verify:  # the unit's syntax; the ExecStart binary need not exist here
        result = subprocess.run([verify, "verify", str(ROOT / "deploy" / "rqa-otel-agent.service")],
                                capture_output=True, text=True, timeout=60)
        problems = [line for line in (result.stdout + result.stderr).splitlines()
                    if line.strip() and "is not executable" not in line and "Failed to prepare filename" not in line]
        assert not problems, problems


def test_compose_runs_the_agent_with_a_restart_policy_on_the_host_pid_namespace():
    compose = _load_yaml(ROOT / "docker-compose.yml")
    agent = compose["services"]["rqa-agent"]
    assert agent["restart"] == "unless-stopped" and agent["pid"] == "host"
    mounted = [volume.split(":")[1] for volume in agent["volumes"]]
    run_dir = agent["environment"]["RQA_REGISTRY__DIR"]
    assert any(run_dir.startswith(target + "/") for target in mounted), "the run directory must be mounted from the host"
    dockerfile = (ROOT / agent["build"]["dockerfile"]).read_text()
    assert '"--http-port", "9464"' in dockerfile
    assert any(str(port).endswith(":9464") for port in agent["ports"])
    assert "9464/health" in " ".join(agent["healthcheck"]["test"])


def test_prometheus_scrapes_the_agents_quota_and_resource_gauges(tmp_path, prometheus_factory, promtool):
    run_dir, port = tmp_path / "run", free_port()
    agent = start_agent(run_dir, tmp_path / "telemetry", INTERVAL_S, http_port=port)
    fleet = Fleet(run_dir, count=2)
    try:
        wait_until(lambda: status(run_dir).get("processes") == 2, 20, "the agent to watch the fleet")
        code, text = http_request("GET", f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert code == 200
        ok, output = promtool(text.decode())
        assert ok, output
        prometheus = prometheus_factory([f"127.0.0.1:{port}"], scrape_interval="1s")
        prometheus.wait_for_target_up(timeout=30)
        # Each fleet child holds one worker of its own strategy (max_workers 1).
        workers = prometheus.query('rqa_strategy_quota_usage{rqa_strategy="s001",rqa_quota_resource="workers"}')
        limit = prometheus.query('rqa_strategy_quota_limit{rqa_strategy="s001",rqa_quota_resource="workers"}')
        assert float(workers[0]["value"][1]) == float(limit[0]["value"][1]) == 1.0
        memory = prometheus.query('rqa_strategy_memory_usage_bytes{rqa_strategy="s000"}')
        assert float(memory[0]["value"][1]) > 10 * 2**20
    finally:
        fleet.stop()
        stop(agent)


def test_the_agent_applies_quotas_from_a_rename_saved_settings_file_live_and_keeps_them_over_a_broken_one(tmp_path):
    run_dir, export_dir, settings, port = tmp_path / "run", tmp_path / "telemetry", tmp_path / "settings.yaml", free_port()
    settings.write_text("quotas:\n  reloaded: {memory_mib: 100000}\n")
    strategy = subprocess.Popen(
        [sys.executable, "-c",
         "import rqa_otel, time; rqa_otel.setup(strategy='reloaded', overrides={'registry.dir': %r, "
         "'export.traces': 'none', 'export.metrics': 'none', 'export.logs': 'none'}); print('up', flush=True); "
         "time.sleep(60)" % str(run_dir)],
        stdout=subprocess.PIPE, text=True,
    )
    agent = start_agent(run_dir, export_dir, INTERVAL_S, http_port=port, settings=settings)
    try:
        assert strategy.stdout.readline().strip() == "up"
        worker = wait_until(lambda: status(run_dir).get("processes") == 1 and status(run_dir)["pid"], 20,
                            "the agent to watch the strategy")
        assert status(run_dir)["breaches"] == []

        rename_save(settings, "quotas:\n  reloaded: {memory_mib: 1}\n")  # vim's save: no event on the file itself
        breaches = wait_until(lambda: status(run_dir).get("breaches"), 10, "the breach under the new quota")
        assert [(b["strategy"], b["resource"]) for b in breaches] == [("reloaded", "memory")]

        rename_save(settings, "quotas:\n  reloaded: {memory_mib: 1\n")  # malformed YAML
        wait_until(lambda: 'outcome="failed"' in reloads(port), 10, "the failed reload to be counted")
        later = status(run_dir)["cycle"] + 3
        wait_until(lambda: status(run_dir).get("cycle", 0) >= later, 10, "three more collections")
        assert status(run_dir)["breaches"] == breaches  # the 1 MiB quota is still enforced

        rename_save(settings, "quotas:\n  reloaded: {memory_mib: 100000}\n")
        wait_until(lambda: status(run_dir).get("breaches") == [], 10, "the breach to end under the raised quota")
        assert status(run_dir)["pid"] == worker and agent.poll() is None  # no restart did it
    finally:
        strategy.kill()
        strategy.wait()
        stop(agent)
    assert "quotas applied from the reloaded settings: reloaded" in agent.stderr.read()
    [alert] = alert_spans(export_dir, "config_reload_failed")
    assert "previous settings stay in force" in alert["rqa.alert.message"]
    assert [a["rqa.strategy"] for a in alert_spans(export_dir, "quota_breach")] == ["reloaded"]
    assert [e["rqa.strategy"] for e in log_events(export_dir, "rqa.quota.recovered")] == ["reloaded"]


def reloads(port: int) -> str:
    """The agent's settings-reload counter lines on its /metrics."""
    _, text = http_request("GET", f"http://127.0.0.1:{port}/metrics", timeout=2)
    return "\n".join(line for line in text.decode().splitlines() if line.startswith("rqa_config_reloads"))


def test_a_hung_worker_is_killed_and_replaced(tmp_path):
    run_dir, port = tmp_path / "run", free_port()
    agent = start_agent(run_dir, tmp_path / "telemetry", INTERVAL_S, http_port=port)
    try:
        _, body = wait_until(lambda: (h := health(port))[0] == 200 and h, 20, "a healthy agent")
        hung = body["worker_pid"]
        os.kill(hung, signal.SIGSTOP)  # alive, but collecting nothing
        code, body = wait_until(lambda: (h := health(port))[0] == 503 and h, 5, "/health to notice")
        assert "last collection" in body["checks"]["collecting"]["reason"]
        _, body = wait_until(lambda: (h := health(port))[0] == 200 and h[1]["worker_pid"] != hung and h, 15,
                             "a new worker")
        assert body["last_worker_exit"]["pid"] == hung and body["last_worker_exit"]["returncode"] == -signal.SIGKILL
    finally:
        stop(agent)
