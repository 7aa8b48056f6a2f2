"""Files holding trades, logs or telemetry are the owner's alone (issue 14,
item 7): created 0600 in 0700 directories, with real files and modes; a
second user (``nobody``, through setpriv in a child process) cannot read
them; ``export.file_mode`` widens them on purpose."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

import rqa_otel
from rqa_otel.config import SettingsError
from rqa_otel.export.files.rotating import RotatingFile
from rqa_otel.trading.monitor import BacktestMonitor


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_base():
    """A directory any user may traverse (pytest's own tmp_path is 0700,
    which would hide every file from a second user whatever its mode)."""
    base = Path(tempfile.mkdtemp(prefix="rqa-modes-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _run(base: Path, **overrides) -> rqa_otel.Telemetry:
    telemetry = rqa_otel.setup(
        overrides={
            "export.directory": str(base / "telemetry"), "logging.file": str(base / "logs" / "app.log"),
            "rotation.max_bytes": 4096, "rotation.compress": True, **overrides,
        },
        strategy="dual_ma", set_global=False,
    )
    monitor = BacktestMonitor(telemetry)
    log = telemetry.get_logger("modes")
    for i in range(200):
        monitor.record_trade("600519.SH", "buy", 1688.5, 100, "dual_ma", timestamp=1_700_000_000_000_000_000 + i)
        log.warning("order %d filled", i)
        with telemetry.tracer.start_as_current_span("bar"):
            pass
    monitor.flush()
    telemetry.force_flush()
    telemetry.shutdown()
    monitor.close()
    return telemetry


def _written(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*") if p.is_file())


def test_files_are_owner_only_by_default(open_base: Path) -> None:
    _run(open_base)
    files = _written(open_base)
    names = {p.name for p in files}
    assert {"trades.db", "traces.jsonl", "metrics.jsonl", "logs.jsonl", "app.log"} <= names
    assert any(name.endswith(".1") or name.endswith(".1.gz") for name in names), names  # rotated copies too
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: "0o600" for p in files}
    for directory in (open_base / "telemetry", open_base / "logs"):
        assert oct(_mode(directory)) == "0o700"
    assert oct(_mode(open_base)) == "0o755"  # an existing directory is not changed


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to act as a second user")
def test_a_second_user_cannot_read_them(open_base: Path) -> None:
    _run(open_base)
    for path in (open_base / "telemetry" / "trades.db", open_base / "telemetry" / "logs.jsonl", open_base / "logs" / "app.log"):
        result = subprocess.run(
            ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "cat", str(path)],
            capture_output=True, timeout=10,
        )
        read = len(result.stdout)
        assert result.returncode != 0 and b"Permission denied" in result.stderr, f"nobody read {read} bytes of {path}"
    # The same step as root reads it: the refusal above is the mode's doing.
    assert (open_base / "logs" / "app.log").read_text().count("order") > 0


def test_export_file_mode_widens_them_on_purpose(open_base: Path) -> None:
    _run(open_base, **{"export.file_mode": "0640"})
    for path in (open_base / "telemetry" / "trades.db", open_base / "logs" / "app.log"):
        assert oct(_mode(path)) == "0o640"
    assert oct(_mode(open_base / "telemetry")) == "0o750"


def test_an_older_wider_file_is_narrowed(open_base: Path) -> None:
    old = open_base / "old.log"
    old.write_text("from an older version\n")
    old.chmod(0o644)
    file = RotatingFile(old)
    file.write_lines(b"x\n")
    file.close()
    assert oct(_mode(old)) == "0o600"


@pytest.mark.parametrize("value", ["0755", "0400", "rw", "0o1600"])
def test_a_bad_file_mode_is_one_clear_error(value: str) -> None:
    with pytest.raises(SettingsError, match="export.file_mode"):
        rqa_otel.load_settings(overrides={"export.file_mode": value})
