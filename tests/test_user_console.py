"""The user's console stays the user's: under `rqa-otel run` a script prints
exactly what it printed before (stdout and stderr, byte for byte), and
logging.basicConfig() after setup() still configures the console."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otlp_files import log_bodies

BIN = Path(sys.executable).parent

CONFIGURED = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("strategy")
    print("starting", flush=True)
    log.info("bars loaded")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("rebalance failed")
    print("done", file=sys.stderr)
    """
)

# No logging configuration at all: Python prints warnings and errors (and
# their tracebacks) through logging.lastResort.
UNCONFIGURED = textwrap.dedent(
    """
    import logging
    log = logging.getLogger("strategy")
    print("starting")
    log.info("not shown: below lastResort's level")
    log.warning("cash low")
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed")
    print("done")
    """
)


def clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    env.update({"RQA_EXPORT__DIRECTORY": str(tmp_path / "telemetry"), **extra})
    return env


@pytest.mark.parametrize("source", [CONFIGURED, UNCONFIGURED], ids=["basicConfig", "lastResort"])
def test_rqa_otel_run_leaves_stdout_and_stderr_byte_for_byte(tmp_path, source):
    script = tmp_path / "console_strategy.py"
    script.write_text(source)
    plain = subprocess.run([sys.executable, script], capture_output=True, env=clean_env(tmp_path), timeout=60)
    run = subprocess.run([BIN / "rqa-otel", "run", "--", sys.executable, script],
                         capture_output=True, env=clean_env(tmp_path), timeout=60)
    assert plain.returncode == run.returncode == 0, run.stderr
    assert b"Traceback" in plain.stderr  # log.exception's traceback is part of what must survive
    assert run.stdout == plain.stdout
    assert run.stderr == plain.stderr
    # ... and the records were exported as well.
    bodies = log_bodies(tmp_path / "telemetry" / "logs.jsonl")
    assert "rebalance failed" in bodies or "lookup failed" in bodies


def test_basic_config_after_setup_configures_the_console_and_capture_goes_on(tmp_path):
    code = textwrap.dedent(
        f"""
        import logging, rqa_otel
        telemetry = rqa_otel.setup(overrides={{"export.directory": {str(tmp_path)!r}}})
        logging.basicConfig(format="user-format %(levelname)s %(message)s")
        logging.getLogger("strategy").warning("position limit near")
        root = logging.getLogger()
        assert telemetry.logging_handler in root.handlers and len(root.handlers) == 2
        """
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(tmp_path), timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "user-format WARNING position limit near" in completed.stderr.splitlines()
    assert log_bodies(tmp_path / "logs.jsonl") == ["position limit near"]
