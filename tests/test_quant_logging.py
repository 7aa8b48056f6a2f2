"""The quant logging pipeline end to end, on real files and a real OTLP receiver."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time

import pytest

import rqa_otel
from otlp_files import items as otlp_json
from rqa_otel import names
from rqa_otel.quant import quant_context


def telemetry_for(tmp_path, **overrides):
    return rqa_otel.setup(
        strategy="alpha",
        overrides={"export.directory": str(tmp_path / "out"), **overrides},
        set_global=False,
    )


def log_records(tmp_path):
    for record in otlp_json(tmp_path / "out" / "logs.jsonl", "resourceLogs", "scopeLogs", "logRecords"):
        attributes = {a["key"]: next(iter(a["value"].values())) for a in record.get("attributes", [])}
        yield record, attributes


def metric_points(tmp_path, name):
    for metric in otlp_json(tmp_path / "out" / "metrics.jsonl", "resourceMetrics", "scopeMetrics", "metrics"):
        if metric["name"] == name:
            for point in metric["sum"]["dataPoints"]:
                yield {a["key"]: next(iter(a["value"].values())) for a in point["attributes"]}, int(point["asInt"])


def last_metric_values(tmp_path, name):
    values = {}
    for attributes, value in metric_points(tmp_path, name):  # cumulative: the last export wins
        values[tuple(sorted(attributes.items()))] = value
    return values


def test_quant_attributes_per_call_bound_and_default_reach_rotel(rotel):
    telemetry = rqa_otel.setup(
        strategy="alpha",
        overrides={"export.logs": "otlp", "export.traces": "none", "export.metrics": "none",
                   "export.otlp.endpoint": rotel.grpc_endpoint},
        set_global=False,
    )
    log = telemetry.get_logger("quant.e2e")
    tracer = rqa_otel.setup(overrides={"export.traces": "console"}, set_global=False).tracer
    log.info("plain")
    with quant_context(stock="000001.SZ", signal="SELL"):
        log.info("bound")
        log.info("per call wins", extra={"stock": "600519.SH", "strategy": 42})
    with tracer.start_as_current_span("bar") as span:
        log.info("in span")
        span_context = span.get_span_context()
    assert telemetry.shutdown(timeout_s=10)

    def attributes(body):
        [record] = rotel.wait_for_log(body)
        return record, record["attributes"]

    _, plain = attributes("plain")
    assert (plain[names.STRATEGY], plain[names.STOCK], plain[names.SIGNAL]) == ("alpha", "N/A", "NONE")
    _, bound = attributes("bound")
    assert (bound[names.STRATEGY], bound[names.STOCK], bound[names.SIGNAL]) == ("alpha", "000001.SZ", "SELL")
    _, per_call = attributes("per call wins")
    assert (per_call[names.STRATEGY], per_call[names.STOCK], per_call[names.SIGNAL]) == ("42", "600519.SH", "SELL")
    record, _ = attributes("in span")
    assert int(record["trace_id"], 16) == span_context.trace_id
    assert int(record["span_id"], 16) == span_context.span_id


def test_a_hundred_strategies_logging_from_threads_keep_their_attributes(tmp_path):
    telemetry = telemetry_for(tmp_path)
    log = telemetry.get_logger("quant.concurrent")
    start = threading.Barrier(100)

    def strategy(number):
        name = f"strategy-{number:03d}"
        start.wait()
        for bar in range(200):
            with quant_context(strategy=name, signal="BUY" if bar % 2 else "SELL"):
                log.info("%s bar %d", name, bar, extra={"stock": f"{number:06d}.SZ"})

    threads = [threading.Thread(target=strategy, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert telemetry.shutdown(timeout_s=30)

    seen = 0
    for record, attributes in log_records(tmp_path):
        name, _, bar = record["body"]["stringValue"].partition(" bar ")
        number = int(name.rsplit("-", 1)[1])
        assert attributes[names.STRATEGY] == name
        assert attributes[names.STOCK] == f"{number:06d}.SZ"
        assert attributes[names.SIGNAL] == ("BUY" if int(bar) % 2 else "SELL")
        seen += 1
    assert seen == 100 * 200
    assert telemetry.log_drops() == {}


def test_sampling_summary_and_counters_agree_exactly(tmp_path):
    telemetry = telemetry_for(
        tmp_path,
        **{"logging.level": "DEBUG", "logging.sampling.rules": [{"logger": "quant.feed", "level": "DEBUG", "ratio": 0.1}]},
    )
    feed = telemetry.get_logger("quant.feed.ticks")
    for i in range(1_000):
        feed.debug("tick %d", i)
    for i in range(10):
        feed.warning("gap %d", i)  # never sampled
    assert telemetry.shutdown(timeout_s=10)

    records = list(log_records(tmp_path))
    kept = [r for r, _ in records if r["body"]["stringValue"].startswith("tick")]
    warnings = [r for r, _ in records if r["body"]["stringValue"].startswith("gap")]
    summaries = [a for r, a in records if a.get(names.LOG_SUPPRESSED_COUNT) is not None]
    assert len(kept) == 100 and len(warnings) == 10
    assert sum(int(a[names.LOG_SUPPRESSED_COUNT]) for a in summaries) == 900
    assert all(a[names.LOG_LOGGER] == "quant.feed.ticks" and a[names.LOG_LEVEL] == "DEBUG" for a in summaries)
    assert "900 similar records suppressed" in " ".join(
        r["body"]["stringValue"] for r, a in records if a.get(names.LOG_SUPPRESSED_COUNT)
    )
    suppressed = last_metric_values(tmp_path, names.LOG_RECORDS_SUPPRESSED_COUNTER)
    assert suppressed == {((names.LOG_LEVEL, "DEBUG"), (names.LOG_LOGGER, "quant.feed.ticks")): 900}
    dropped = last_metric_values(tmp_path, names.LOG_RECORDS_DROPPED_COUNTER)
    assert dropped == {((names.LOG_DROP_REASON, "sampled"), (names.LOG_LEVEL, "DEBUG")): 900}


def test_dead_collector_costs_callers_a_bounded_wait_and_drops_are_counted(rotel):
    telemetry = rqa_otel.setup(
        overrides={
            "export.logs": "otlp", "export.traces": "none", "export.metrics": "none",
            "export.otlp.endpoint": rotel.grpc_endpoint, "export.otlp.timeout_s": 30,
            "logging.queue_size": 1_000, "logging.batch_size": 500, "logging.max_wait_s": 0.05,
            "export.shutdown_timeout_s": 1,
        },
        set_global=False,
    )
    log = telemetry.get_logger("quant.outage")
    os.kill(rotel.process.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        slowest = 0.0
        for i in range(5_000):
            started = time.perf_counter()
            if i % 10 == 0:
                log.error("risk check %d", i)
            else:
                log.info("quote %d", i)
            slowest = max(slowest, time.perf_counter() - started)
        drops = telemetry.log_drops()
        telemetry.shutdown()
    finally:
        os.kill(rotel.process.pid, signal.SIGCONT)
    assert slowest < 0.5, f"a logging call blocked for {slowest:.3f} s"
    assert drops[("queue_full", "INFO")] > 3_000
    assert drops.get(("queue_full", "ERROR"), 0) < drops[("queue_full", "INFO")] / 10, "errors are kept in preference"


DISK_FULL_PAYLOAD = "x" * 200


def test_full_disk_never_stops_the_strategy_and_raises_one_alert(tmp_path):
    telemetry = telemetry_for(tmp_path, **{"logging.file": "/dev/full", "rotation.max_bytes": 0})
    log = telemetry.get_logger("quant.diskfull")
    for i in range(3):
        for _ in range(100):
            log.info(DISK_FULL_PAYLOAD)
        telemetry.force_flush()
    assert telemetry.shutdown(timeout_s=10)

    assert telemetry.log_drops() == {("write_failed", "INFO"): 300}
    assert len(list(log_records(tmp_path))) == 300, "the primary exporter was not affected"
    alerts = [
        span for span in otlp_json(tmp_path / "out" / "traces.jsonl", "resourceSpans", "scopeSpans", "spans")
        if span["name"] == names.ALERT_SPAN
    ]
    assert len(alerts) == 1
    alert = {a["key"]: next(iter(a["value"].values())) for a in alerts[0]["attributes"]}
    assert alert[names.ALERT_NAME] == names.LOG_EXPORT_FAILED_ALERT and alert[names.ALERT_SEVERITY] == "critical"


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_text_log_on_a_full_tmpfs_resumes_when_space_returns(tmp_path, tiny_tmpfs):
    filler = tiny_tmpfs / "filler"
    text_log = tiny_tmpfs / "strategy.log"
    telemetry = telemetry_for(tmp_path, **{"logging.file": str(text_log), "rotation.max_bytes": 0})
    log = telemetry.get_logger("quant.tmpfs")
    filler.write_bytes(b"\0" * 60_000)
    for i in range(50):
        log.info("before %d %s", i, DISK_FULL_PAYLOAD)
    telemetry.force_flush()
    lost = telemetry.log_drops().get(("write_failed", "INFO"), 0)
    assert lost > 0, "the tmpfs was expected to fill up"

    filler.unlink()
    time.sleep(1.1)  # the writer retries at most once a second while failing
    for i in range(5):
        log.info("after %d", i)
    assert telemetry.shutdown(timeout_s=10)

    lines = text_log.read_text().splitlines()
    assert [line for line in lines if " after " in line], "writing resumed by itself"
    assert all(line.startswith("20") for line in lines), "only whole lines in the file"
    written_before = sum(" before " in line for line in lines)
    assert written_before + lost == 50


INJECTION_PAYLOADS = ["bob\n2026-01-01 INFO admin ok", "\x1b[2J\x1b[31m", "\x1b]0;t\x07", "\u2028", "\x85", "\x9b31m", "\x00"]


def test_injection_payloads_stay_on_one_visible_line(tmp_path):
    text_log = tmp_path / "strategy.log"
    telemetry = telemetry_for(tmp_path, **{"logging.file": str(text_log)})
    log = telemetry.get_logger("quant.inject")
    for payload in INJECTION_PAYLOADS:
        log.warning("user %s", payload, extra={"stock": payload, payload: "v"})
    try:
        raise ValueError("bad\nline")
    except ValueError:
        log.exception("order failed")
    assert telemetry.shutdown(timeout_s=10)

    lines = text_log.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(INJECTION_PAYLOADS) + 1
    forbidden = {chr(c) for c in list(range(0x20)) + [0x7F] + list(range(0x80, 0xA0))} | {"\u2028", "\u2029"}
    for line in lines[:-1]:
        assert not forbidden & set(line), repr(line)
    assert "bob\\n2026-01-01 INFO admin ok" in lines[0]
    assert "\\x1b[2J\\x1b[31m" in lines[1]


def test_secrets_are_scrubbed_from_logs_and_spans(tmp_path):
    text_log = tmp_path / "strategy.log"
    telemetry = telemetry_for(tmp_path, **{"logging.file": str(text_log)})
    telemetry.register_secret("vault-decrypted-7f3a9c")
    log = telemetry.get_logger("quant.secrets")
    log.info("login password=hunter2 ok", extra={"api_key": "AKIA-123456", "note": "uses vault-decrypted-7f3a9c"})
    with telemetry.tracer.start_as_current_span("connect", attributes={"db.password": "s3cr3t-db", "host": "broker"}) as span:
        span.add_event("auth", {"authorization": "Bearer eyJhbGciOi.payload.sig"})
    assert telemetry.shutdown(timeout_s=10)

    exported = (tmp_path / "out" / "logs.jsonl").read_text() + text_log.read_text()
    exported += (tmp_path / "out" / "traces.jsonl").read_text()
    for secret in ("hunter2", "AKIA-123456", "vault-decrypted-7f3a9c", "s3cr3t-db", "eyJhbGciOi"):
        assert secret not in exported
    assert "broker" in exported and "[REDACTED]" in exported


def _forked_worker(number):
    logging.getLogger("quant.forked").info("from child %d", number, extra={"stock": f"{number:06d}.SZ"})


def test_forked_worker_processes_keep_logging(tmp_path):
    import multiprocessing

    telemetry = telemetry_for(tmp_path)
    log = telemetry.get_logger("quant.forked")
    log.info("from parent")
    context = multiprocessing.get_context("fork")  # what a Linux strategy gets by default
    with context.Pool(4) as pool:
        pool.map(_forked_worker, range(8))
        pool.close()
        pool.join()
    assert telemetry.shutdown(timeout_s=10)

    bodies = sorted(record["body"]["stringValue"] for record, _ in log_records(tmp_path))
    assert bodies == ["from child %d" % n for n in range(8)] + ["from parent"]
