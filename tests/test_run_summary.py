"""`rqa-otel run`'s own lines: one summary at the end when the program
recorded trading data (silenced by run.quiet / --quiet), and one error line,
before the program runs, when its interpreter cannot import rqa_otel."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from test_run_command import run_env

BIN = Path(sys.executable).parent

TRADES = (
    "import rqa_otel\n"
    "from rqa_otel.trading import BacktestMonitor\n"
    "monitor = BacktestMonitor(rqa_otel.current())\n"
    "for fast in (5, 10):\n"
    "    with monitor.run('dual_ma', {'fast': fast}):\n"
    "        monitor.record_trade('600519.SH', 'buy', 1500.0, 100, 'dual_ma')\n"
    "        monitor.record_trade('600519.SH', 'sell', 1510.0, 100, 'dual_ma')\n"
    "print('finished')\n"
)


def clean_env(tmp_path, **extra):
    return run_env(tmp_path, **{"RQA_RESOURCES__ENABLED": "false", **extra})


def test_one_summary_line_at_the_end_names_runs_trades_and_files(tmp_path):
    telemetry = tmp_path / "telemetry"
    telemetry.mkdir()
    # A journal from an earlier run in the same directory is not this run's.
    earlier = subprocess.run([BIN / "rqa-otel", "run", "--", sys.executable, "-c", TRADES],
                             env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert earlier.returncode == 0, earlier.stderr
    completed = subprocess.run([BIN / "rqa-otel", "run", "--", sys.executable, "-c", TRADES],
                               env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and completed.stdout == "finished\n", completed.stderr
    run_ids = [row[0] for row in sqlite3.connect(telemetry / "trades.db").execute("SELECT run_id FROM runs ORDER BY id")]
    assert len(run_ids) == 4
    assert completed.stderr == f"rqa-otel: 2 runs ({run_ids[2]}, {run_ids[3]}), 4 trades; telemetry in {telemetry}; see it: rqa-otel view {telemetry}\n"


@pytest.mark.parametrize("silence", [["--quiet"], []], ids=["flag", "setting"])
def test_run_quiet_silences_the_summary(tmp_path, silence):
    extra = {} if silence else {"RQA_RUN__QUIET": "true"}
    completed = subprocess.run([BIN / "rqa-otel", "run", *silence, "--", sys.executable, "-c", TRADES],
                               env=clean_env(tmp_path, **extra), capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and completed.stdout == "finished\n"
    assert completed.stderr == ""


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """An interpreter without rqa_otel's dependencies: an unactivated venv."""
    directory = tmp_path_factory.mktemp("bare-venv")
    venv.create(directory, with_pip=False)
    return directory / "bin" / "python"


def test_an_interpreter_without_rqa_otel_fails_in_one_line_naming_it(tmp_path, bare_python):
    completed = subprocess.run([BIN / "rqa-otel", "run", "--", bare_python, "-c", "print('ran')"],
                               env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert completed.returncode != 0 and completed.stdout == ""
    [line] = completed.stderr.splitlines()
    assert re.match(rf"rqa-otel: run: {re.escape(str(bare_python))} cannot import rqa_otel \(.+\); .*--allow-uninstrumented", line)


def test_allow_uninstrumented_runs_the_program_without_telemetry(tmp_path, bare_python):
    completed = subprocess.run(
        [BIN / "rqa-otel", "run", "--allow-uninstrumented", "--", bare_python, "-c", "print('ran')"],
        env=clean_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 0 and completed.stdout == "ran\n" and completed.stderr == ""
