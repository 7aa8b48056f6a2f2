"""A fleet of real strategy processes for the quota tests.

``python tests/strategy_fleet.py --run-dir DIR --count N ...`` imports
rqa_otel once, then forks N children (cheap: no interpreter start each).
Each child is one strategy ``sNNN``: it registers its process in the run
directory (what ``setup()`` does), sets its own quota with
``ResourceManager.set_strategy_quota`` (memory: its RSS + 40 MiB; CPU: 25 %
of a core, 2 % for a CPU breacher, 100 % for a memory breacher), and then, at the same instant as every other child, races to
register a worker of the shared strategy ``pool`` (max_workers from
``--pool-max``), and two threads race for its own strategy's single worker
slot (max_workers 1).

Signals (sent by the test to a child): SIGUSR1 starts its overuse, memory
(150 MiB more, touched) or CPU (a busy loop), by ``--role``; SIGUSR2 stops
it. Output, one JSON object per line on stdout: ``child`` lines (pid,
strategy, role, rss), ``race`` lines (admitted or refused), ``overusing`` /
``relieved`` acknowledgements, and ``ready`` once every child has raced.
Children exit when the fleet's parent goes away.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from rqa_otel.resources.quota import QuotaExceeded, ResourceManager
from rqa_otel.resources.registry import Registry

POOL = "pool"
EXTRA_MIB = 150


def say(**fields) -> None:
    os.write(1, (json.dumps(fields) + "\n").encode())  # one write: lines never interleave


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def child(index: int, role: str, run_dir: str, start_gate: int, arrived: int, parent: int) -> None:
    strategy = f"s{index:03d}"
    registry = Registry(run_dir)
    registry.register_process(strategy, "fleet")
    manager = ResourceManager(registry=registry)
    rss = rss_mib()
    # A CPU breacher's quota is low (it competes for 2 shared cores, so its
    # share is uneven); a memory breacher's CPU quota is a whole core, as
    # writing 150 MiB costs CPU time too; an idle one's leaves room for its
    # first reading, the average since its fork, registration included.
    cpu_quota = {"cpu": 2.0, "memory": 100.0}.get(role, 25.0)
    manager.set_strategy_quota(strategy, cpu=cpu_quota, memory=round(rss + 40, 1), max_workers=1)
    say(event="child", pid=os.getpid(), strategy=strategy, role=role, rss_mib=round(rss, 1))

    os.write(arrived, b".")
    os.read(start_gate, 1)  # every child unblocks when the parent closes the gate
    try:
        manager.register_strategy_worker(POOL, f"w{index}")
        say(event="race", pid=os.getpid(), strategy=POOL, admitted=True)
    except QuotaExceeded:
        say(event="race", pid=os.getpid(), strategy=POOL, admitted=False)
    own: list[bool] = []

    def claim(worker_id: str) -> None:
        try:
            manager.register_strategy_worker(strategy, worker_id)
            own.append(True)
        except QuotaExceeded:
            own.append(False)

    threads = [threading.Thread(target=claim, args=(f"t{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    say(event="race", pid=os.getpid(), strategy=strategy, admitted=own.count(True), refused=own.count(False))

    state = {"overuse": False}
    signal.signal(signal.SIGUSR1, lambda *_: state.update(overuse=True))
    signal.signal(signal.SIGUSR2, lambda *_: state.update(overuse=False))
    ballast = None
    while os.getppid() == parent:
        if state["overuse"] and ballast is None:
            ballast = b"x" * (EXTRA_MIB << 20) if role == "memory" else b""  # written, so resident
            say(event="overusing", pid=os.getpid(), strategy=strategy, at=time.time())
        elif not state["overuse"] and ballast is not None:
            ballast = None
            say(event="relieved", pid=os.getpid(), strategy=strategy, at=time.time())
        if state["overuse"] and role == "cpu":
            deadline = time.perf_counter() + 0.01
            while time.perf_counter() < deadline:
                pass
        else:
            time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--memory-breachers", type=int, default=0)
    parser.add_argument("--cpu-breachers", type=int, default=0)
    parser.add_argument("--pool-max", type=int, default=7)
    args = parser.parse_args()

    ResourceManager(registry=Registry(args.run_dir)).set_strategy_quota(POOL, max_workers=args.pool_max)
    roles = ["memory"] * args.memory_breachers + ["cpu"] * args.cpu_breachers
    roles += ["idle"] * (args.count - len(roles))
    gate_read, gate_write = os.pipe()
    arrived_read, arrived_write = os.pipe()
    parent = os.getpid()
    children = []
    for index, role in enumerate(roles):
        pid = os.fork()
        if pid == 0:
            os.close(gate_write)
            os.close(arrived_read)
            try:
                child(index, role, args.run_dir, gate_read, arrived_write, parent)
            finally:
                os._exit(0)
        children.append(pid)
    os.close(gate_read)
    os.close(arrived_write)
    # Open the gate only once every child waits at it: the race is real.
    arrived = 0
    while arrived < len(children):
        chunk = os.read(arrived_read, len(children))
        if not chunk:
            break  # a child died before the gate
        arrived += len(chunk)
    os.close(gate_write)
    say(event="ready", parent=parent)

    def stop(*_args) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    for _ in children:
        os.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
