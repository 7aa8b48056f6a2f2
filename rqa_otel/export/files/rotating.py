"""The one file writer behind every file output (OTLP-JSON files, text logs).

``RotatingFile`` appends whole batches of lines, rotates by size like
``logging.handlers.RotatingFileHandler`` (optionally gzip-compressing the
backups in a background thread) and survives a full or failing disk: it
never raises ``OSError`` to the caller, it counts what it had to drop and it
reports a problem once per episode.

Writing
    One batch is one ``os.write`` loop on a descriptor opened
    ``O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC`` (mode 0o644).  The fast path is
    that write plus a size check against an in-memory counter: no ``stat``
    per write.  Each line must end with ``b"\\n"``; the writer does not add
    newlines (except to seal off a torn line, see below).

Several writers (processes) on one file
    ``O_APPEND`` makes each batch land whole at the end of the file, so
    several processes may append to one path.  Rotation, however, is per
    process: each process decides from its own view of the size (refreshed
    from ``stat`` at most once a second) and backups are named by whichever
    process rotates.  Before rotating, a process checks that the path still
    is the file it has open; if another process has rotated it already, it
    just reopens.  A process that has not yet noticed a rotation keeps
    appending to the renamed file for at most about a second (the check
    interval), so those lines end up in ``path.1``.  Compression waits
    ``_COMPRESS_SETTLE_S`` after a rotation before it starts, for that reason.
    Two processes that rotate at the same moment can still misnumber the
    backups or replace one backup with another (as with the standard
    library's RotatingFileHandler): where several processes share a file,
    let one of them rotate and give the others ``max_bytes=0``, or give each
    process its own file.

Rotation (``max_bytes > 0``)
    Before a write that would make a non-empty file exceed ``max_bytes``:
    ``path.N`` (and ``path.N.gz``) is removed, ``path.i[.gz]`` ->
    ``path.i+1[.gz]``, ``path`` -> ``path.1`` (all ``os.replace``), then a
    new ``path`` is opened.  A batch larger than ``max_bytes`` goes alone into
    one file, so a file exceeds ``max_bytes`` only when one batch does.
    ``backup_count=0`` truncates the file in place instead.  Only regular
    files are rotated (a path such as ``/dev/full`` or a FIFO never is).
    The path is also checked at most once a second (and before each
    rotation): when it was renamed or removed by someone else (logrotate),
    the writer opens a new file at the path.

Compression (``compress=True``)
    After a rotation, ``path.1`` is compressed by one background daemon
    thread (one file at a time, oldest first) into a hidden temporary file
    ``.NAME.compressing-PID-SEQ.tmp`` in the same directory, fsynced, then
    ``os.replace``-d to ``path.K.gz`` (K = wherever that backup has been
    shifted to meanwhile) and the uncompressed ``path.K`` removed.  A failure
    (ENOSPC...) removes the temporary file, leaves the uncompressed backup in
    place (it keeps shifting as ``path.K``; it is not compressed later) and
    is reported through ``on_problem``.  ``close()`` does not wait for
    compression; ``join_compression(timeout_s)`` does.

Errors
    Any ``OSError`` from open/write (ENOSPC, EIO, EDQUOT, EFBIG, EROFS, ...)
    makes ``write_lines`` return False: the ``count`` records of that call are
    added to ``lost_records``, ``failing`` becomes True and
    ``on_problem(path, error)`` is called once for the episode.  While
    failing, a write is attempted again at most every ``retry_interval_s``;
    calls in between are counted as lost without any system call.  The first
    write that succeeds again ends the episode: ``failing`` becomes False and
    ``on_recovery(path)`` is called once.

    A batch is written entirely or counted entirely as lost: when ENOSPC
    strikes in the middle of a batch, the bytes already written are
    truncated away again (``ftruncate`` to the offset before the write) so
    the file holds whole lines only, and all records of the batch count as
    lost even though some of them reached the disk for a moment.  If the
    truncation is impossible (it fails, or another process appended after the
    partial write), the next successful write starts with a newline so the
    torn line stays a separate (unparsable) line and does not corrupt the
    next record.  The same newline is added when an existing file is opened
    whose last byte is not a newline and that nobody wrote to for
    ``_TORN_QUIET_S`` (a torn line left by a crash or power loss; a recent
    one may just be another process's batch half-way through its write).

    Rotation and compression failures do not fail writes: the writer keeps
    appending to the current file (which then grows past ``max_bytes``) and
    tries to rotate again every ``retry_interval_s``.  Each is reported
    through ``on_problem`` once per episode (an episode ends silently at the
    next successful rotation / compression; ``on_recovery`` is only about
    writes).  ``on_problem`` for compression runs in the compression thread.

    Callbacks are called without the lock held (they may log, even into this
    same file); exceptions they raise are swallowed.

Thread safety
    A lock serialises write, rotation and the compressor's renames.  In a
    forked child the lock is re-created and pending compressions are left to
    the parent.
"""

