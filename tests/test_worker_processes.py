"""Multiprocessing workers deliver what they recorded before they exit, as
themselves (their own process.pid), whatever the start method and however
the pool ends: `with Pool()` (terminate), close() + join(), terminate(), and
concurrent.futures.ProcessPoolExecutor. Under `rqa-otel run`, the scripts
hold no telemetry code; the worker functions use only OpenTelemetry's API
and stdlib logging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otlp_files import LOG_RECORDS, SPANS, attributes, requests
from rqa_otel import names

BIN = Path(sys.executable).parent
STYLES = ("with", "close_join", "terminate", "executor")

SCRIPT = textwrap.dedent(
    """
    import concurrent.futures, json, logging, multiprocessing, os, sys, time
    from opentelemetry import trace

    def task(label):
        with trace.get_tracer("worker").start_as_current_span(label):
            logging.getLogger("worker").warning(label)
        return label, os.getpid()

    def main(method):
        context = multiprocessing.get_context(method)
        done = {}
        for style in ("with", "close_join", "terminate", "executor"):
            labels = [f"{style}-{n}" for n in range(4)]
            if style == "with":
                with context.Pool(2) as pool:       # __exit__ terminates the workers
                    done.update(pool.map(task, labels))
            elif style == "close_join":
                pool = context.Pool(2)
                done.update(pool.map(task, labels))
                pool.close()
                pool.join()
            elif style == "terminate":
                pool = context.Pool(2)
                done.update(pool.map(task, labels))
                pool.terminate()
                pool.join()
            else:
                with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
                    done.update(executor.map(task, labels))
        print(json.dumps(done))

    if __name__ == "__main__":
        main(sys.argv[1])
    """
)


def recorded(path: Path, keys) -> dict[str, int]:
    """label -> the process.pid it was recorded under."""
    found = {}
    for request in requests(path):
        for resource_item in request[keys[0]]:
            pid = int(attributes(resource_item["resource"])[names.PROCESS_PID])
            for scope_item in resource_item[keys[1]]:
                for item in scope_item[keys[2]]:
                    label = item["name"] if keys is SPANS else item["body"]["stringValue"]
                    found[label] = pid
    return found


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_pool_style_delivers_the_workers_records_as_themselves(tmp_path, method):
    (tmp_path / "pools.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    env.update({"RQA_EXPORT__DIRECTORY": str(tmp_path / "telemetry"), "RQA_RESOURCES__ENABLED": "false"})
    completed = subprocess.run(
        [BIN / "rqa-otel", "run", "--", sys.executable, tmp_path / "pools.py", method],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    done = json.loads(completed.stdout.splitlines()[-1])
    assert len(done) == 4 * len(STYLES) and os.getpid() not in done.values()
    spans = recorded(tmp_path / "telemetry" / "traces.jsonl", SPANS)
    logs = recorded(tmp_path / "telemetry" / "logs.jsonl", LOG_RECORDS)
    assert spans == done  # every task's span, under the pid of the worker that ran it
    assert logs == done


SIGTERM_DURING_EXIT = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import rqa_otel
    from opentelemetry import trace
    from rqa_otel.telemetry import flush_then_die_on_sigterm

    handle = rqa_otel.setup(overrides={"export.directory": sys.argv[1], "resources.enabled": False})
    flush_then_die_on_sigterm(handle.flush_before_exit)  # as in every pool worker
    exporter = handle._pipeline.exporters["traces"]
    export = exporter.export

    def slow_export(spans):  # stands in for a slow receiver: the exit hook's export takes a while
        time.sleep(0.5)
        return export(spans)

    exporter.export = slow_export
    with trace.get_tracer("worker").start_as_current_span("the-last-task"):
        pass

    def terminate_during_exit_hook():  # Pool.terminate() arriving while the worker ends
        while not handle.is_shut_down:
            time.sleep(0.005)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_during_exit_hook, daemon=True).start()
    """
)


def test_a_sigterm_while_the_exit_hook_exports_waits_for_that_export(tmp_path):
    """The race behind a terminated spawn pool's lost records: the worker
    had begun to end on its own (its exit hook exporting) when terminate()'s
    SIGTERM came; the signal's flush found the processors shut and the
    process ended before the exit hook's last export was written."""
    (tmp_path / "worker.py").write_text(SIGTERM_DURING_EXIT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    completed = subprocess.run(
        [sys.executable, tmp_path / "worker.py", tmp_path / "telemetry"], env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert completed.returncode in (0, 128 + 15), completed.stderr  # ended by the signal or by itself
    assert "Traceback" not in completed.stderr, completed.stderr
    assert list(recorded(tmp_path / "telemetry" / "traces.jsonl", SPANS)) == ["the-last-task"]
