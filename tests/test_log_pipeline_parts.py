"""The logging pipeline's parts on their own: encoding, sampling, the bounded buffer, quant context."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from rqa_otel.logs.buffer import Drops, LogBuffer
from rqa_otel.export.log_entry import LogEntry
from rqa_otel.export.otlp.log_encoding import LogsEncoder
from rqa_otel.logs.sampling import Sampler, SamplingRule
from rqa_otel.quant import bound_quant_fields, quant_context


def entry(i=0, level=logging.INFO, logger="rqa.test", **attributes):
    return LogEntry(1_700_000_000_000_000_000 + i, level, logger, f"message {i}", attributes)


# --- encoding ---------------------------------------------------------------------


def test_protobuf_bytes_parse_as_the_official_message_and_match_the_json():
    encoder = LogsEncoder({"service.name": "svc", "process.pid": 42})
    entries = [
        LogEntry(1, logging.WARNING, "a", "贵州茅台 \x1b[31m", {"rqa.stock": "600519.SH", "n": -5, "f": 0.25, "ok": True, "one": 1, "list": [1, "x"], "map": {"k": 2}}, 0xABC, 0xDEF, 1),
        LogEntry(2, logging.DEBUG, "b", "", {"big": 2**70, "raw": b"\x00\x01"}),
        LogEntry(3, 25, "a", "custom level", {}),
    ]
    request = ExportLogsServiceRequest.FromString(encoder.encode(entries, observed_time_ns=99))
    [resource_logs] = request.resource_logs
    assert {kv.key: kv.value for kv in resource_logs.resource.attributes}["process.pid"].int_value == 42
    scopes = {scope.scope.name: list(scope.log_records) for scope in resource_logs.scope_logs}
    first = scopes["a"][0]
    assert first.body.string_value == "贵州茅台 \x1b[31m"
    assert first.severity_number == 13 and first.severity_text == "WARN"
    assert first.trace_id == (0xABC).to_bytes(16, "big") and first.span_id == (0xDEF).to_bytes(8, "big")
    attributes = {kv.key: kv.value for kv in first.attributes}
    assert attributes["n"].int_value == -5 and attributes["f"].double_value == 0.25
    assert attributes["ok"].bool_value is True and attributes["one"].int_value == 1  # not confused with True
    assert [v.int_value or v.string_value for v in attributes["list"].array_value.values] == [1, "x"]
    assert scopes["a"][1].severity_number == 11  # level 25, between INFO and WARNING
    assert scopes["b"][0].severity_text == "DEBUG"
    assert {kv.key: kv.value for kv in scopes["b"][0].attributes}["big"].string_value == str(2**70)

    document = MessageToDict(request, use_integers_for_enums=True)

    def hexify(node):
        if isinstance(node, dict):
            return {k: base64.b64decode(v).hex() if k in ("traceId", "spanId") else hexify(v) for k, v in node.items()}
        return [hexify(item) for item in node] if isinstance(node, list) else node

    assert hexify(document) == json.loads(encoder.encode_json(entries, observed_time_ns=99))


def test_entries_of_a_registered_shape_encode_like_their_dict_form():
    """A high-rate event may carry its attribute values as a tuple (EventShape);
    it must leave exactly as the same record with a dict would, in JSON and protobuf."""
    from rqa_otel.export.log_entry import EventShape, register_shape, register_variant, with_attribute_dict

    register_shape(EventShape("test.shaped", strings=("rqa.stock", "note"), floats=("price",), ints=("n",)))
    encoder = LogsEncoder({"service.name": "svc"})
    shaped = [
        (5, logging.INFO, "test.shaped", 'fill "x" 100%', None, 0xABC, 0xDEF, 1, "600519.SH", "50% \\ \u8d35\n", 1688.5, 7),
        (6, logging.WARNING, "test.shaped", "m", None, 0, 0, 0, "000001.SZ", "n", 1e-300, -(2**63)),
        (7, logging.INFO, "test.shaped", "bad types fall back", None, 0, 0, 0, b"raw", "s", 1.0, 2),
        (8, logging.INFO, "plain", "a dict in between", {"k": "v"}, 0xABC, 0xDEF, 1),
    ]
    as_dicts = [with_attribute_dict(entry) for entry in shaped]
    assert as_dicts[0][4] == {"rqa.stock": "600519.SH", "note": "50% \\ \u8d35\n", "price": 1688.5, "n": 7}
    assert json.loads(encoder.encode_json(shaped, 99)) == json.loads(encoder.encode_json(as_dicts, 99))
    assert encoder.encode(shaped, 99) == encoder.encode(as_dicts, 99)

    # A variant of the shape (another number of values), interleaved with the first.
    register_variant(EventShape("test.shaped", strings=("rqa.stock",), floats=(), ints=("n", "id")))
    with pytest.raises(ValueError, match="already has a shape of 4 values"):
        register_variant(EventShape("test.shaped", strings=("other",), floats=("price",), ints=("n", "id")))
    mixed = [
        shaped[0],
        (9, logging.INFO, "test.shaped", "variant", None, 0xABC, 0xDEF, 1, "600519.SH", 3, 12),
        shaped[1],
        (10, logging.INFO, "test.shaped", "variant", None, 0, 0, 0, "000001.SZ", 4, 13),
    ]
    as_dicts = [with_attribute_dict(entry) for entry in mixed]
    assert as_dicts[1][4] == {"rqa.stock": "600519.SH", "n": 3, "id": 12}
    assert json.loads(encoder.encode_json(mixed, 99)) == json.loads(encoder.encode_json(as_dicts, 99))
    assert encoder.encode(mixed, 99) == encoder.encode(as_dicts, 99)


def test_shaped_records_are_the_same_bytes_before_and_after_their_template_is_compiled(monkeypatch):
    """A shape's first records are rendered piece by piece, later ones by its
    compiled template: the same bytes either way, and as the dict form's."""
    from rqa_otel.export.log_entry import EventShape, register_shape, with_attribute_dict
    from rqa_otel.export.otlp import log_encoding

    register_shape(EventShape("test.pieces", strings=("rqa.stock", "note"), floats=("price", "qty"), ints=("n",)))
    batch = [
        (5, logging.INFO, "test.pieces", 'fill "x" 100%', None, 0xABC, 0xDEF, 1, "600519.SH", "50% \\ \u8d35\n\u2028", 1688.5, 1e-300, 7),
        (6, logging.WARNING, "test.pieces", "贵州茅台\x1b[2J", None, 0, 0, 0, "000001.SZ", "n", -0.0, 2.5, -(2**63)),
        (7, logging.INFO, "test.pieces", "bad types fall back", None, 0, 0, 0, b"raw", "s", 1.0, 2.0, 2),
        (8, logging.INFO, "test.pieces", "an int as a float", None, 0, 0, 0, "a", "s", 1, 2.0, 2),
        (9, logging.INFO, "plain", "a dict in between", {"k": "v"}, 0xABC, 0xDEF, 1),
    ] * 3
    as_dicts = [with_attribute_dict(entry) for entry in batch]
    expected = LogsEncoder({"service.name": "svc"}).encode_json(as_dicts, 99)
    # Off the shape's promise (an exact int), a bool is written as the int it
    # is, by the compiled template as by the pieces: compared between the two.
    off_promise = batch + [(10, logging.INFO, "test.pieces", "a bool as an int", None, 1, 2, 0, "a", "s", 1.0, 2.0, True)]

    pieces = LogsEncoder({"service.name": "svc"})
    assert pieces.encode_json(batch, 99) == expected
    by_pieces = pieces.encode_json(off_promise, 99)
    assert all(t._compiled is None for t in pieces._json_shaped.values())

    monkeypatch.setattr(log_encoding, "_COMPILE_AFTER", 40)
    compiled = LogsEncoder({"service.name": "svc"})
    assert compiled.encode_json(batch, 99) == expected  # 9 rendered by the pieces, 15 entries each time
    assert compiled.encode_json(batch, 99) == expected
    assert all(t._compiled is None for t in compiled._json_shaped.values())
    assert compiled.encode_json(batch * 2, 99) == pieces.encode_json(as_dicts * 2, 99)  # 18 + 30 >= 40: compiled
    assert all(t._compiled is not None for t in compiled._json_shaped.values())
    assert compiled.encode_json(batch, 99) == expected
    assert compiled.encode_json(off_promise, 99) == by_pieces
    assert b'{"key":"n","value":{"intValue":"1"}}' in by_pieces