from __future__ import annotations

import collections
import errno
import gzip
import itertools
import os
import stat
import threading
import time
import weakref
from pathlib import Path
from typing import Callable, Iterable, Union

from rqa_otel._util.private_files import DEFAULT_FILE_MODE, make_directories, narrow

__all__ = ["RotatingFile"]

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_CHECK_INTERVAL_S = 1.0  # how often the path is stat'ed to detect external rotation
_COMPRESS_SETTLE_S = _CHECK_INTERVAL_S + 0.5  # other processes notice a rotation within the check interval
# An existing file not ending in a newline is taken as torn (by a crash or power loss)
# only if nobody wrote to it this long: a concurrent writer's batch lands page by page.
_TORN_QUIET_S = 2.0
_COMPRESS_LEVEL = 6
_COMPRESS_CHUNK = 1 << 20

Lines = Union[bytes, bytearray, memoryview, Iterable[bytes]]
_Event = tuple  # ("problem", OSError) | ("recovery",)

_instances: "weakref.WeakSet[RotatingFile]" = weakref.WeakSet()
_tmp_seq = itertools.count(1)


class RotatingFile:
    """Append-only, size-rotated file that never raises OSError on write; see the module doc."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int = 100 * 2**20,
        backup_count: int = 5,
        compress: bool = False,
        on_problem: Callable[[str, OSError], None] | None = None,
        on_recovery: Callable[[str], None] | None = None,
        retry_interval_s: float = 1.0,
        file_mode: int = DEFAULT_FILE_MODE,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        if backup_count < 0:
            raise ValueError(f"backup_count must be >= 0, not {backup_count}")
        self.path = Path(os.path.abspath(os.fspath(path)))
        self._p = str(self.path)
        # Owner-only by default (export.file_mode): the file holds trades and logs.
        self._file_mode = file_mode
        self._max_bytes = int(max_bytes)
        self._backup_count = int(backup_count)
        self._compress = bool(compress)
        self._on_problem = on_problem
        self._on_recovery = on_recovery
        self._retry_interval_s = max(0.0, float(retry_interval_s))

        self._lock = threading.Lock()
        self._fd: int | None = None
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._regular = True
        self._size = 0  # bytes in the open file, as far as this process knows
        self._torn = False  # the open file ends in a partial line: start the next write with b"\n"
        self._next_check = 0.0
        self._closed = False

        self._failing = False
        self._retry_at = 0.0
        self._lost = 0

        self._rotate_failing = False
        self._rotate_retry_at = 0.0

        # Compression: (read fd, (dev, ino), not before) of rotated files, oldest first.
        self._compress_queue: collections.deque[tuple[int, tuple[int, int], float]] = collections.deque()
        self._compressor: threading.Thread | None = None
        self._compress_failing = False
        _instances.add(self)

    # ------------------------------------------------------------------ API

    @property
    def lost_records(self) -> int:
        """Records given up because of write errors (or written after close)."""
        return self._lost

    @property
    def failing(self) -> bool:
        """True from a failed write until the next successful one."""
        return self._failing

    def write_lines(self, lines: Lines, count: int = 1) -> bool:
        """Append ``lines`` (bytes, or an iterable of bytes lines, each ending
        in a newline) holding ``count`` records. True when written; False when
        the records were dropped (counted in ``lost_records``). Never raises
        OSError."""
        if self._failing and time.monotonic() < self._retry_at:  # cheap reject while failing
            with self._lock:
                if self._failing and time.monotonic() < self._retry_at:
                    self._lost += count
                    return False
        data = lines if isinstance(lines, (bytes, bytearray, memoryview)) else b"".join(lines)
        if not data:
            return not self._closed
        events: list[_Event] = []
        with self._lock:
            ok = self._write_locked(data, count, events)
        if events:
            self._fire(events)
        return ok

    def close(self) -> None:
        """Close the file. Later writes return False and count as lost.
        Compressions already queued go on in the background (see
        ``join_compression``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def join_compression(self, timeout_s: float | None = None) -> bool:
        """Wait until no compression is queued or running; True if none is left."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._lock:
                worker = self._compressor
            if worker is None:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            worker.join(remaining)

    def __enter__(self) -> "RotatingFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RotatingFile({self._p!r}, max_bytes={self._max_bytes}, backup_count={self._backup_count})"

    # -------------------------------------------------------------- writing

    def _write_locked(self, data: bytes | bytearray | memoryview, count: int, events: list[_Event]) -> bool:
        if self._closed:
            self._lost += count
            return False
        now = time.monotonic()
        if self._failing and now < self._retry_at:
            self._lost += count
            return False
        try:
            if self._fd is None:
                self._open_locked()
            elif now >= self._next_check:
                self._check_locked(now, events)
            if (
                self._max_bytes
                and self._size
                and self._size + len(data) > self._max_bytes
                and self._regular
                and now >= self._rotate_retry_at
            ):
                self._rotate_guarded(now, events)
            self._append_locked(data)
        except OSError as error:
            self._lost += count
            self._retry_at = now + self._retry_interval_s
            self._next_check = 0.0  # look at the path again before the retry
            if not self._failing:
                self._failing = True
                events.append(("problem", error))
            return False
        if self._failing:
            self._failing = False
            events.append(("recovery",))
        return True

    def _append_locked(self, data: bytes | bytearray | memoryview) -> None:
        fd = self._fd
        assert fd is not None
        if self._torn:
            data = b"\n" + bytes(data)
        total = len(data)
        written = os.write(fd, data)
        if written < total:  # only on a short write (ENOSPC next, a signal, > 2 GiB)
            view = memoryview(data)
            try:
                while written < total:
                    n = os.write(fd, view[written:])
                    if n <= 0:
                        raise OSError(errno.EIO, "write() wrote nothing", self._p)
                    written += n
            except OSError:
                self._undo_partial_write(fd, written)
                raise
        self._size += total
        self._torn = False

    def _undo_partial_write(self, fd: int, written: int) -> None:
        """Cut off the ``written`` bytes of a failed batch; if impossible, mark the file torn."""
        if not written:
            return
        try:
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: the end of our last write
            if os.fstat(fd).st_size != end:
                # Another process appended after our partial write: truncating would cut its lines.
                raise OSError(errno.EBUSY, "file grew after the partial write", self._p)
            os.ftruncate(fd, end - written)
            self._size = end - written
        except OSError:
            self._torn = True
            self._size += written

    # --------------------------------------------------- opening / checking

    def _open_locked(self) -> None:
        """Open (or create) the file at the path; replaces the current descriptor only on success."""
        try:
            fd = os.open(self._p, _OPEN_FLAGS, self._file_mode)
        except FileNotFoundError:
            make_directories(self.path.parent, self._file_mode)
            fd = os.open(self._p, _OPEN_FLAGS, self._file_mode)
        try:
            narrow(fd, self._file_mode)
            st = os.fstat(fd)
            regular = stat.S_ISREG(st.st_mode)
            torn = (
                regular
                and st.st_size > 0
                and time.time() - st.st_mtime > _TORN_QUIET_S  # else another writer may be mid-write
                and not self._ends_with_newline(st)
            )
        except OSError:
            os.close(fd)
            raise
        old, self._fd = self._fd, fd
        self._file_id = (st.st_dev, st.st_ino)
        self._regular = regular
        self._size = st.st_size if regular else 0
        self._torn = torn
        self._next_check = time.monotonic() + _CHECK_INTERVAL_S
        if old is not None:
            try:
                os.close(old)
            except OSError:
                pass

    def _ends_with_newline(self, st: os.stat_result) -> bool:
        """Whether the existing file ``st`` (open write-only) ends with a newline."""
        try:
            reader = os.open(self._p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return True  # cannot tell: assume whole lines
        try:
            same = os.fstat(reader)
            if (same.st_dev, same.st_ino) != (st.st_dev, st.st_ino):
                return True
            return os.pread(reader, 1, st.st_size - 1) in (b"\n", b"")
        except OSError:
            return True
        finally:
            os.close(reader)

    def _reopen_locked(self, events: list[_Event]) -> None:
        """Open a new file at the path; if that fails but the open file still
        exists under some name, keep appending to it (reported as a rotation
        problem) rather than fail the write."""
        try:
            self._open_locked()
        except OSError as error:
            if self._fd is not None and self._still_linked():
                self._note_rotate_problem(error, events)
                self._next_check = time.monotonic() + _CHECK_INTERVAL_S
                return
            raise

    def _still_linked(self) -> bool:
        try:
            return os.fstat(self._fd).st_nlink > 0  # type: ignore[arg-type]
        except OSError:
            return False

    def _check_locked(self, now: float, events: list[_Event]) -> None:
        """Reopen if the path was renamed/removed by someone else; refresh the size."""
        self._next_check = now + _CHECK_INTERVAL_S
        try:
            st = os.stat(self._p)
        except FileNotFoundError:
            self._reopen_locked(events)
            return
        except OSError:
            return  # cannot tell (EACCES, EIO...): keep appending to the open file
        if (st.st_dev, st.st_ino) != self._file_id:
            self._reopen_locked(events)
        elif self._regular:
            self._size = st.st_size  # includes what other processes appended

    # ------------------------------------------------------------- rotation

    def _rotate_guarded(self, now: float, events: list[_Event]) -> None:
        try:
            self._rotate_locked(now, events)
        except OSError as error:
            self._rotate_retry_at = now + self._retry_interval_s
            self._note_rotate_problem(error, events)
            if self._fd is None:
                raise
            return
        self._rotate_failing = False

    def _note_rotate_problem(self, error: OSError, events: list[_Event]) -> None:
        if not self._rotate_failing:
            self._rotate_failing = True
            events.append(("problem", error))

    def _backup(self, index: int, gz: bool = False) -> str:
        return f"{self._p}.{index}.gz" if gz else f"{self._p}.{index}"

    def _rotate_locked(self, now: float, events: list[_Event]) -> None:
        # Is the path still our file? (Another process may have rotated it.)
        try:
            st = os.stat(self._p)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self._file_id:
            self._reopen_locked(events)  # rotated by someone else: append to the new file
            return
        self._next_check = now + _CHECK_INTERVAL_S
        if self._backup_count == 0:
            os.ftruncate(self._fd, 0)  # type: ignore[arg-type]
            self._size = 0
            self._torn = False
            return
        n = self._backup_count
        for gz in (False, True):
            try:
                os.remove(self._backup(n, gz))
            except FileNotFoundError:
                pass
        for i in range(n - 1, 0, -1):
            for gz in (False, True):
                try:
                    os.replace(self._backup(i, gz), self._backup(i + 1, gz))
                except FileNotFoundError:
                    pass
        os.replace(self._p, self._backup(1))
        old_id = self._file_id
        reader = None
        if self._compress:
            try:
                reader = os.open(self._backup(1), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                reader = None  # stays uncompressed; nothing lost
        try:
            self._open_locked()
        except OSError:
            if reader is not None:
                os.close(reader)
            raise  # _rotate_guarded keeps appending to the renamed file
        if reader is not None:
            self._queue_compression(reader, old_id, now + _COMPRESS_SETTLE_S)  # type: ignore[arg-type]

    # ---------------------------------------------------------- compression

    def _queue_compression(self, reader: int, file_id: tuple[int, int], not_before: float) -> None:
        queue = self._compress_queue
        queue.append((reader, file_id, not_before))
        while len(queue) > self._backup_count:  # rotated out of the backups already
            _close_quietly(queue.popleft()[0])
        if self._compressor is None:
            self._compressor = threading.Thread(
                target=self._compress_loop, name=f"rqa-otel compress {self.path.name}", daemon=True
            )
            self._compressor.start()

    def _compress_loop(self) -> None:
        while True:
            with self._lock:
                if not self._compress_queue:
                    self._compressor = None
                    return
                reader, file_id, not_before = self._compress_queue.popleft()
            try:
                delay = not_before - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                events: list[_Event] = []
                self._compress_one(reader, file_id, events)
                if events:
                    self._fire(events)
            except Exception:  # never let the thread die with the queue non-empty
                pass
            finally:
                _close_quietly(reader)

    def _find_backup(self, file_id: tuple[int, int]) -> int | None:
        """Index of the uncompressed backup that is ``file_id`` now (caller holds the lock)."""
        for i in range(1, self._backup_count + 1):
            try:
                st = os.stat(self._backup(i))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == file_id:
                return i
        return None

    def _compress_one(self, reader: int, file_id: tuple[int, int], events: list[_Event]) -> None:
        with self._lock:
            if self._find_backup(file_id) is None:
                return  # rotated out (or renamed by someone else) meanwhile
        tmp = str(self.path.with_name(f".{self.path.name}.compressing-{os.getpid()}-{next(_tmp_seq)}.tmp"))
        try:
            raw = open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self._file_mode), "wb")
        except OSError as error:
            self._note_compress_problem(error, events)
            return
        try:
            try:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=_COMPRESS_LEVEL) as gz:
                    position = 0
                    while True:
                        chunk = os.pread(reader, _COMPRESS_CHUNK, position)
                        if not chunk:
                            break
                        gz.write(chunk)
                        position += len(chunk)
                raw.flush()  # BufferedWriter: loops over short writes or raises
                os.fsync(raw.fileno())
                if os.fstat(raw.fileno()).st_size != raw.tell():
                    raise OSError(errno.EIO, "compressed file has the wrong size", tmp)
            finally:
                raw.close()
            with self._lock:
                index = self._find_backup(file_id)
                if index is None:
                    _remove_quietly(tmp)
                    return
                if os.fstat(reader).st_size != position:
                    # A writer that had not noticed the rotation appended meanwhile: leave it uncompressed.
                    _remove_quietly(tmp)
                    return
                os.replace(tmp, self._backup(index, gz=True))
                tmp = ""
                os.remove(self._backup(index))
        except OSError as error:
            if tmp:
                _remove_quietly(tmp)
            self._note_compress_problem(error, events)
            return
        self._compress_failing = False

    def _note_compress_problem(self, error: OSError, events: list[_Event]) -> None:
        if not self._compress_failing:
            self._compress_failing = True
            events.append(("problem", error))

    # ------------------------------------------------------------ callbacks

    def _fire(self, events: list[_Event]) -> None:
        for event in events:
            try:
                if event[0] == "problem":
                    if self._on_problem is not None:
                        self._on_problem(self._p, event[1])
                elif self._on_recovery is not None:
                    self._on_recovery(self._p)
            except Exception:
                pass

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._compressor = None
        while self._compress_queue:  # the parent compresses these
            _close_quietly(self._compress_queue.popleft()[0])


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _remove_quietly(name: str) -> None:
    try:
        os.remove(name)
    except OSError:
        pass


def _after_fork_in_child() -> None:
    for instance in list(_instances):
        instance._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
