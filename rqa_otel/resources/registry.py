"""The host's run directory: which strategy processes and workers exist.

``setup()`` registers its process here, ``ResourceManager`` registers workers
here, and the host agent reads it (and keeps its own quota state here), so an
agent that was killed and restarted recovers the whole picture from disk.

Layout of ``registry.dir`` (default ``$XDG_RUNTIME_DIR/rqa-otel``, else
``/tmp/rqa-otel-<uid>``)::

    registry.lock               flock(2) held for every read-modify-write
    processes/<pid>.json        one per registered process: pid, start ticks,
                                strategy, service, registered_at
    workers/<strategy>.json     {worker_id: {pid, start, registered_at}}
    quotas.json                 quotas set at run time (set_strategy_quota)
    agent/agent.lock            held by the running agent (one per host)
    agent/state.json            the agent's smoothed usage and open episodes
    agent/status.json           the agent worker's heartbeat

Every file is written whole to a temporary name and renamed over the old one
(``os.replace``), so a reader never sees half a file and a process killed
mid-write leaves the previous version.

The directory may sit in /tmp, where anyone can create a name first
(CWE-377/59). It is created with mode 0700 and, like each of its
subdirectories, verified before every use: a directory (not a symbolic
link) owned by the current user with no access for group or others, opened
with O_NOFOLLOW|O_DIRECTORY and then used only through that descriptor, so
nothing can be swapped in between the check and the use; its files are
created O_EXCL|O_NOFOLLOW and read O_NOFOLLOW. A directory that fails is
refused (:class:`UnsafeRunDirectory`, an OSError) with a message naming its
path, owner, mode and the fix, as OpenSSH does for a key file; ``setup()``
then goes on without the registry. A process is identified by its pid AND
its start time (clock ticks since boot, ``/proc/<pid>/stat`` field 22): an
entry whose process is gone, or whose pid now belongs to a newer process, is
stale and is removed, under the lock, by whoever notices.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import stat
import tempfile
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from rqa_otel import names

_log = logging.getLogger("rqa_otel.registry")


def default_run_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return Path(runtime) / "rqa-otel"
    return Path(tempfile.gettempdir()) / f"rqa-otel-{os.getuid()}"


class UnsafeRunDirectory(PermissionError):
    """The run directory, or one of its subdirectories, is not safely this user's."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SUBDIRS = frozenset({"processes", "workers", "agent"})


