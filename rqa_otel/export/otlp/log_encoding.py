"""LogEntry batches as OTLP ExportLogsServiceRequest: protobuf bytes and JSON.

The SDK's encoder builds a protobuf object per record and per attribute,
which costs more than the whole log call. Here the protobuf wire format is
written directly, and the encoded KeyValue of each (key, value) attribute
pair is cached: quant attributes repeat on almost every record. Tests check
the bytes against the official protobuf classes, and the JSON against what
``MessageToDict`` makes of those bytes.
"""

from __future__ import annotations

import codecs
import json
import os
import struct
from typing import Any, Mapping, Sequence

from rqa_otel import names
from rqa_otel._util.fork import in_forked_child
from rqa_otel.export.log_entry import SHAPED_VALUES, LogEntry, shape_of, with_attribute_dict
from rqa_otel.export.otlp.protobuf_wire import length_delimited as _field
from rqa_otel.export.otlp.protobuf_wire import pack_double as _pack_double
from rqa_otel.export.otlp.protobuf_wire import varint as _varint

_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack

# Protobuf strings and JSON text must be valid UTF-8: a receiver refuses the
# whole request over one lone surrogate (U+D800-U+DFFF, which Python strings
# can hold: surrogateescape decoding, json.loads). Each is written as U+FFFD,
# as Go's decoders and the InfluxDB path do; the handler only runs on error.
UTF8_ERRORS = "rqa-otel-replace-surrogates"


def _replace_surrogates(error: UnicodeError) -> tuple[bytes, int]:
    if isinstance(error, UnicodeEncodeError):  # bytes: the UTF-8 codec takes a str replacement only if ASCII
        return "\ufffd".encode() * (error.end - error.start), error.end
    raise error


try:
    codecs.lookup_error(UTF8_ERRORS)
except LookupError:
    codecs.register_error(UTF8_ERRORS, _replace_surrogates)

_CACHE_LIMIT = 20_000
# Records of an event shape rendered before its template is compiled (see _ShapedTemplates).
_COMPILE_AFTER = 256
_CACHEABLE_STRING_LENGTH = 128


