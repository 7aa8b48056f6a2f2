"""Python imports this at start-up because ``rqa-otel run`` put this
directory first on PYTHONPATH. It sets telemetry up, then hands over to any
sitecustomize the environment had before, as ``opentelemetry-instrument`` does.

The program `rqa-otel run` started (the process whose pid it recorded, as
execve keeps it) ends at once, with one line, when telemetry cannot be set
up: its interpreter cannot import rqa_otel (unless
``--allow-uninstrumented``), or the settings are bad. Any other Python
process in the tree says so in one line and runs without telemetry.
"""

import gc
import os
import sys

_RUN_PID = "_RQA_OTEL_RUN_PID"
_UNINSTRUMENTED = "_RQA_OTEL_RUN_UNINSTRUMENTED"


def _fail(message: str, code: int) -> None:
    print(f"rqa-otel: run: {message}", file=sys.stderr, flush=True)
    os._exit(code)


def _start_telemetry() -> None:
    # No cyclic GC while telemetry starts: it makes some 30,000 objects that
    # live as long as the process (start() then freezes them for the GC), and
    # each full collection would walk them all again (~20 ms of a start-up).
    # What little garbage start-up leaves is frozen with them.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _set_up()
    finally:
        if collecting:
            gc.enable()


def _set_up() -> None:
    top = os.environ.get(_RUN_PID) == str(os.getpid())
    try:
        from rqa_otel.autostart import start
    except Exception as exc:  # telemetry must never stop a strategy it was not asked to watch
        reason = f"{sys.executable} cannot import rqa_otel ({type(exc).__name__}: {exc})"
        if top and not os.environ.get(_UNINSTRUMENTED):
            _fail(f"{reason}; install rqa-otel for that interpreter, or pass --allow-uninstrumented", 2)
        if not top or not os.environ.get(_UNINSTRUMENTED):
            print(f"rqa-otel: telemetry is off for this process: {reason}", file=sys.stderr)
        return
    try:
        telemetry = start()
    except Exception as exc:
        if top and type(exc).__name__ == "SettingsError":
            _fail(str(exc), 2)  # before the program runs, as a bad option would
        print(f"rqa-otel: telemetry is off for this process: {exc}", file=sys.stderr)
        return
    if top:
        _summarize_at_exit(telemetry)


def _summarize_at_exit(telemetry) -> None:
    """One line at the end when the program recorded trading data (unless
    run.quiet). Registered after setup(), so it runs before the telemetry's
    own exit flush and after the journals of monitors made later."""
    try:
        if telemetry.settings.get("run.quiet"):
            return
        import atexit

        from rqa_otel.cli.run import RunSummary

        atexit.register(RunSummary(telemetry.settings.export.directory).print_at_exit)
    except Exception:
        pass  # a summary is no reason to disturb the program


def _chain_to_next_sitecustomize() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_start_telemetry()
_chain_to_next_sitecustomize()