def _open_verified_dir(name: str, shown: str, dir_fd: int | None = None) -> int:
    """A descriptor of the directory ``name`` (relative to ``dir_fd``) after
    checking that very directory; UnsafeRunDirectory when it is a symbolic
    link, not a directory, not the user's, or open to group or others."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                found = os.lstat(name, dir_fd=dir_fd)
            except OSError:
                raise exc from None
            raise UnsafeRunDirectory(_unsafe_message(shown, found)) from None
        raise
    found = os.fstat(fd)
    if found.st_uid != os.geteuid() or stat.S_IMODE(found.st_mode) & 0o077:
        os.close(fd)
        raise UnsafeRunDirectory(_unsafe_message(shown, found))
    return fd


def _unsafe_message(path: str, found: os.stat_result) -> str:
    kind = "a symbolic link" if stat.S_ISLNK(found.st_mode) else (
        "a directory" if stat.S_ISDIR(found.st_mode) else "not a directory")
    user = os.geteuid()
    if stat.S_ISDIR(found.st_mode) and found.st_uid == user:
        fix = f"chmod 700 {path}"
    else:
        fix = f"remove {path} (rqa-otel creates it again), or set registry.dir to a directory of your own"
    return (
        f"refusing the run directory {path}: it is {kind} owned by uid {found.st_uid} ({_user_name(found.st_uid)}) "
        f"with mode {stat.S_IMODE(found.st_mode):04o}; it must be a directory owned by uid {user} "
        f"({_user_name(user)}) with no access for group or others. Fix: {fix}"
    )


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return "unknown user"


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when no
    such process runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        if os.path.isdir("/proc/self"):
            return None
        return _psutil_start(pid)
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def _psutil_start(pid: int) -> int | None:  # not Linux
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return int(process.create_time() * 100)
    except psutil.Error:
        return None


def is_alive(pid: int, start: int) -> bool:
    return process_start(pid) == start


@dataclass(frozen=True)
class ProcessEntry:
    pid: int
    start: int
    """Clock ticks since boot when the process started (guards against pid reuse)."""
    strategy: str
    service: str
    registered_at: float


def _file_name(strategy: str) -> str:
    # Any strategy name becomes a safe, reversible file name.
    return urllib.parse.quote(strategy, safe="") + ".json"


class Registry:
    """One run directory. Thread- and process-safe; every public method
    either completes or leaves the files as they were."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory else default_run_dir()
        self._processes = self.directory / "processes"
        self._workers = self.directory / "workers"
        self.agent_dir = self.directory / "agent"

    def ensure(self) -> "Registry":
        """Create the directories (mode 0700: the pids of one user's
        strategies are nobody else's business) and verify them (module
        doc). Raises OSError; UnsafeRunDirectory for one that fails."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.directory, 0o700)
        root = _open_verified_dir(str(self.directory), str(self.directory))
        try:
            for sub in sorted(_SUBDIRS):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(sub, 0o700, dir_fd=root)
                os.close(_open_verified_dir(sub, str(self.directory / sub), root))
        finally:
            os.close(root)
        return self

    # --- verified descriptors, locking and atomic files -------------------------

    @contextlib.contextmanager
    def _dir(self, sub: str | None = None) -> Iterator[int]:
        """A verified descriptor of the run directory or of one of its
        subdirectories, for the block."""
        root = _open_verified_dir(str(self.directory), str(self.directory))
        try:
            if sub is None:
                yield root
                return
            fd = _open_verified_dir(sub, str(self.directory / sub), root)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(root)

    def _where(self, path: Path) -> tuple[str | None, str]:
        """(subdirectory or None, file name) of a path in the run directory."""
        parts = Path(path).relative_to(self.directory).parts
        if len(parts) == 1:
            return None, parts[0]
        if len(parts) == 2 and parts[0] in _SUBDIRS:
            return parts[0], parts[1]
        raise ValueError(f"{path} is not a file of the run directory {self.directory}")

    def open_file(self, path: Path, flags: int, mode: int = 0o600) -> int:
        """A descriptor of a file of the run directory, opened through the
        verified directory with O_NOFOLLOW (the agent's lock file)."""
        sub, name = self._where(path)
        with self._dir(sub) as fd:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across threads and processes: flock on a descriptor of
        its own, so two threads of one process also exclude each other."""
        fd = self.open_file(self.directory / "registry.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def write_json(self, path: Path, data: Any) -> None:
        """Atomically (module doc), through the verified directory: a new
        file created O_EXCL|O_NOFOLLOW, renamed over ``path``."""
        sub, name = self._where(path)
        with self._dir(sub) as fd:
            _write_json_in(fd, name, data)

    def read_json(self, path: Path, default: Any = None) -> Any:
        """The file's content, or ``default`` when it is missing, unreadable,
        not a regular file of this user's, or the directory fails its check
        (a file from a crashed writer never exists: writes are atomic)."""
        try:
            sub, name = self._where(path)
            with self._dir(sub) as dir_fd:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            with open(fd, encoding="utf-8") as file:
                found = os.fstat(file.fileno())
                if not stat.S_ISREG(found.st_mode) or found.st_uid != os.geteuid():
                    return default
                return json.load(file)
        except (OSError, ValueError):
            return default

    def _unlink(self, path: Path) -> None:
        sub, name = self._where(path)
        with self._dir(sub) as fd, contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)

    def _exists(self, path: Path) -> bool:
        sub, name = self._where(path)
        try:
            with self._dir(sub) as fd:
                os.stat(name, dir_fd=fd, follow_symlinks=False)
            return True
        except OSError:
            return False

    def _list(self, sub: str) -> list[str]:
        try:
            with self._dir(sub) as fd:
                return os.listdir(fd)
        except FileNotFoundError:
            return []

    # --- processes -------------------------------------------------------------

    def register_process(self, strategy: str, service: str, pid: int | None = None) -> ProcessEntry:
        pid = os.getpid() if pid is None else pid
        start = process_start(pid)
        if start is None:
            raise ValueError(f"cannot register pid {pid}: no such process")
        entry = ProcessEntry(pid, start, strategy, service, time.time())
        self.ensure()
        self.write_json(self._processes / f"{pid}.json", asdict(entry))
        return entry

    def unregister_process(self, entry: ProcessEntry) -> None:
        """Remove the entry, unless its pid has since been registered by a newer process."""
        path = self._processes / f"{entry.pid}.json"
        with self.locked():
            current = self.read_json(path)
            if current and current.get("start") == entry.start:
                self._unlink(path)

    def processes(self) -> list[ProcessEntry]:
        """The live registered processes; stale entries are removed."""
        try:
            names = self._list("processes")
        except OSError:
            return []  # an unsafe directory lists nothing (setup() said why)
        live: list[ProcessEntry] = []
        stale: list[str] = []
        for name in names:
            if not name.endswith(".json"):
                continue
            data = self.read_json(self._processes / name)
            try:
                entry = ProcessEntry(**data)
            except TypeError:
                continue  # vanished meanwhile, or not ours: left alone
            if is_alive(entry.pid, entry.start):
                live.append(entry)
            else:
                stale.append(name)
        if stale:
            self._remove_stale(stale)
        return live

    def _remove_stale(self, names: list[str]) -> None:
        with self.locked():
            for name in names:
                path = self._processes / name
                current = self.read_json(path)
                # Re-checked under the lock: a new process may have taken the pid.
                if current is not None and not is_alive(current.get("pid", -1), current.get("start", -1)):
                    self._unlink(path)

    # --- workers ---------------------------------------------------------------

    def workers(self, strategy: str) -> dict[str, dict]:
        """Live worker registrations of one strategy (read-only: stale ones
        are dropped from the result, and from the file at the next change)."""
        return _live_workers(self.read_json(self._workers / _file_name(strategy), {}))

    def all_workers(self) -> dict[str, dict[str, dict]]:
        try:
            names = self._list("workers")
        except OSError:
            return {}
        return {
            urllib.parse.unquote(name[: -len(".json")]): self.workers(urllib.parse.unquote(name[: -len(".json")]))
            for name in names
            if name.endswith(".json")
        }

    def add_worker(
        self, strategy: str, worker_id: str, pid: int | None, admit: Callable[[dict[str, dict]], None]
    ) -> dict[str, dict]:
        """Register ``worker_id`` under the lock. ``admit(live_workers)`` is
        called first and may raise to refuse (the quota check); nothing is
        written then. Registering the same worker id again from the same
        process is a no-op. Returns the workers after the change."""
        pid = os.getpid() if pid is None else pid
        start = process_start(pid)
        if start is None:
            raise ValueError(f"cannot register worker {worker_id!r} for pid {pid}: no such process")
        self.ensure()
        path = self._workers / _file_name(strategy)
        with self.locked():
            live = _live_workers(self.read_json(path, {}))
            current = live.get(worker_id)
            if current is not None and (current["pid"], current["start"]) == (pid, start):
                return live
            if current is not None:
                raise ValueError(
                    f"worker {worker_id!r} of strategy {strategy!r} is already registered by pid {current['pid']}"
                )
            admit(live)
            live[worker_id] = {"pid": pid, "start": start, "registered_at": time.time()}
            self.write_json(path, live)
            return live

    def remove_worker(self, strategy: str, worker_id: str) -> bool:
        """True if it was registered; an unknown strategy or worker is a no-op."""
        path = self._workers / _file_name(strategy)
        if not self._exists(path):
            return False
        with self.locked():
            data = self.read_json(path, {})
            live = _live_workers(data)
            found = live.pop(worker_id, None) is not None
            if found or len(live) != len(data or {}):
                self.write_json(path, live)
            return found

    # --- the agent's files ---------------------------------------------------------

    @property
    def agent_state_path(self) -> Path:
        """The agent's smoothed readings and open episodes."""
        return self.agent_dir / "state.json"

    @property
    def agent_status_path(self) -> Path:
        """The agent worker's heartbeat: pid, cycle, time, open breaches."""
        return self.agent_dir / "status.json"

    def quota_check(self, strategy: str):
        """A readiness check for a strategy process: not ready while the host
        agent reports this strategy in breach of a quota."""

        def check() -> tuple[bool, str]:
            status = self.read_json(self.agent_status_path)
            if not status:
                return True, f"no host agent reports on {self.directory}"
            age = time.time() - status.get("at", 0)
            if age > max(10 * status.get("interval_s", 0), 30):  # a dead agent's last word is no verdict
                return True, f"the host agent has not reported for {age:.0f} s"
            over = sorted(b["resource"] for b in status.get("breaches", []) if b.get("strategy") == strategy)
            if over:
                return False, f"strategy {strategy} is over its {', '.join(over)} quota (host agent)"
            return True, f"strategy {strategy} within its quotas (host agent, {age:.0f} s ago)"

        return check

    # --- run-time quotas ---------------------------------------------------------

    @property
    def quotas_path(self) -> Path:
        return self.directory / "quotas.json"

    def update_quotas(self, change: Callable[[dict], dict]) -> dict:
        """Read-modify-write quotas.json under the lock."""
        self.ensure()
        with self.locked():
            quotas = change(dict(self.read_json(self.quotas_path, {})))
            self.write_json(self.quotas_path, quotas)
            return quotas


def _live_workers(data: Any) -> dict[str, dict]:
    """Worker entries whose process still runs (malformed ones count as gone)."""
    if not isinstance(data, dict):
        return {}
    return {
        worker_id: worker
        for worker_id, worker in data.items()
        if isinstance(worker, dict) and is_alive(worker.get("pid", -1), worker.get("start", -1))
    }


def _write_json_in(dir_fd: int, name: str, data: Any) -> None:
    """Write to a new temporary file (O_EXCL|O_NOFOLLOW, 0600) in the
    directory ``dir_fd``, then rename it over ``name``: readers see the old
    or the new content, never a mix. No fsync: the run directory is volatile
    by design (a tmpfs under XDG_RUNTIME_DIR)."""
    tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, separators=(",", ":"))
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def register_current_process(settings) -> "tuple[Callable[[], None], Registry] | None":
    """For ``setup()``: register this process (``registry.*`` settings) and
    return the call that unregisters it and the registry, or None. Never raises: an
    unwritable run directory costs one warning, and the agent will not see
    this process."""
    if not settings.registry.enabled:
        return None
    registry = Registry(settings.registry.dir or None)
    try:
        entry = registry.register_process(settings.strategy or names.DEFAULT_STRATEGY, settings.service.name)
    except UnsafeRunDirectory as exc:
        _log.warning("%s; telemetry goes on, but the host agent will not watch this process", exc)
        return None
    except (OSError, ValueError) as exc:
        _log.warning(
            "cannot register this process in the run directory %s (%s); the host agent will not watch it "
            "(setting registry.dir, or registry.enabled: false)", registry.directory, exc,
        )
        return None

    def unregister() -> None:
        if os.getpid() != entry.pid:
            return  # a forked child exiting: the registration is its parent's
        try:
            registry.unregister_process(entry)
        except OSError:
            pass  # the agent drops the entry once the process is gone

    return unregister, registry
