"""Python imports this at start-up because ``rqa-otel run`` put this
directory first on PYTHONPATH. It sets telemetry up, then hands over to any
sitecustomize the environment had before, as ``opentelemetry-instrument`` does.
"""

import os
import sys


def _start_telemetry() -> None:
    try:
        from rqa_otel.autostart import start

        start()
    except Exception as exc:  # telemetry must never stop the strategy from starting
        print(f"rqa-otel: telemetry is off for this process: {exc}", file=sys.stderr)


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
