"""The agent's supervisor: keeps one monitoring worker alive and serves HTTP.

A worker that stops collecting (hung, stopped) for ``hang_s`` is killed and
restarted like one that died.

/health (JSON): 200 while the worker runs and its heartbeat is fresh (a
collection within 3 intervals, at least 2 s); the body carries
``worker_pid``, ``restarts``, ``last_collection`` (seconds ago) and the last
exit status of a worker that died. /ready adds the quota check: 503 while a
strategy is in breach. /metrics relays the worker's OTel metrics (503 while
no worker answers).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rqa_otel import names
from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import SettingsError
from rqa_otel.resources.registry import Registry, UnsafeRunDirectory

_log = logging.getLogger("rqa_otel.agent")

STABLE_S = 10.0
"""A worker that ran this long before dying is restarted at once."""
FIRST_BACKOFF_S = 0.5
STARTUP_GRACE_S = 10.0
"""Beyond ``hang_s``, how long a new worker may take to report its first collection."""


class AgentAlreadyRunning(RuntimeError):
    pass


@dataclass
class WorkerExit:
    pid: int
    returncode: int
    ran_s: float


class Supervisor:
    def __init__(self, registry: Registry, interval_s: float, http_host: str = "127.0.0.1",
                 http_port: int = 0, backoff_max_s: float = 30.0) -> None:
        self.registry = registry.ensure()
        self.interval_s = interval_s
        self.backoff_max_s = backoff_max_s
        self._lock_fd = self._take_agent_lock()
        self._worker: subprocess.Popen | None = None
        self._worker_started = 0.0
        self._worker_ops_port: int | None = None
        self.restarts = 0
        self.last_exit: WorkerExit | None = None
        self._stop = threading.Event()
        self._ops = None
        if http_port:
            # The supervisor stays small (no OTel SDK) unless it serves /health.
            from rqa_otel.ops.server import OpsServer

            self._ops = OpsServer(
                http_host, http_port,
                [("worker", self._worker_alive), ("collecting", self._collecting)],
                self._readiness, None, health_details=self._health_details, metrics=self._relay_metrics,
            )

    @property
    def ops_address(self):
        return self._ops.address if self._ops is not None else None

    # --- one agent per run directory ------------------------------------------

    def _take_agent_lock(self) -> int:
        path = self.registry.agent_dir / "agent.lock"
        fd = self.registry.open_file(path, os.O_RDWR | os.O_CREAT)  # through the verified directory
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AgentAlreadyRunning(
                f"another rqa-otel agent (pid {holder}) already watches the run directory {self.registry.directory}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    # --- the worker --------------------------------------------------------------

    def _start_worker(self) -> None:
        self._worker_ops_port = _free_port()
        env = dict(os.environ, RQA_REGISTRY__DIR=str(self.registry.directory))
        command = [
            sys.executable, "-m", "rqa_otel.agent.worker", "--interval", repr(self.interval_s),
            "--ops-port", str(self._worker_ops_port), "--restarts", str(self.restarts),
            "--supervisor-pid", str(os.getpid()),
        ]
        self._worker = subprocess.Popen(command, env=env)
        self._worker_started = time.monotonic()
        _log.info("agent worker started, pid %d", self._worker.pid)

    def run(self) -> int:
        """Until SIGTERM/SIGINT (or ``stop()``): keep a worker running."""
        failures = 0
        self._start_worker()
        next_hang_check = 0.0
        while not self._stop.wait(0.05):
            worker = self._worker
            if worker is None:
                continue
            if worker.poll() is None:
                if time.monotonic() >= next_hang_check:
                    next_hang_check = time.monotonic() + 0.5
                    self._kill_if_hung(worker)
                continue
            ran_s = time.monotonic() - self._worker_started
            self.last_exit = WorkerExit(worker.pid, worker.returncode, ran_s)
            failures = 0 if ran_s >= STABLE_S else failures + 1
            delay = restart_delay(failures, self.backoff_max_s)
            _log.warning("agent worker %d exited with %s after %.1f s; restarting in %.1f s",
                         worker.pid, worker.returncode, ran_s, delay)
            if self._stop.wait(delay):
                break
            self.restarts += 1
            self._start_worker()
        self._stop_worker()
        return 0

    @property
    def hang_s(self) -> float:
        """A worker silent this long (no collection) is hung: it is killed and restarted."""
        return max(10 * self.interval_s, 5.0)

    def _kill_if_hung(self, worker: subprocess.Popen) -> None:
        status = self._status()
        if status:
            silent_s = time.time() - status["at"]
        else:  # not reported yet: give the interpreter time to start on a busy host
            silent_s = time.monotonic() - self._worker_started - STARTUP_GRACE_S
        if silent_s > self.hang_s:
            _log.warning("agent worker %d made no collection for %.1f s; killing it", worker.pid, silent_s)
            worker.kill()

    def stop(self, *_args) -> None:
        self._stop.set()

    def _stop_worker(self) -> None:
        worker = self._worker
        if worker is not None and worker.poll() is None:
            worker.terminate()  # the worker flushes its telemetry on SIGTERM
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

    def close(self) -> None:
        if self._ops is not None:
            self._ops.shutdown()
        os.close(self._lock_fd)

    # --- HTTP --------------------------------------------------------------------

    def _status(self) -> dict:
        status = self.registry.read_json(self.registry.agent_status_path, {}) or {}
        worker = self._worker
        return status if worker is not None and status.get("pid") == worker.pid else {}

    def _worker_alive(self) -> tuple[bool, str]:
        worker = self._worker
        if worker is None or worker.poll() is not None:
            return False, "no monitoring worker running; restarting"
        return True, f"worker pid {worker.pid}"

    def _collecting(self) -> tuple[bool, str]:
        status = self._status()
        if not status:
            return False, "the worker has not collected yet"
        age = time.time() - status["at"]
        if age > max(3 * self.interval_s, 2.0):
            return False, f"last collection {age:.1f} s ago (interval {self.interval_s:g} s)"
        return True, f"collection {status['cycle']} {age:.1f} s ago: {status['processes']} processes"

    def _health_details(self) -> dict:
        worker = self._worker
        status = self._status()
        details = {
            "worker_pid": worker.pid if worker is not None and worker.poll() is None else None,
            "restarts": self.restarts,
            "run_dir": str(self.registry.directory),
            "last_collection": round(time.time() - status["at"], 3) if status else None,
            "cycle": status.get("cycle"),
            "processes": status.get("processes"),
            "recovered": status.get("recovered"),
        }
        if self.last_exit is not None:
            details["last_worker_exit"] = vars(self.last_exit)
        return details

    def _readiness(self) -> dict:
        def quotas() -> tuple[bool, str]:
            status = self._status()
            breaches = status.get("breaches", []) if status else []
            if not breaches:
                return True, "no quota breach"
            listed = ", ".join(f"{b['strategy']}/{b['resource']}" for b in breaches)
            return False, f"{len(breaches)} quota breach(es): {listed}"

        return {"worker": self._worker_alive, "collecting": self._collecting, names.QUOTA_READINESS: quotas}

    def _relay_metrics(self, accept: str) -> tuple[bytes, str]:
        port = self._worker_ops_port
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept} if accept else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.read(), response.headers.get("Content-Type", CONTENT_TYPE_LATEST)
        except (OSError, urllib.error.URLError):
            # An empty exposition: the scrape succeeds, its `up` stays 1, and
            # the missing series show the gap (the worker is restarting).
            return b"", CONTENT_TYPE_LATEST


def restart_delay(quick_failures: int, max_s: float) -> float:
    """Wait before the next start, given how many workers in a row died
    within STABLE_S of starting: none or one, at once; then 0.5 s, 1 s, 2 s
    ... up to ``max_s``."""
    if quick_failures <= 1:
        return 0.0
    return min(max_s, FIRST_BACKOFF_S * 2 ** (quick_failures - 2))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_agent(settings_file: str | None, http_port: int | None, interval_s: float | None,
              run_dir: str | None) -> int:
    """``rqa-otel agent``: returns the exit status."""
    overrides = {"registry.dir": run_dir} if run_dir else {}
    try:
        settings = load_settings(settings_file, overrides)
    except SettingsError as exc:
        print(f"rqa-otel: agent: {exc}", file=sys.stderr)
        return 2
    if settings_file:
        os.environ["RQA_SETTINGS_FILE"] = os.path.abspath(settings_file)  # the worker reads the same
    registry = Registry(settings.registry.dir or None)
    port = settings.agent.http_port if http_port is None else http_port
    interval = settings.resources.interval_s if interval_s is None else interval_s
    try:
        supervisor = Supervisor(registry, interval, settings.ops.http_host, port, settings.agent.restart_backoff_max_s)
    except AgentAlreadyRunning as exc:
        print(f"rqa-otel: agent: {exc}", file=sys.stderr)
        return 1
    except UnsafeRunDirectory as exc:
        print(f"rqa-otel: agent: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"rqa-otel: agent: cannot use run directory {registry.directory} or port {port}: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    address = supervisor.ops_address
    print(
        f"rqa-otel agent: watching {registry.directory} every {interval:g} s"
        + (f"; /health /ready /metrics on http://{address[0]}:{address[1]}" if address else ""),
        file=sys.stderr, flush=True,
    )
    try:
        return supervisor.run()
    finally:
        supervisor.close()
