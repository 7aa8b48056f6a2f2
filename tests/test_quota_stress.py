"""The design's stress test: 100 strategies at once, as real processes.

One real ``rqa-otel agent`` (interval 0.5 s) watches 100 forked strategy
processes (tests/strategy_fleet.py), each with its own quota set through
``ResourceManager.set_strategy_quota`` (its RSS + 40 MiB; CPU 2 to 100 % of a
core, see strategy_fleet.py). Eight then allocate 150 MiB and three burn a
core; the other 89 idle.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

from agent_process import Fleet, alert_spans, last_counter_values, log_events, start_agent, status, stop, wait_until

INTERVAL_S = 0.5
COUNT = 100
POOL_MAX = 7
MEMORY_BREACHERS = 8
CPU_BREACHERS = 3


def test_hundred_strategies_breaches_detected_once_each_and_max_workers_holds(tmp_path):
    run_dir, export_dir = tmp_path / "run", tmp_path / "telemetry"
    agent = start_agent(run_dir, export_dir, INTERVAL_S)
    fleet = Fleet(run_dir, count=COUNT, memory_breachers=MEMORY_BREACHERS, cpu_breachers=CPU_BREACHERS,
                  pool_max=POOL_MAX)
    try:
        # Every child has raced for the pool's worker slots and for its own.
        wait_until(lambda: len(fleet.events("race")) == 2 * COUNT, 30, "every child to race for its workers")
        children = {line["strategy"]: line for line in fleet.events("child")}
        assert len(children) == COUNT
        pool = [line for line in fleet.events("race") if line["strategy"] == "pool"]
        assert sum(line["admitted"] for line in pool) == POOL_MAX, "max_workers of the shared pool let too many in"
        own = [line for line in fleet.events("race") if line["strategy"] != "pool"]
        assert all(line["admitted"] == 1 and line["refused"] == 1 for line in own), own

        # The agent sees all 100 and has smoothed their idle readings.
        wait_until(lambda: status(run_dir).get("processes") == COUNT, 15, "the agent to watch 100 processes")
        settled = status(run_dir)["cycle"] + 3
        wait_until(lambda: status(run_dir).get("cycle", 0) >= settled, 10, "three more collections")
        assert status(run_dir)["breaches"] == [], "an idle strategy was reported in breach"

        breachers = {s: line for s, line in children.items() if line["role"] in ("memory", "cpu")}
        for line in breachers.values():
            os.kill(line["pid"], signal.SIGUSR1)
        wait_until(lambda: len(fleet.events("overusing")) == len(breachers), 10, "the breachers to overuse")
        overusing_since = status(run_dir)["cycle"]  # the last collection finished when all were overusing (or later)

        detected: dict[str, int] = {}

        def all_detected() -> bool:
            current = status(run_dir)
            for breach in current.get("breaches", []):
                detected.setdefault(breach["strategy"], current["cycle"])
            return set(detected) >= set(breachers)

        wait_until(all_detected, 10, "every breach to be detected", poll_s=0.01)
        # The collection running when the last one started overusing may
        # have missed it; two full collections after that must catch each.
        late = {s: cycle - overusing_since for s, cycle in detected.items() if cycle - overusing_since > 3}
        assert not late, f"breaches detected later than 2 collections after the overuse began: {late}"
        assert set(detected) == set(breachers), f"strategies in breach that stayed under quota: {set(detected) - set(breachers)}"

        # Hold the breach for 4 more collections: still one alert each.
        held = status(run_dir)["cycle"] + 4
        wait_until(lambda: status(run_dir).get("cycle", 0) >= held, 10, "four collections in breach")
        for line in breachers.values():
            os.kill(line["pid"], signal.SIGUSR2)
        wait_until(lambda: status(run_dir).get("breaches") == [], 15, "every breach to recover")
    finally:
        fleet.stop()
        stop(agent)

    breaches = alert_spans(export_dir, "quota_breach")
    per_strategy = Counter(span["rqa.strategy"] for span in breaches)
    expected_resource = {s: line["role"] for s, line in breachers.items()}
    assert dict(per_strategy) == {s: 1 for s in breachers}, "not exactly one alert per breach episode"
    assert {span["rqa.strategy"]: span["rqa.quota.resource"] for span in breaches} == expected_resource
    recoveries = log_events(export_dir, "rqa.quota.recovered")
    assert Counter(r["rqa.strategy"] for r in recoveries) == Counter(set(breachers))
    assert {r["rqa.quota.episode_id"] for r in recoveries} == {s["rqa.quota.episode_id"] for s in breaches}
    counted = last_counter_values(export_dir, "rqa.quota.breaches")
    assert {dict(key)["rqa.strategy"]: value for key, value in counted.items()} == {s: 1 for s in breachers}
    recovered = last_counter_values(export_dir, "rqa.quota.recoveries")
    assert sum(recovered.values()) == len(breachers)