def severity(levelno: int) -> tuple[int, str]:
    """stdlib level -> (OTel severity number, severity text), as the OTel
    logging instrumentation maps them (WARNING -> 13 WARN, CRITICAL -> 21 FATAL)."""
    if levelno < 10:
        number = 1 + max(levelno, 0) * 4 // 10
    else:
        number = min(5 + (levelno - 10) * 4 // 10, 24)
    text = {10: "DEBUG", 20: "INFO", 30: "WARN", 40: "ERROR", 50: "FATAL"}.get(levelno)
    if text is None:
        text = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")[min((number - 1) // 4, 5)]
    return number, text


def _any_value(value: Any) -> bytes:
    if isinstance(value, str):
        return _field(0x0A, value.encode("utf-8", UTF8_ERRORS))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return b"\x18" + _varint(value)
        return _field(0x0A, str(value).encode())
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(0x3A, value)
    if isinstance(value, (list, tuple)):
        return _field(0x2A, b"".join(_field(0x0A, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(0x32, b"".join(_field(0x0A, _key_value(str(k), v)) for k, v in value.items()))
    return _field(0x0A, str(value).encode("utf-8", UTF8_ERRORS))


def _key_value(key: str, value: Any) -> bytes:
    return _field(0x0A, key.encode("utf-8", UTF8_ERRORS)) + _field(0x12, _any_value(value))


class LogsEncoder:
    """Encodes batches for one resource. Not thread-safe: one per worker."""

    def __init__(self, resource_attributes: Mapping[str, Any], schema_url: str = "") -> None:
        self._resource_attributes = dict(resource_attributes)
        self._encode_resource()
        if names.PROCESS_PID in self._resource_attributes:
            # A forked child (a multiprocessing worker) is a process of its
            # own: its records carry its own process.pid.
            in_forked_child(self, LogsEncoder._renew_pid)
        self._schema_url = schema_url
        self._string_attributes: dict[str, dict[str, bytes]] = {}
        self._scope_cache: dict[str, bytes] = {}
        self._severity_cache: dict[int, bytes] = {}
        self._double_prefixes: dict[str, bytes] = {}
        self._json_strings: dict[str, dict[str, str]] = {}
        self._json_keys: dict[str, str] = {}
        self._json_heads: dict[int, str] = {}
        self._json_shaped: dict[tuple[str, int, int], _ShapedTemplates] = {}

    def _renew_pid(self) -> None:
        self._resource_attributes[names.PROCESS_PID] = os.getpid()
        self._encode_resource()

    def _encode_resource(self) -> None:
        attributes = self._resource_attributes
        self._resource_field = _field(0x0A, b"".join(_field(0x0A, _key_value(k, v)) for k, v in attributes.items()))
        self._json_resource = _json_dumps(
            {"attributes": [{"key": k, "value": json_any_value(v)} for k, v in attributes.items()]}
        )

    # --- protobuf -------------------------------------------------------------

    def encode(self, entries: Sequence[LogEntry], observed_time_ns: int) -> bytes:
        """One ExportLogsServiceRequest holding ``entries`` (ScopeLogs per logger)."""
        scopes: dict[str, list[bytes]] = {}
        observed = b"\x59" + _pack_fixed64(observed_time_ns)
        for entry in entries:
            if entry[4] is None:  # a registered event shape's flat values
                entry = with_attribute_dict(entry)
            record = self._record(entry, observed)
            records = scopes.get(entry[2])
            if records is None:
                scopes[entry[2]] = [record]
            else:
                records.append(record)
        scope_logs = [self._scope(name) + b"".join(records) for name, records in scopes.items()]
        body = self._resource_field + b"".join(_field(0x12, scope) for scope in scope_logs)
        if self._schema_url:
            body += _field(0x1A, self._schema_url.encode())
        return _field(0x0A, body)

    def _scope(self, logger_name: str) -> bytes:
        scope = self._scope_cache.get(logger_name)
        if scope is None:
            scope = _field(0x0A, _field(0x0A, logger_name.encode("utf-8", UTF8_ERRORS)))
            if len(self._scope_cache) < _CACHE_LIMIT:
                self._scope_cache[logger_name] = scope
        return scope

    def _record(self, entry: tuple, observed: bytes) -> bytes:
        time_ns, level, _, message, attributes, trace_id, span_id, trace_flags = entry
        text = message.encode("utf-8", UTF8_ERRORS)
        body = b"\x0a" + _varint(len(text)) + text
        parts = [
            b"\x09" + _pack_fixed64(time_ns),
            self._severity(level),
            b"\x2a" + _varint(len(body)) + body,
        ]
        strings = self._string_attributes
        doubles = self._double_prefixes
        for key, value in attributes.items():
            # Strings, the common case, are cached per key and value; numbers
            # get a cached per-key prefix. Other types are not cached
            # (True == 1 == 1.0 would share a dict slot).
            kind = value.__class__
            if kind is str:
                by_value = strings.get(key)
                if by_value is None:
                    by_value = strings[key] = {}
                encoded = by_value.get(value)
                if encoded is None:
                    encoded = _field(0x32, _key_value(key, value))
                    if len(value) <= _CACHEABLE_STRING_LENGTH and len(by_value) < _CACHE_LIMIT:
                        by_value[value] = encoded
            elif kind is float:
                prefix = doubles.get(key)
                if prefix is None:
                    prefix = doubles[key] = self._double_prefix(key)
                encoded = prefix + _pack_double(value)
            else:
                encoded = _field(0x32, _key_value(key, value))
            parts.append(encoded)
        if trace_id:
            parts.append(b"\x45" + _pack_fixed32(trace_flags & 0xFF))
            parts.append(b"\x4a\x10" + trace_id.to_bytes(16, "big"))
            parts.append(b"\x52\x08" + span_id.to_bytes(8, "big"))
        parts.append(observed)
        event = _EVENT_FIELDS.get(entry[2])
        if event is not None:
            parts.append(event)
        record = b"".join(parts)
        return b"\x12" + _varint(len(record)) + record

    def _double_prefix(self, key: str) -> bytes:
        """Everything of a double attribute's field but its 8 value bytes."""
        key_field = _field(0x0A, key.encode("utf-8", UTF8_ERRORS))
        return b"\x32" + _varint(len(key_field) + 11) + key_field + b"\x12\x09\x21"

    def _severity(self, levelno: int) -> bytes:
        encoded = self._severity_cache.get(levelno)
        if encoded is None:
            number, text = severity(levelno)
            encoded = b"\x10" + _varint(number) + _field(0x1A, text.encode())
            self._severity_cache[levelno] = encoded
        return encoded

    # --- OTLP JSON ----------------------------------------------------------------

    def encode_json(self, entries: Sequence[LogEntry], observed_time_ns: int) -> bytes:
        """The same request in OTLP's JSON encoding (hex ids, int64 as strings),
        as one line without its newline. Written as text from cached
        fragments: building dicts for json.dumps costs five times more."""
        scopes: dict[str, list[str]] = {}
        heads = self._json_heads
        strings, keys, attribute = self._json_strings, self._json_keys, self._json_attribute
        last_trace_id = last_span_id = last_flags = None
        ids = ""
        observed = f'"observedTimeUnixNano":"{observed_time_ns}",'
        shaped_templates = self._json_shaped
        shaped_name = shaped_level = shaped_size = None
        for entry in entries:
            if entry[6] != last_span_id or entry[5] != last_trace_id or entry[7] != last_flags:
                # Consecutive records mostly share their span: format its ids once.
                last_trace_id, last_span_id, last_flags = trace_id, span_id, trace_flags = entry[5:8]
                if trace_id:
                    flags = f',"flags":{trace_flags & 0xFF}' if trace_flags & 0xFF else ""
                    ids = f'{flags},"traceId":"{trace_id:032x}","spanId":"{span_id:016x}"'
                else:
                    ids = ""
            if entry[4] is None:
                # A registered event shape: the whole record from one
                # compiled f-string, with its string values (strategy,
                # symbol ..., which repeat) as one cached piece.
                if entry[2] != shaped_name or entry[1] != shaped_level or len(entry) != shaped_size:
                    shaped_name, shaped_level, shaped_size = logger_name, level, size = entry[2], entry[1], len(entry)
                    templates = shaped_templates.get((logger_name, level, size))
                    if templates is None:
                        templates = shaped_templates[(logger_name, level, size)] = _ShapedTemplates(
                            logger_name, level, size - SHAPED_VALUES
                        )
                    strings_end = SHAPED_VALUES + templates.strings_count
                    render = templates.render_for(len(entries))
                    strings_json = templates.by_strings.get
                    shaped_records = scopes.get(logger_name)
                    if shaped_records is None:
                        scopes[logger_name] = shaped_records = []
                try:
                    string_values = entry[SHAPED_VALUES:strings_end]
                    text = strings_json(string_values) or templates.strings_json(string_values)
                    shaped_records.append(render(entry, observed_time_ns, ids, text))
                    continue
                except (TypeError, ValueError):  # a value of another type than promised
                    entry = with_attribute_dict(entry)
            time_ns, level, logger_name, message, attributes = entry[:5]
            head = heads.get(level)
            if head is None:
                number, text = severity(level)
                head = heads[level] = f'"severityNumber":{number},"severityText":"{text}","body":{{"stringValue":'
            parts = [',{"timeUnixNano":"', str(time_ns), '",', observed, head, _json_string(message), "}"]
            if attributes:
                # Inlined fast paths for cached strings and finite floats
                # (a method call per attribute would cost a third more).
                fragments = []
                for key, value in attributes.items():
                    kind = value.__class__
                    if kind is str:
                        by_value = strings.get(key)
                        fragment = by_value.get(value) if by_value is not None else None
                        if fragment is not None:
                            fragments.append(fragment)
                            continue
                    elif kind is float:
                        prefix = keys.get(key)
                        if prefix is not None and value - value == 0.0:
                            fragments.append(prefix + '{"doubleValue":' + _float_repr(value) + "}}")
                            continue
                    elif kind is int:
                        prefix = keys.get(key)
                        if prefix is not None and -(1 << 63) <= value < (1 << 63):
                            fragments.append(prefix + '{"intValue":"' + str(value) + '"}}')
                            continue
                    fragments.append(attribute(key, value))
                parts.append(',"attributes":[' + ",".join(fragments) + "]")
            parts.append(ids)
            parts.append(_EVENT_JSON.get(logger_name, "}"))
            records = scopes.get(logger_name)
            if records is None:
                scopes[logger_name] = records = []
            records.append("".join(parts))
        # Every record starts with its separating comma: the whole line is
        # one join of the records themselves (a megabyte per batch; each
        # extra copy costs a tenth of the encoding).
        pieces = ['{"resourceLogs":[{"resource":', self._json_resource, ',"scopeLogs":[']
        for index, (name, records) in enumerate(scopes.items()):
            pieces.append(f'{"," if index else ""}{{"scope":{{"name":{_json_string(name)}}},"logRecords":[')
            records[0] = records[0][1:]
            pieces += records
            pieces.append("]}")
        schema = f',"schemaUrl":{_json_string(self._schema_url)}' if self._schema_url else ""
        pieces.append(f"]{schema}}}]}}")
        return "".join(pieces).encode("utf-8", UTF8_ERRORS)

    def _json_attribute(self, key: str, value: Any) -> str:
        """One KeyValue as JSON text. Strings are cached per key and value,
        and the common scalars are formatted straight after a cached key:
        json.dumps of a small dict costs ~2 us, this ~0.2 us."""
        kind = value.__class__
        if kind is str:
            by_value = self._json_strings.get(key)
            if by_value is None:
                by_value = self._json_strings[key] = {}
            fragment = by_value.get(value)
            if fragment is None:
                fragment = self._json_key(key) + '{"stringValue":' + _json_string(value) + "}}"
                if len(value) <= _CACHEABLE_STRING_LENGTH and len(by_value) < _CACHE_LIMIT:
                    by_value[value] = fragment
            return fragment
        if kind is float and value - value == 0.0:  # finite: NaN and inf keep json.dumps's spelling
            return self._json_key(key) + '{"doubleValue":' + _float_repr(value) + "}}"
        if kind is int and -(1 << 63) <= value < (1 << 63):
            return self._json_key(key) + '{"intValue":"' + str(value) + '"}}'
        return _json_dumps({"key": key, "value": json_any_value(value)})

    def _json_key(self, key: str) -> str:
        prefix = self._json_keys.get(key)
        if prefix is None:
            prefix = _key_json(key)
            if len(self._json_keys) < _CACHE_LIMIT:
                self._json_keys[key] = prefix
        return prefix


class _ShapedTemplates:
    """Whole OTLP-JSON records of one registered event shape and level.

    ``render_for(n)(entry, observed_time_ns, ids, strings_json)`` is compiled once
    per shape from an f-string (as namedtuple and dataclasses compile their
    methods): f-strings are formatted without parsing a template, half the
    cost of ``%``. Compiling costs what a few hundred records do (0.2-0.3
    ms, in a process's final flush), so until a shape has had
    ``_COMPILE_AFTER`` records its records are rendered from the same pieces
    by ``_render_pieces``, which writes the same text and raises where the
    compiled one does.
    ``strings_json(strings)`` is the JSON of the string attributes, cached
    per combination (strategy, symbol, side, run ...). A value of another
    type than the shape promises raises TypeError or ValueError, and the
    caller encodes that entry the generic way."""

    def __init__(self, name: str, level: int, size: int) -> None:
        shape = shape_of(name, size)
        number, text = severity(level)
        self.strings_count = len(shape.strings)
        self._string_keys = [_key_json(k) + '{"stringValue":' for k in shape.strings]
        first_number = SHAPED_VALUES + len(shape.strings)
        self._severity = f'","severityNumber":{number},"severityText":"{text}","body":{{"stringValue":'
        # (index of the value, its KeyValue's JSON up to the value)
        self._floats = [
            (index, "," + _key_json(key) + '{"doubleValue":') for index, key in enumerate(shape.floats, first_number)
        ]
        self._ints = [
            (index, "," + _key_json(key) + '{"intValue":"')
            for index, key in enumerate(shape.ints, first_number + len(shape.floats))
        ]
        self._end = _EVENT_JSON.get(name, "}")
        self._rendered = 0
        self._compiled = None
        self.by_strings: dict[tuple[str, ...], str] = {}

    def render_for(self, coming: int):
        """``render`` for at most ``coming`` more records: compiled once this
        shape's records reach _COMPILE_AFTER with them (a large batch
        compiles at once), rendered from the pieces until then."""
        if self._compiled is None:
            if self._rendered + coming < _COMPILE_AFTER:
                return self._render_pieces
            self._compiled = self._compile()
        return self._compiled

    def _compile(self):
        pieces = [
            _literal(',{"timeUnixNano":"'), "f'{entry[0]:d}'",
            _literal('","observedTimeUnixNano":"'), "f'{observed:d}'",
            _literal(self._severity), "f'{escape(entry[3])}'", _literal('},"attributes":['), "f'{strings_json}'",
        ]
        for index, prefix in self._floats:
            # float.__repr__: json.dumps's spelling of a finite float, and a
            # TypeError for anything but a float.
            pieces += [_literal(prefix), f"f'{{float_repr(entry[{index}])}}'", _literal("}}")]
        for index, prefix in self._ints:
            pieces += [_literal(prefix), f"f'{{entry[{index}]:d}}'", _literal('"}}')]
        pieces += [_literal("]"), "f'{ids}'", _literal(self._end)]
        source = "lambda entry, observed, ids, strings_json: " + " ".join(pieces)
        return eval(source, {"escape": _json_string, "float_repr": _float_repr})

    def _render_pieces(self, entry: tuple, observed: int, ids: str, strings_json: str) -> str:
        """What the compiled render writes (format(x, "d") is what "{x:d}" does)."""
        self._rendered += 1
        parts = [
            ',{"timeUnixNano":"', format(entry[0], "d"), '","observedTimeUnixNano":"', format(observed, "d"),
            self._severity, _json_string(entry[3]), '},"attributes":[', strings_json,
        ]
        append = parts.append
        for index, prefix in self._floats:
            append(prefix)
            append(_float_repr(entry[index]))
            append("}}")
        for index, prefix in self._ints:
            append(prefix)
            append(format(entry[index], "d"))
            append('"}}')
        append("]")
        append(ids)
        append(self._end)
        return "".join(parts)

    def strings_json(self, strings: tuple[str, ...]) -> str:
        if len(strings) != self.strings_count or any(value.__class__ is not str for value in strings):
            raise TypeError("the string values of an event shape must be str")
        text = ",".join(key + _json_string(value) + "}}" for key, value in zip(self._string_keys, strings))
        if len(self.by_strings) >= _CACHE_LIMIT:
            self.by_strings.clear()
        self.by_strings[strings] = text
        return text


def _key_json(key: str) -> str:
    """A KeyValue's JSON up to its value."""
    return '{"key":' + _json_string(key) + ',"value":'


def _literal(text: str) -> str:
    """``text`` as an f-string literal that renders to itself."""
    return "f" + repr(text.replace("{", "{{").replace("}", "}}"))


def json_any_value(value: Any) -> dict:
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, bytes):
        import base64

        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [json_any_value(item) for item in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": [{"key": str(k), "value": json_any_value(v)} for k, v in value.items()]}}
    return {"stringValue": str(value)}


_json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# What json.dumps(ensure_ascii=False) makes of a str, without its per-call setup.
_json_string = json.encoder.encode_basestring
_float_repr = float.__repr__  # json.dumps spells finite floats this way


# The EventName field (LogRecord.event_name, 12) of records whose logger is
# an event's (names.EVENT_NAMES), written last as protobuf and
# MessageToDict order fields; in JSON it closes the record.
_EVENT_FIELDS = {
    logger: b"\x62" + _varint(len(event.encode())) + event.encode() for logger, event in names.EVENT_NAMES.items()
}
_EVENT_JSON = {logger: ',"eventName":' + _json_string(event) + "}" for logger, event in names.EVENT_NAMES.items()}
