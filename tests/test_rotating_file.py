"""RotatingFile on real file systems: the test directory, /dev/full, /dev/null
and a tiny tmpfs mounted for the test (needs root; skipped otherwise)."""

from __future__ import annotations

import errno
import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rqa_otel.export.files import rotating as rotating_file
from rqa_otel.export.files.rotating import RotatingFile

RETRY_S = 0.05


# ---------------------------------------------------------------- helpers


class Calls:
    """Records on_problem / on_recovery calls."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, OSError]] = []
        self.recoveries: list[str] = []

    def problem(self, path: str, error: OSError) -> None:
        self.problems.append((path, error))

    def recovery(self, path: str) -> None:
        self.recoveries.append(path)


def line(seq: int, pad: int = 40, tag: str = "") -> bytes:
    return json.dumps({"seq": seq, "tag": tag, "pad": "x" * pad}, separators=(",", ":")).encode() + b"\n"


def parse_lines(data: bytes) -> list[dict]:
    """Every line of ``data`` as JSON; fails on a torn or unterminated line."""
    assert data == b"" or data.endswith(b"\n"), f"unterminated last line: {data[-80:]!r}"
    return [json.loads(raw) for raw in data.split(b"\n")[:-1]]


def read_any(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()


def chain(path: Path, backup_count: int) -> list[Path]:
    """The files of a rotation set, oldest first (each backup either plain or .gz)."""
    files = []
    for i in range(backup_count, 0, -1):
        plain, gz = Path(f"{path}.{i}"), Path(f"{path}.{i}.gz")
        assert not (plain.exists() and gz.exists()), f"both {plain.name} and {gz.name} exist"
        if plain.exists() or gz.exists():
            files.append(plain if plain.exists() else gz)
    if path.exists():
        files.append(path)
    return files


def hidden_temporaries(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".") and name.endswith(".tmp")]


# ---------------------------------------------------------------- 1. rotation


def test_rotation_keeps_whole_batches_in_order_and_drops_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "traces.jsonl"  # the directory is created on first use
    max_bytes, backup_count = 10_000, 3
    rf = RotatingFile(path, max_bytes=max_bytes, backup_count=backup_count)
    seq = 0
    batch_of_line: dict[int, int] = {}
    for batch in range(300):
        lines = []
        for _ in range(1 + batch % 7):
            lines.append(line(seq, pad=20 + seq % 50))
            batch_of_line[seq] = batch
            seq += 1
        assert rf.write_lines(lines, count=len(lines)) is True
    rf.close()

    files = chain(path, backup_count)
    assert [f.name for f in files] == ["traces.jsonl.3", "traces.jsonl.2", "traces.jsonl.1", "traces.jsonl"]
    assert not Path(f"{path}.4").exists()
    seqs: list[int] = []
    for f in files:
        data = f.read_bytes()
        assert len(data) <= max_bytes
        in_file = [record["seq"] for record in parse_lines(data)]
        assert in_file, f"{f.name} is empty"
        seqs += in_file
        # No batch is split across files: the batches at the edges are complete in this file.
        for edge in (in_file[0], in_file[-1]):
            members = [s for s, b in batch_of_line.items() if b == batch_of_line[edge]]
            assert set(members) <= set(in_file), f"batch {batch_of_line[edge]} split at {f.name}"
    # The newest N+1 files hold one contiguous run ending with the last line; older lines are gone.
    assert seqs == list(range(seqs[0], seq))
    assert seqs[0] > 0
    assert rf.lost_records == 0 and not rf.failing


def test_a_batch_larger_than_max_bytes_goes_alone_into_one_file(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    rf = RotatingFile(path, max_bytes=1_000, backup_count=5)
    small = [line(0)]
    big = [line(i) for i in range(1, 60)]  # ~4 KB
    assert rf.write_lines(small) and rf.write_lines(big, count=len(big)) and rf.write_lines([line(60)])
    rf.close()
    assert [r["seq"] for r in parse_lines(Path(f"{path}.2").read_bytes())] == [0]
    assert [r["seq"] for r in parse_lines(Path(f"{path}.1").read_bytes())] == list(range(1, 60))
    assert [r["seq"] for r in parse_lines(path.read_bytes())] == [60]


def test_max_bytes_zero_never_rotates(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    with RotatingFile(path, max_bytes=0, backup_count=2) as rf:
        for i in range(500):
            assert rf.write_lines([line(i)])
    assert os.listdir(tmp_path) == ["a.log"]
    assert [r["seq"] for r in parse_lines(path.read_bytes())] == list(range(500))


def test_backup_count_zero_truncates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    with RotatingFile(path, max_bytes=2_000, backup_count=0) as rf:
        for i in range(500):
            assert rf.write_lines([line(i)])
    assert os.listdir(tmp_path) == ["a.log"]
    data = path.read_bytes()
    assert 0 < len(data) <= 2_000
    seqs = [r["seq"] for r in parse_lines(data)]
    assert seqs == list(range(seqs[0], 500))


def test_existing_file_is_appended_to_and_counted_for_rotation(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(line(i) for i in range(10)))
    before = path.stat().st_size
    with RotatingFile(path, max_bytes=before + 10, backup_count=1) as rf:
        assert rf.write_lines([line(10)])
    assert [r["seq"] for r in parse_lines(Path(f"{path}.1").read_bytes())] == list(range(10))
    assert [r["seq"] for r in parse_lines(path.read_bytes())] == [10]


def test_a_torn_last_line_left_by_a_crash_stays_a_separate_line(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(line(0) + b'{"seq":1,"ta')
    old = time.time() - 60
    os.utime(path, (old, old))  # a recently written file may be another writer's half-done batch
    with RotatingFile(path, max_bytes=0) as rf:
        assert rf.write_lines([line(2)])
    assert path.read_bytes() == line(0) + b'{"seq":1,"ta' + b"\n" + line(2)


def test_rotation_failure_keeps_writing_to_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    blocker = Path(f"{path}.1")
    blocker.mkdir()
    (blocker / "keep").write_text("a directory where the oldest backup should be")
    calls = Calls()
    rf = RotatingFile(path, max_bytes=500, backup_count=1, on_problem=calls.problem, on_recovery=calls.recovery,
                      retry_interval_s=RETRY_S)
    for i in range(50):
        assert rf.write_lines([line(i)]) is True
    assert rf.lost_records == 0 and not rf.failing
    assert len(calls.problems) == 1  # once for the episode, not once per write
    assert calls.problems[0][1].errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EPERM)
    assert [r["seq"] for r in parse_lines(path.read_bytes())] == list(range(50))  # grew past max_bytes

    (blocker / "keep").unlink()
    blocker.rmdir()
    time.sleep(RETRY_S * 2)
    assert rf.write_lines([line(50)])
    rf.close()
    assert [r["seq"] for r in parse_lines(blocker.read_bytes())] == list(range(50))
    assert [r["seq"] for r in parse_lines(path.read_bytes())] == [50]
    assert calls.recoveries == []  # on_recovery is about write failures only


def test_writes_after_close_are_counted_as_lost(tmp_path: Path) -> None:
    rf = RotatingFile(tmp_path / "a.log")
    assert rf.write_lines([line(0)])
    rf.close()
    rf.close()
    assert rf.write_lines([line(1), line(2)], count=2) is False
    assert rf.lost_records == 2


# ---------------------------------------------------------------- 2. compression


def test_compressed_backups_hold_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    max_bytes, backup_count = 20_000, 4
    calls = Calls()
    rf = RotatingFile(path, max_bytes=max_bytes, backup_count=backup_count, compress=True, on_problem=calls.problem)
    seq = 0
    started = time.monotonic()
    slowest = 0.0
    for batch in range(400):
        lines = [line(seq + i, pad=30 + (seq + i) % 40) for i in range(5)]
        seq += 5
        t0 = time.perf_counter()
        assert rf.write_lines(lines, count=5)
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < 0.5, "a write waited for compression"
    assert rf.join_compression(timeout_s=30), "compression did not finish in time"
    rf.close()
    assert calls.problems == []

    files = chain(path, backup_count)
    assert [f.name for f in files] == [f"logs.jsonl.{i}.gz" for i in range(backup_count, 0, -1)] + ["logs.jsonl"]
    assert not any(Path(f"{path}.{i}").exists() for i in range(1, backup_count + 2))
    assert not Path(f"{path}.{backup_count + 1}.gz").exists()
    assert hidden_temporaries(tmp_path) == []
    seqs = []
    for f in files:
        data = read_any(f)
        assert len(data) <= max_bytes
        seqs += [r["seq"] for r in parse_lines(data)]
    assert seqs == list(range(seqs[0], seq)) and seqs[0] > 0
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------- 3. /dev/full


def test_dev_full_loses_exactly_the_records_and_reports_once(tmp_path: Path) -> None:
    link = tmp_path / "full.jsonl"
    link.symlink_to("/dev/full")
    calls = Calls()
    rf = RotatingFile(link, max_bytes=0, on_problem=calls.problem, on_recovery=calls.recovery, retry_interval_s=0.01)
    expected_lost = 0
    for i in range(300):
        count = 1 + i % 4
        assert rf.write_lines([line(i)] * count, count=count) is False
        expected_lost += count
        if i % 50 == 0:
            time.sleep(0.02)  # let some writes be real retries
    assert rf.lost_records == expected_lost
    assert rf.failing
    assert len(calls.problems) == 1
    assert calls.problems[0][0] == str(link)
    assert calls.problems[0][1].errno == errno.ENOSPC
    assert calls.recoveries == []
    rf.close()
    assert link.is_symlink()


def test_dev_full_directly_and_a_raising_callback(tmp_path: Path) -> None:
    def explode(path: str, error: OSError) -> None:
        raise RuntimeError("callbacks must not break the writer")

    rf = RotatingFile("/dev/full", max_bytes=0, on_problem=explode, retry_interval_s=0.0)
    for _ in range(20):
        assert rf.write_lines(b"abc\n", count=7) is False
    assert rf.lost_records == 140
    rf.close()


def test_non_regular_files_are_never_rotated(tmp_path: Path) -> None:
    link = tmp_path / "null.log"
    link.symlink_to("/dev/null")
    with RotatingFile(link, max_bytes=10, backup_count=2) as rf:
        for i in range(100):
            assert rf.write_lines([line(i)])
    assert sorted(os.listdir(tmp_path)) == ["null.log"] and link.is_symlink()


# ---------------------------------------------------------------- 4. a real, tiny tmpfs


@pytest.fixture
def tiny_tmpfs(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A 256 KiB tmpfs mounted for this test."""
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (mount -t tmpfs); not root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mountpoint)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        if "permission denied" in message.lower() or "not permitted" in message.lower():
            pytest.skip(f"mount -t tmpfs refused: {message}")
        pytest.fail(f"mount -t tmpfs failed: {message}")

    def unmount() -> None:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)

    request.addfinalizer(unmount)
    return mountpoint