def test_secrets_in_shaped_entries_are_scrubbed(tmp_path):
    """Scrubbing sees a shaped entry's string values and secret keys like a dict's."""
    import rqa_otel
    from otlp_files import attributes as attrs
    from otlp_files import items
    from rqa_otel.export.log_entry import EventShape, register_shape

    register_shape(EventShape("test.secret_value", strings=("note",), floats=(), ints=("n",)))
    register_shape(EventShape("test.secret_key", strings=("api_key",), floats=(), ints=()))
    telemetry = rqa_otel.setup(overrides={"export.directory": str(tmp_path)}, set_global=False)
    telemetry.log_event("test.secret_value", "token=abc123", ("password=hunter22", 1))
    telemetry.log_event("test.secret_key", "ok", ("AKIA-not-shown",))
    telemetry.shutdown()
    records = {r["body"]["stringValue"]: attrs(r) for r in items(tmp_path / "logs.jsonl", "resourceLogs", "scopeLogs", "logRecords")}
    text = json.dumps(records)
    assert "hunter22" not in text and "abc123" not in text and "AKIA-not-shown" not in text
    assert records["ok"]["api_key"] == "[REDACTED]"


# --- sampling ---------------------------------------------------------------------


def test_ratio_keeps_exactly_that_share_and_accounts_for_every_record():
    sampler = Sampler([SamplingRule("rqa.feed", logging.DEBUG, ratio=0.1)])
    kept = sum(sampler.admit("rqa.feed.ticks", logging.DEBUG) for _ in range(10_000))
    assert kept == 1_000
    assert sampler.suppressed_totals() == {("rqa.feed.ticks", logging.DEBUG): 9_000}
    assert sampler.take_unreported() == [("rqa.feed.ticks", logging.DEBUG, 9_000)]
    assert sampler.take_unreported() == []
    # not covered: other loggers, higher levels, WARNING and above
    assert all(sampler.admit("rqa.orders", logging.DEBUG) for _ in range(100))
    assert all(sampler.admit("rqa.feed", logging.INFO) for _ in range(100))


