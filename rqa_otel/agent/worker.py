"""The agent's monitoring worker: one collection per interval.

Run by the supervisor as ``python -m rqa_otel.agent.worker``; it exits when
its supervisor is gone (so an orphan never keeps watching) or on SIGTERM,
flushing its telemetry.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from rqa_otel import names
from rqa_otel.resources import ResourceGauges, ResourceSampler
from rqa_otel.resources.quota import ResourceManager
from rqa_otel.resources.registry import Registry
from rqa_otel.telemetry import setup

_log = logging.getLogger("rqa_otel.agent")


class Worker:
    def __init__(self, interval_s: float, ops_port: int, restarts: int, supervisor_pid: int) -> None:
        self.interval_s = interval_s
        self.supervisor_pid = supervisor_pid
        self.telemetry = setup(
            set_global=False,
            service_name="rqa-otel-agent",
            overrides={
                # The agent is no strategy: it does not register itself, and
                # its gauges cover the registered processes, not its own pid.
                "registry.enabled": False,
                "resources.enabled": False,
                "ops.http_port": ops_port,
                "ops.http_host": "127.0.0.1",
            },
        )
        settings = self.telemetry.settings
        self.registry = Registry(settings.registry.dir or None).ensure()
        # The manager applies changed quotas through telemetry.live_settings
        # (on_change("quotas")). The agent watches its settings file whatever
        # config.watch says: quotas are what it enforces.
        self.manager = ResourceManager(self.telemetry, registry=self.registry)
        if self.telemetry.live_settings.watched_files:
            self.telemetry.live_settings.watch()
        recovered = self.registry.read_json(self.registry.agent_state_path, {}) or {}
        self.manager.restore(recovered)
        self.recovered_tracks = len(self.manager.tracks())
        self.recovered_episodes = len(self.manager.open_episodes())
        self.gauges = ResourceGauges(
            self.telemetry.meter,
            ResourceSampler(gpu="auto" if settings.resources.gpu else None),
            self._targets,
            host=True,
            max_age_s=interval_s / 2,
        )
        self.gauges.add_listener(self._enforce)
        self._flushing: threading.Thread | None = None
        self.telemetry.meter.create_observable_counter(
            names.AGENT_WORKER_RESTARTS_COUNTER,
            [lambda options: [_observation(restarts)]],
            unit="{restart}",
            description="Times the supervisor restarted its monitoring worker since the agent started.",
        )
        self.telemetry.add_readiness_check(names.QUOTA_READINESS, self._quota_check)
        self.cycles = 0
        self._stop = threading.Event()

    def _enforce(self, snapshot) -> None:
        if self.manager.observe(snapshot.usage) and not (self._flushing and self._flushing.is_alive()):
            # An alert should not wait for the next batch (5 s), nor die
            # with this worker: flush now, beside the collection loop, so an
            # unreachable back-end never delays a collection.
            self._flushing = threading.Thread(target=self.telemetry.force_flush, name="rqa-otel agent flush", daemon=True)
            self._flushing.start()

    def _targets(self) -> dict[int, str]:
        return {entry.pid: entry.strategy for entry in self.registry.processes()}

    def _quota_check(self) -> tuple[bool, str]:
        episodes = self.manager.open_episodes()
        if not episodes:
            return True, "no quota breach"
        listed = ", ".join(f"{strategy}/{resource}" for strategy, resource in sorted(episodes))
        return False, f"{len(episodes)} quota breach(es): {listed}"

    def stop(self, *_args) -> None:
        self._stop.set()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if os.getppid() != self.supervisor_pid:
                _log.warning("the agent supervisor is gone; the monitoring worker stops")
                break
            try:
                self.collect()
            except Exception:  # one bad cycle must not end the agent
                _log.exception("agent collection failed")
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a loaded machine): skip, do not burst
                next_at, delay = time.monotonic(), 0
            self._stop.wait(delay)
        self.telemetry.shutdown()

    def collect(self) -> None:
        snapshot = self.gauges.refresh()
        self.cycles += 1
        self.registry.write_json(self.registry.agent_state_path, self.manager.state())
        episodes = self.manager.open_episodes()
        self.registry.write_json(
            self.registry.agent_status_path,
            {
                "pid": os.getpid(),
                "cycle": self.cycles,
                "at": time.time(),
                "interval_s": self.interval_s,
                "processes": len(snapshot.processes),
                "strategies": sorted(snapshot.usage),
                "ops_port": (self.telemetry.ops_address or (None, None))[1],
                "recovered": {"tracks": self.recovered_tracks, "episodes": self.recovered_episodes},
                "breaches": [
                    {"strategy": s, "resource": r, "episode_id": e["episode_id"], "started": e["started"]}
                    for (s, r), e in sorted(episodes.items())
                ],
            },
        )


def _observation(value):
    from opentelemetry.metrics import Observation

    return Observation(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rqa_otel.agent.worker", description=__doc__)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--ops-port", type=int, required=True)
    parser.add_argument("--restarts", type=int, default=0)
    parser.add_argument("--supervisor-pid", type=int, required=True)
    args = parser.parse_args(argv)
    worker = Worker(args.interval, args.ops_port, args.restarts, args.supervisor_pid)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