def fill(path: Path, leave_free: int = 0) -> None:
    """Grow ``path`` until the file system is full, then give back ``leave_free`` bytes."""
    with open(path, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        if leave_free:
            f.truncate(max(0, f.tell() - leave_free))


class WriteSpy:
    """Wraps os.write to see the short writes the kernel does right before ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.short = 0
        real = os.write

        def write(fd: int, data) -> int:
            self.calls += 1
            n = real(fd, data)
            if n < len(data):
                self.short += 1
            return n

        monkeypatch.setattr(os, "write", write)


def test_full_tmpfs_keeps_whole_lines_and_recovers(tiny_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\0" * 64 * 1024)
    path = tiny_tmpfs / "logs" / "t.jsonl"
    calls = Calls()
    rf = RotatingFile(path, max_bytes=0, on_problem=calls.problem, on_recovery=calls.recovery,
                      retry_interval_s=RETRY_S)
    spy = WriteSpy(monkeypatch)
    written: list[bytes] = []
    seq = 0
    failed_counts = []
    for _ in range(1000):
        batch = [line(seq + i, pad=60) for i in range(37)]  # ~3.7 KB: not page aligned
        seq += 37
        if not rf.write_lines(batch, count=len(batch)):
            failed_counts.append(len(batch))
            break
        written.extend(batch)
    else:
        pytest.fail("the 256 KiB tmpfs never filled up")
    assert spy.short >= 1, "expected the kernel to write part of the failing batch"
    assert rf.failing and len(calls.problems) == 1
    assert calls.problems[0][1].errno == errno.ENOSPC

    # Within the retry interval: counted as lost without touching the file.
    calls_before = spy.calls
    for count in (1, 5, 9):
        assert rf.write_lines([line(-1)] * count, count=count) is False
        failed_counts.append(count)
    assert spy.calls == calls_before
    # After it: a real attempt, still failing, still one report.
    time.sleep(RETRY_S * 2)
    assert rf.write_lines([line(-2, pad=8000)], count=3) is False
    failed_counts.append(3)
    assert spy.calls > calls_before
    assert rf.lost_records == sum(failed_counts)
    assert len(calls.problems) == 1 and calls.recoveries == []

    # Only whole lines on disk: exactly the batches that were accepted.
    data = path.read_bytes()
    assert data == b"".join(written)
    assert len(parse_lines(data)) == len(written)

    filler.unlink()
    time.sleep(RETRY_S * 2)
    recovered = [line(10**6 + i) for i in range(10)]
    assert rf.write_lines(recovered, count=10) is True
    assert not rf.failing
    assert calls.recoveries == [str(path)] and len(calls.problems) == 1
    assert rf.write_lines([line(10**7)]) is True
    assert calls.recoveries == [str(path)]
    rf.close()
    assert path.read_bytes() == b"".join(written) + b"".join(recovered) + line(10**7)
    assert rf.lost_records == sum(failed_counts)


def test_full_tmpfs_without_truncate_seals_the_torn_line(tiny_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\0" * 64 * 1024)
    path = tiny_tmpfs / "t.jsonl"
    rf = RotatingFile(path, max_bytes=0, retry_interval_s=RETRY_S)

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "ftruncate refused (test)")

    monkeypatch.setattr(os, "ftruncate", no_truncate)
    written: list[bytes] = []
    failed: list[bytes] = []
    for i in range(1000):
        batch = [line(i * 37 + j, pad=60) for j in range(37)]
        if not rf.write_lines(batch, count=37):
            failed = batch
            break
        written.extend(batch)
    assert failed, "the 256 KiB tmpfs never filled up"
    torn = path.read_bytes()[len(b"".join(written)):]
    assert torn and b"".join(failed).startswith(torn) and not torn.endswith(b"\n")

    filler.unlink()
    time.sleep(RETRY_S * 2)
    assert rf.write_lines([line(-1)])
    rf.close()
    data = path.read_bytes()
    assert data == b"".join(written) + torn + b"\n" + line(-1)
    # The torn fragment is a line of its own; the next record parses.
    assert parse_lines(data[len(b"".join(written)) + len(torn) + 1:]) == parse_lines(line(-1))
    assert rf.lost_records == 37


def test_compression_out_of_space_keeps_the_rotated_data(tiny_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotating_file, "_COMPRESS_SETTLE_S", 0.0)
    path = tiny_tmpfs / "c.log"
    calls = Calls()
    # ~60 KiB of incompressible-ish lines (random hex): their gzip needs ~30 KiB.
    first = [json.dumps({"seq": i, "r": os.urandom(100).hex()}).encode() + b"\n" for i in range(270)]
    max_bytes = len(b"".join(first)) + 100
    rf = RotatingFile(path, max_bytes=max_bytes, backup_count=2, compress=True, on_problem=calls.problem,
                      on_recovery=calls.recovery, retry_interval_s=RETRY_S)
    assert rf.write_lines(first, count=len(first))
    fill(tiny_tmpfs / "filler", leave_free=12 * 1024)

    second = [line(1000 + i) for i in range(20)]  # ~1.3 KB: rotates, fits in the space left
    assert rf.write_lines(second, count=len(second))
    assert rf.join_compression(timeout_s=30)
    assert len(calls.problems) == 1 and calls.problems[0][1].errno == errno.ENOSPC
    assert calls.recoveries == [] and rf.lost_records == 0 and not rf.failing
    assert Path(f"{path}.1").read_bytes() == b"".join(first)  # uncompressed backup kept, intact
    assert not Path(f"{path}.1.gz").exists()
    assert hidden_temporaries(tiny_tmpfs) == []
    assert path.read_bytes() == b"".join(second)

    # With space again the next backup is compressed; the uncompressed one shifts on as .2.
    (tiny_tmpfs / "filler").unlink()
    third = [line(2000 + i, pad=5000) for i in range(13)]  # > max_bytes in total: forces a rotation
    for entry in third:
        assert rf.write_lines([entry])
    assert rf.join_compression(timeout_s=30)
    rf.close()
    assert Path(f"{path}.2").read_bytes() == b"".join(first)
    assert read_any(Path(f"{path}.1.gz")) + path.read_bytes() == b"".join(second + third)
    assert not Path(f"{path}.1").exists() and hidden_temporaries(tiny_tmpfs) == []
    assert len(calls.problems) == 1


# ---------------------------------------------------------------- 5. external rotation


def test_file_renamed_or_removed_by_someone_else_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    rf = RotatingFile(path, max_bytes=0)
    assert rf.write_lines([line(0)])
    moved = tmp_path / "app.log-20250101"
    os.rename(path, moved)  # like logrotate (without copytruncate)
    time.sleep(rotating_file._CHECK_INTERVAL_S + 0.1)
    assert rf.write_lines([line(1)])
    assert [r["seq"] for r in parse_lines(moved.read_bytes())] == [0]
    assert [r["seq"] for r in parse_lines(path.read_bytes())] == [1]

    path.unlink()
    time.sleep(rotating_file._CHECK_INTERVAL_S + 0.1)
    assert rf.write_lines([line(2)])
    rf.close()
    assert [r["seq"] for r in parse_lines(path.read_bytes())] == [2]
    assert rf.lost_records == 0


def test_directory_removed_by_someone_else_is_recreated(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    path = directory / "app.log"
    rf = RotatingFile(path, max_bytes=0)
    assert rf.write_lines([line(0)])
    path.unlink()
    directory.rmdir()
    time.sleep(rotating_file._CHECK_INTERVAL_S + 0.1)
    assert rf.write_lines([line(1)])
    rf.close()
    assert [r["seq"] for r in parse_lines(path.read_bytes())] == [1]


# ---------------------------------------------------------------- 6. concurrency


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_threads_write_every_line_exactly_once(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "t.jsonl"
    threads_n, batches_n, per_batch = 8, 2_000, 3
    rf = RotatingFile(path, max_bytes=256 * 1024, backup_count=100, compress=compress)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for b in range(batches_n):
                lines = [json.dumps({"t": t, "b": b, "i": i, "pad": "y" * (b % 30)}).encode() + b"\n"
                         for i in range(per_batch)]
                assert rf.write_lines(lines, count=per_batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert rf.join_compression(timeout_s=60)
    rf.close()

    files = chain(path, 100)
    assert len(files) > 3, "expected several rotations"
    if compress:
        assert all(f.name.endswith(".gz") for f in files[:-1])
    seen: dict[int, list[tuple[int, int]]] = {t: [] for t in range(threads_n)}
    for f in files:
        for record in parse_lines(read_any(f)):
            seen[record["t"]].append((record["b"], record["i"]))
    for t in range(threads_n):
        # Exactly once, and in each thread's order across all the files.
        assert seen[t] == [(b, i) for b in range(batches_n) for i in range(per_batch)]
    assert rf.lost_records == 0


def test_processes_append_whole_batches_to_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    script = textwrap.dedent(
        """
        import json, sys
        from rqa_otel.export.files.rotating import RotatingFile
        who, path = int(sys.argv[1]), sys.argv[2]
        rf = RotatingFile(path, max_bytes=0)
        for b in range(500):
            rf.write_lines([json.dumps({"p": who, "b": b, "i": i, "pad": "z" * 300}).encode() + b"\\n"
                            for i in range(10)], count=10)
        rf.close()
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(p), str(path)]) for p in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4
    seen: dict[int, list[tuple[int, int]]] = {p: [] for p in range(4)}
    records = parse_lines(path.read_bytes())
    for position in range(0, len(records), 10):  # batches are never interleaved
        group = records[position:position + 10]
        assert len({(r["p"], r["b"]) for r in group}) == 1
    for record in records:
        seen[record["p"]].append((record["b"], record["i"]))
    for p in range(4):
        assert seen[p] == [(b, i) for b in range(500) for i in range(10)]
