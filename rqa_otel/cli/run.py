"""``rqa-otel run``: an unmodified program with telemetry set up in every
Python process it starts (sitecustomize on PYTHONPATH).

The command itself only prepares the environment and execs the program
(same pid, signals and exit status): it imports no telemetry code, so it
costs a bare interpreter start. Settings are checked, and telemetry set up,
in the program's own interpreter by rqa_otel/_bootstrap/sitecustomize.py,
which also ends the run with one line when that interpreter cannot import
rqa_otel or the settings are bad, before the program runs. At the end of
the program, ``summary_line()`` (below) is printed on stderr when trading
data was recorded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing to launch a program
if TYPE_CHECKING:
    import argparse
    from typing import Sequence

# argparse, shutil and the error helper are imported where the command
# needs them: the program it starts imports this module for RunSummary.

BOOTSTRAP_DIR = Path(__file__).resolve().parent.parent / "_bootstrap"
SETTINGS_FILE_VARIABLE = "RQA_SETTINGS_FILE"  # rqa_otel.config.model's, without importing the settings code
RUN_PID_VARIABLE = "_RQA_OTEL_RUN_PID"
"""The pid of the program `rqa-otel run` execs: that process (not its
children) fails when it cannot set telemetry up, and prints the summary."""
UNINSTRUMENTED_VARIABLE = "_RQA_OTEL_RUN_UNINSTRUMENTED"


def add_run_parser(commands) -> None:
    import argparse

    run = commands.add_parser(
        "run",
        help="run an unmodified program with telemetry set up",
        description=(
            "Run COMMAND (usually `python script.py ...`) with rqa-otel telemetry set up in every Python "
            "process it starts, through sitecustomize on PYTHONPATH. Telemetry is flushed on normal exit "
            "and on SIGTERM. Settings come from RQA_* and OTEL_* variables and the settings file."
        ),
        epilog="example: rqa-otel run --strategy mean_rev -- python my_strategy.py --capital 1e6",
    )
    run.add_argument("--strategy", help="strategy name (the rqa.strategy attribute)")
    run.add_argument("--service", help="service name (service.name)")
    run.add_argument("--settings", metavar="FILE", help="settings file (else RQA_SETTINGS_FILE)")
    run.add_argument("--quiet", action="store_true",
                     help="no rqa-otel line on stderr (the summary at the end); the setting run.quiet")
    run.add_argument("--allow-uninstrumented", action="store_true",
                     help="run the program without telemetry when its interpreter cannot import rqa_otel "
                          "(default: fail with one line, before the program runs)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    run.set_defaults(handler=run_command)



def run_command(args: argparse.Namespace) -> int:
    import shutil

    from rqa_otel.cli.arguments import fail

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        return fail("run: no command given; usage: rqa-otel run [--strategy NAME] -- python script.py ...")

    env = dict(os.environ)
    if args.strategy:
        env["RQA_STRATEGY"] = args.strategy
    if args.service:
        env["RQA_SERVICE__NAME"] = args.service
    if args.settings:
        env[SETTINGS_FILE_VARIABLE] = os.path.abspath(args.settings)
    if args.quiet:
        env["RQA_RUN__QUIET"] = "true"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BOOTSTRAP_DIR), env.get("PYTHONPATH")]))
    env[RUN_PID_VARIABLE] = str(os.getpid())  # execve keeps the pid
    if args.allow_uninstrumented:
        env[UNINSTRUMENTED_VARIABLE] = "1"
    else:
        env.pop(UNINSTRUMENTED_VARIABLE, None)

    executable = shutil.which(command[0], path=env.get("PATH"))
    if executable is None:
        return fail(f"run: command not found: {command[0]}", 127)
    script = _python_script(command)
    if script is not None and not Path(script).is_file():
        return fail(f"run: script not found: {script}", 2)
    try:
        os.execve(executable, command, env)
    except OSError as exc:
        return fail(f"run: cannot execute {command[0]}: {exc.strerror}", 126)
    return 0  # not reached


def summary_line(directory: str, run_ids: Sequence[str], trades: int) -> str:
    """The one line printed on stderr at the end of `rqa-otel run` when the
    program recorded trading data (``run.quiet`` silences it): its runs,
    its trades and where the files are."""
    shown = ", ".join(run_ids[:3]) + (f" and {len(run_ids) - 3} more" if len(run_ids) > 3 else "")
    runs = f"{len(run_ids)} run{'s' if len(run_ids) != 1 else ''}" + (f" ({shown})" if run_ids else "")
    return f"rqa-otel: {runs}, {trades} trade{'s' if trades != 1 else ''}; telemetry in {directory}{view_hint(directory)}"


def view_hint(directory: str) -> str:
    """What to type to look at a run's telemetry (the local web view)."""
    return f"; see it: rqa-otel view {directory}"


class RunSummary:
    """What the program adds to the trade journal, from its start to its
    exit (pool workers included: they write the same journal)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.journal = os.path.join(directory, "trades.db")
        self._runs_before, self._trades_before = self._high_marks()

    def _high_marks(self) -> tuple[int, int]:
        if not os.path.exists(self.journal):
            return 0, 0
        try:
            with _reader(self.journal) as journal:
                runs = journal.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0]
                trades = journal.execute("SELECT COALESCE(MAX(id), 0) FROM trades").fetchone()[0]
            return runs, trades
        except Exception:  # not a journal yet: every row is new
            return 0, 0

    def line(self) -> str | None:
        """The summary, or None when nothing was recorded."""
        if not os.path.exists(self.journal):
            return None
        with _reader(self.journal) as journal:
            run_ids = [row[0] for row in journal.execute(
                "SELECT run_id FROM runs WHERE id > ? ORDER BY id", (self._runs_before,))]
            trades = journal.execute("SELECT COUNT(*) FROM trades WHERE id > ?", (self._trades_before,)).fetchone()[0]
        if not run_ids and not trades:
            return None
        return summary_line(self.directory, run_ids, trades)

    def print_at_exit(self) -> None:
        try:
            line = self.line()
        except Exception:
            return  # a summary is no reason to fail a finished program
        if line:
            print(line, file=sys.stderr, flush=True)


class _reader:
    def __init__(self, path: str) -> None:
        import sqlite3  # here: only a program that recorded trades pays for it

        self.connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)

    def __enter__(self):
        return self.connection

    def __exit__(self, *exc) -> None:
        self.connection.close()


def _python_script(command: Sequence[str]) -> str | None:
    """The script a `python ...` command line would run, if it names one."""
    if not Path(command[0]).name.startswith("python"):
        return None
    options_with_value = {"-W", "-X", "-Q"}
    arguments = iter(command[1:])
    for argument in arguments:
        if argument in ("-m", "-c", "-") or argument.startswith(("-m", "-c")):
            return None
        if argument in options_with_value:
            next(arguments, None)
            continue
        if argument.startswith("-"):
            continue
        return argument
    return None
