"""The file exporter's direct span encoding equals the SDK's protobuf encoding
rendered by protobuf's own JSON mapping (with OTLP's hex ids)."""

from __future__ import annotations

import json

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.trace import set_span_in_context

from rqa_otel.export.files.otlp_json import request_to_json_line, spans_to_json_line


def test_direct_span_json_matches_the_protobuf_path():
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc", "n": 3}, schema_url="https://opentelemetry.io/schemas/1.21.0"),
        span_limits=SpanLimits(max_attributes=4, max_events=3, max_links=1, max_event_attributes=2),
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("scope.a", "1.2", schema_url="https://example/schema", attributes={"lib": "x"})
    other = provider.get_tracer("scope.b")
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")]))
    with tracer.start_as_current_span(
        "run", kind=SpanKind.SERVER, attributes={"s": "贵州", "i": -1, "f": 1.5, "b": True, "l": [1, 2], "x": "y"},
        links=[Link(remote, {"why": "cause"}), Link(remote)],
    ) as run:
        for index in range(5):
            run.add_event(f"trade {index}" if index else "", {"p": 1.0 * index, "q": index, "z": "drop"}, timestamp=10**18 + index)
        with other.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "broker down"))
        run.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("remote child", context=set_span_in_context(NonRecordingSpan(remote))):
        pass
    with other.start_as_current_span("plain"):
        pass
    spans = memory.get_finished_spans()
    expected = json.loads(request_to_json_line(encode_spans(spans)))
    assert json.loads(spans_to_json_line(spans)) == expected
    assert MessageToDict(encode_spans(spans))  # the reference really holds data


def test_the_line_is_exactly_what_json_dumps_writes_for_it():
    """Spans are written as text; the bytes must be json.dumps's (compact,
    non-ASCII kept) for the same document, escapes and odd values included."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_event_attributes=2))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer('scope "q"', "1\n2")
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")]))
    odd = {'a"b\\c': "line\nbreak\x02", "贵州": "茅台", "big": 1 << 70, "neg": -5, "f": 1e-7, "nan": float("nan"),
           "t": True, "l": ["x", 1, 2.5, False], "e": ""}
    with tracer.start_as_current_span('run "x"\t', kind=SpanKind.PRODUCER, attributes=odd,
                                      links=[Link(remote, {"why": "cause\u2028"})]) as span:
        span.add_event("ev\u00e9nement", {"p": 0.1 + 0.2, "q": 1, "dropped": 2}, timestamp=10**18)
        span.add_event("", {}, timestamp=1)
        span.set_status(Status(StatusCode.ERROR, 'broker said "no"\n'))
    line = spans_to_json_line(memory.get_finished_spans())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line == (json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    text = line.decode()
    assert '"doubleValue":NaN' in text and "茅台" in text and '"droppedAttributesCount":1' in text
