"""``rqa-otel run``: an unmodified program with telemetry set up in every
Python process it starts (sitecustomize on PYTHONPATH)."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Sequence

from rqa_otel.cli.arguments import fail
from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import SETTINGS_FILE_VARIABLE, SettingsError

BOOTSTRAP_DIR = Path(__file__).resolve().parent.parent / "_bootstrap"


def add_run_parser(commands) -> None:
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
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    run.set_defaults(handler=run_command)



def run_command(args: argparse.Namespace) -> int:
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
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BOOTSTRAP_DIR), env.get("PYTHONPATH")]))

    # Fail here, with the setting named, rather than in every child process.
    try:
        _with_environment(env, load_settings)
    except SettingsError as exc:
        return fail(f"run: {exc}")

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


def _with_environment(env: dict[str, str], call):
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return call()
    finally:
        os.environ.clear()
        os.environ.update(saved)


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


def view_hint(directory: str) -> str:
    """What to type to look at a run's telemetry: the end of `rqa-otel
    run`'s summary line carries it (rqa-otel view, issue 18)."""
    return f"; see it: rqa-otel view {directory}"
