"""Figures for issue 14's note (items 4, 5, 6), measured against real servers.

    PYTHONPATH=$PWD:tests python tests/figure_hardening.py refusing   # 4 x 60 s, one span each
    PYTHONPATH=$PWD:tests python tests/figure_hardening.py hanging    # 10k records/s for 30 s, then rotel
    PYTHONPATH=$PWD:tests python tests/figure_hardening.py ops        # 200 scrapes, 200 idle connections

The strategy under test is the ``rqa_otel`` first on PYTHONPATH (point it
at an older tree for the "before" column). Not a test: it takes minutes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

from backends import free_port, http_request

REPO = Path(os.environ.get("PYTHONPATH", ".").split(os.pathsep)[0]).resolve()


def refusing(seconds: float = 60.0) -> None:
    from receivers import RefusingReceiver
    from test_export_hardening import STRATEGY, overrides

    def one(status: int) -> dict:
        receiver = RefusingReceiver(status)
        with TemporaryDirectory() as tmp:
            settings = overrides(receiver.endpoint, Path(tmp))
            del settings["export.metric_interval_s"]  # the defaults: metrics every 10 s, spans every 5 s
            done = subprocess.run(
                [sys.executable, "-c", STRATEGY, json.dumps(settings), str(seconds)],
                env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=seconds + 120,
            )
        receiver.stop()
        lines = [line for line in done.stderr.splitlines() if "NVML" not in line]
        return {
            "status": status, "requests": dict(receiver.requests), "stderr_lines": len(lines),
            "escapes_in_stderr": done.stderr.count("\x1b"),
            "forged_lines": sum(line.startswith("rqa-otel: INFO all exports") for line in lines),
        }

    with ThreadPoolExecutor(4) as pool:
        for row in pool.map(one, (401, 403, 400, 413)):
            print(json.dumps(row), flush=True)


def hanging(seconds: float = float(os.environ.get("FIGURE_SECONDS", 30))) -> None:
    from receivers import HangingReceiver
    from test_export_hardening import FLOOD, RotelAt, overrides

    hang = HangingReceiver()
    with TemporaryDirectory() as tmp:
        settings = overrides(hang.endpoint, Path(tmp), **{"export.traces": "none", "export.metrics": "none"})
        strategy = subprocess.Popen(
            [sys.executable, "-c", FLOOD, json.dumps(settings), str(seconds)],
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        first = json.loads(strategy.stdout.readline())
        hang.stop()
        rotel = RotelAt(hang.port, debug_log=("logs",), verbosity="basic").start()
        try:
            strategy.stdin.write("go\n")
            strategy.stdin.flush()
            last = json.loads(strategy.stdout.readline())
            deadline = time.monotonic() + 60
            while rotel.log_records_received() < first["sent"] - first["dropped"] and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2)
            print(json.dumps({"sent": first["sent"], "dropped_during_hang": first["dropped"], "after": last,
                              "connections_to_the_hanging_receiver": hang.connections,
                              "arrived_at_rotel": rotel.log_records_received()}), flush=True)
        finally:
            rotel.stop()
            strategy.kill()


def ops() -> None:
    import rqa_otel

    with TemporaryDirectory() as tmp:
        telemetry = rqa_otel.setup(strategy="ops", set_global=False, overrides={
            "export.directory": tmp, "ops.http_port": free_port(), "registry.enabled": False})
        host, port = telemetry.ops_address
        start = threading.Barrier(200)

        def scrape(_):
            start.wait(10)
            try:
                return http_request("GET", f"http://{host}:{port}/metrics", timeout=20)[0]
            except OSError as exc:
                return type(exc).__name__

        began = time.monotonic()
        with ThreadPoolExecutor(200) as pool:
            answers = list(pool.map(scrape, range(200)))
        print(json.dumps({"concurrent_metrics": 200, "answered_200": answers.count(200),
                          "seconds": round(time.monotonic() - began, 2)}), flush=True)

        threads_before = threading.active_count()
        idle = [socket.create_connection((host, port), timeout=30) for _ in range(200)]
        opened = time.monotonic()
        health_ok = health_tried = 0
        released_at: dict[int, float] = {}
        peak_threads = threading.active_count()
        for sock in idle:
            sock.setblocking(False)
        while time.monotonic() - opened < 30 and len(released_at) < 200:
            health_tried += 1
            try:
                health_ok += http_request("GET", f"http://{host}:{port}/health", timeout=2)[0] == 200
            except OSError:
                pass
            peak_threads = max(peak_threads, threading.active_count())
            for index, sock in enumerate(idle):
                if index in released_at:
                    continue
                try:
                    if sock.recv(1) == b"":
                        released_at[index] = time.monotonic() - opened
                except BlockingIOError:
                    pass
                except OSError:
                    released_at[index] = time.monotonic() - opened
            time.sleep(0.2)
        print(json.dumps({
            "idle_connections": 200, "released": len(released_at),
            "released_within_s": round(max(released_at.values()), 1) if released_at else None,
            "health_answered": f"{health_ok}/{health_tried}",
            "threads_in_this_process": {"before": threads_before, "peak_while_idle": peak_threads},
        }), flush=True)
        for sock in idle:
            sock.close()
        telemetry.shutdown()


if __name__ == "__main__":
    {"refusing": refusing, "hanging": hanging, "ops": ops}[sys.argv[1]]()