def test_rate_limit_from_many_threads_is_exact():
    sampler = Sampler([SamplingRule("*", logging.INFO, rate_per_s=50)])
    kept = []

    def worker():
        kept.append(sum(sampler.admit("rqa.burst", logging.INFO) for _ in range(5_000)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    suppressed = sampler.suppressed_totals()[("rqa.burst", logging.INFO)]
    assert sum(kept) + suppressed == 40_000
    assert 50 <= sum(kept) <= 50 + 50 * 5  # a burst of one second, then 50/s while it ran


def test_warning_and_above_are_never_sampled():
    sampler = Sampler([SamplingRule("*", logging.INFO, ratio=0.001)])
    assert all(sampler.admit("x", level) for level in (logging.WARNING, logging.ERROR, logging.CRITICAL) for _ in range(100))


# --- bounded buffer ---------------------------------------------------------------


def test_full_buffer_keeps_warnings_in_preference_and_counts_what_it_drops():
    drops = Drops()
    buffer = LogBuffer(capacity=10, drops=drops, max_wait_s=0.0)
    for i in range(10):
        buffer.put(entry(i, logging.INFO))
    for i in range(10, 15):
        buffer.put(entry(i, logging.ERROR))  # each evicts the oldest INFO
    buffer.put(entry(15, logging.DEBUG))  # no room, no waiting: dropped
    batch = buffer.take(100, timeout=0)
    assert [e.level for e in batch].count(logging.ERROR) == 5
    assert [e.time_ns for e in batch] == sorted(e.time_ns for e in batch)
    assert drops.snapshot() == {("queue_full", "INFO"): 5, ("queue_full", "DEBUG"): 1}


def test_full_buffer_never_holds_a_caller_longer_than_max_wait():
    buffer = LogBuffer(capacity=1, drops=Drops(), max_wait_s=0.2, stall_s=10)
    buffer.put(entry(0))
    started = time.monotonic()
    buffer.put(entry(1))  # the worker never takes: dropped after max_wait_s
    assert 0.15 < time.monotonic() - started < 1.0


def test_stalled_worker_means_no_waiting_at_all():
    buffer = LogBuffer(capacity=1, drops=Drops(), max_wait_s=5, stall_s=0.05)
    buffer.put(entry(0))
    time.sleep(0.1)  # no progress for longer than stall_s
    started = time.monotonic()
    buffer.put(entry(1))
    assert time.monotonic() - started < 0.05


# --- quant context ----------------------------------------------------------------


def test_bindings_do_not_leak_between_threads():
    seen = {}

    def strategy(name):
        with quant_context(strategy=name, stock=f"{name}.SH"):
            time.sleep(0.01)
            with quant_context(signal="BUY"):
                seen[name] = bound_quant_fields()

    threads = [threading.Thread(target=strategy, args=(f"s{i}",)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(fields == (name, f"{name}.SH", "BUY") for name, fields in seen.items())
    assert bound_quant_fields() == (None, None, None)


def test_bindings_do_not_leak_between_asyncio_tasks():
    async def bar(symbol):
        with quant_context(stock=symbol):
            await asyncio.sleep(0.01)
            return bound_quant_fields().stock

    async def main():
        return await asyncio.gather(*(bar(f"{i:06d}.SZ") for i in range(50)))

    assert asyncio.run(main()) == [f"{i:06d}.SZ" for i in range(50)]


def test_non_string_fields_are_coerced():
    with quant_context(stock=600519, signal=1.5):
        assert bound_quant_fields() == (None, "600519", "1.5")


def test_log_batches_split_by_value_alike_on_the_fast_path_and_the_general_one():
    from rqa_otel import names
    from rqa_otel.export.delivery import Value, log_value, split_by_value, split_logs_by_value

    def entry(level: int, logger: str = "quant") -> LogEntry:
        return LogEntry(0, level, logger, "m", {})

    batches = {
        "all info": [entry(logging.INFO) for _ in range(5)],
        "all warnings and errors": [entry(logging.WARNING), entry(logging.ERROR)],
        "mixed levels": [entry(logging.INFO), entry(logging.ERROR), entry(logging.DEBUG)],
        "a trade among info": [entry(logging.INFO), entry(logging.INFO, names.TRADE_EVENT), entry(logging.INFO)],
        "empty": [],
    }
    for what, batch in batches.items():
        assert split_logs_by_value(batch) == split_by_value(batch, log_value), what
    assert split_logs_by_value(batches["all info"]) == [(Value.LOW, batches["all info"])]
    assert [value for value, _ in split_logs_by_value(batches["a trade among info"])] == [Value.CRITICAL, Value.LOW]


# --- shutdown ---------------------------------------------------------------------


def test_shutdown_writes_every_record_logged_before_it_in_one_pass(tmp_path):
    """The log worker's last flush and its stop are one pass, begun before the
    rest of the pipeline stops: still every record logged before shutdown()
    (several batches' worth), the sampling summary and the span are in the
    files when it returns True."""
    import rqa_otel
    from otlp_files import items

    telemetry = rqa_otel.setup(
        overrides={
            "export.directory": str(tmp_path), "logging.file": str(tmp_path / "text.log"), "logging.batch_size": 64,
            "logging.sampling.rules": [{"logger": "test.sampled", "level": "INFO", "rate_per_s": 1}],
        },
        set_global=False,
    )
    log = telemetry.get_logger("test.flushed")
    with telemetry.tracer.start_as_current_span("last span"):
        for n in range(1000):
            log.info("record %d", n)
        for n in range(5):
            telemetry.get_logger("test.sampled").info("sampled %d", n)
    assert telemetry.shutdown() is True
    bodies = [r["body"]["stringValue"] for r in items(tmp_path / "logs.jsonl", "resourceLogs", "scopeLogs", "logRecords")]
    assert [b for b in bodies if b.startswith("record ")] == [f"record {n}" for n in range(1000)]
    assert any("4 similar records suppressed" in b for b in bodies)
    text = (tmp_path / "text.log").read_text(encoding="utf-8")
    assert "record 999" in text and text.endswith("\n")
    spans = [s["name"] for s in items(tmp_path / "traces.jsonl", "resourceSpans", "scopeSpans", "spans")]
    assert spans == ["last span"]


# --- the handler ------------------------------------------------------------------


def test_handler_entry_has_the_message_and_span_of_every_kind_of_record():
    """The handler formats a plain LogRecord's message and reads the span ids
    itself (fewer calls per record); a record factory's class keeps its own
    getMessage, and a message that is not a str is str()-ed, as logging does."""
    from opentelemetry.sdk.trace import TracerProvider

    from rqa_otel.export.log_entry import active_span_ids
    from rqa_otel.logs.handler import QuantLogHandler

    class Shouting(logging.LogRecord):
        def getMessage(self) -> str:
            return super().getMessage().upper()

    class Message:
        def __str__(self) -> str:
            return "object %s"

    handler = QuantLogHandler(LogBuffer(100, Drops()), Sampler(), Drops(), "demo")

    def record(msg, args, factory=logging.LogRecord):
        return factory("rqa.test", logging.INFO, __file__, 1, msg, args, None)

    tracer = TracerProvider().get_tracer("test")
    cases = [("%s at %.2f", ("BUY", 1688.5)), ("100%", ()), (Message(), ("x",)), ("kept %s", None), ("%(k)s", ({"k": "v"},))]
    for msg, args in cases:
        for factory in (logging.LogRecord, Shouting):
            for in_span in (False, True, True):
                plain = record(msg, args, factory)
                expected = plain.getMessage()
                if in_span:
                    with tracer.start_as_current_span("s"):
                        produced = handler.entry(plain)
                        ids = active_span_ids()
                    assert ids[0] != 0
                else:
                    produced, ids = handler.entry(plain), (0, 0, 0)
                assert produced[3] == expected and produced[5:] == ids, (msg, factory)
    assert handler.entry(record("%s at %.2f", ("BUY", 1688.5), Shouting))[3] == "BUY AT 1688.50"
    # A bad format is the caller's error: counted, never raised into the strategy.
    drops = Drops()
    handler = QuantLogHandler(LogBuffer(100, drops), Sampler(), drops, "demo")
    assert handler.handle(record("%d", ("x",))) is True
    assert drops.snapshot() == {("internal_error", "INFO"): 1}


def test_drops_are_counted_by_level_and_named_when_read():
    drops = Drops()
    drops.add("sampled", logging.INFO)
    drops.add("sampled", logging.INFO, count=2)
    drops.add_entries("export_failed", [entry(0, logging.WARNING), entry(1, 25), entry(2, logging.WARNING)])
    assert drops.snapshot() == {("sampled", "INFO"): 3, ("export_failed", "WARNING"): 2, ("export_failed", "Level 25"): 1}
    logging.addLevelName(25, "NOTICE")
    try:  # the level's name as it is when read
        drops.add("queue_full", 25)
        drops.add("queue_full", logging.INFO)
        assert drops.snapshot()[("export_failed", "NOTICE")] == 1
        assert list(drops.snapshot())[-2:] == [("queue_full", "NOTICE"), ("queue_full", "INFO")]
    finally:
        logging.addLevelName(25, "Level 25")
