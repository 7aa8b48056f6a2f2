"""Decoding OTLP JSON (an Export*ServiceRequest as ``json.loads`` gives it):
integers, floats, ids, enums, AnyValues and attribute lists, with a
ValueError naming the field for anything malformed."""

from __future__ import annotations

import base64
from typing import Any, Iterator, Mapping, Sequence

from rqa_otel.export.influx.otel2influx.go_format import as_string


def decode_int(value: Any, name: str) -> int:
    """An int64/uint64/fixed64 field: a decimal string (OTLP JSON) or a JSON integer."""
    cls = value.__class__
    if cls is str or cls is int:
        try:
            return int(value)
        except ValueError:
            pass
    elif value is None:
        return 0
    raise ValueError(f"{name}: expected an integer or a decimal string, got {value!r}")


def decode_float(value: Any, name: str) -> float:
    """A double: a JSON number, or "NaN"/"Infinity"/"-Infinity"/a numeric string."""
    cls = value.__class__
    if cls is float:
        return value
    if cls is int:
        return float(value)
    if cls is str:
        try:
            return float(value)
        except ValueError:
            pass
    elif value is None:
        return 0.0
    raise ValueError(f"{name}: expected a number, got {value!r}")


def decode_count(obj: Mapping, name: str) -> int:
    """A uint32 count such as droppedAttributesCount (0 when absent)."""
    value = obj.get(name)
    if value is None or value == 0:
        return 0
    if value.__class__ is int and value >= 0:
        return value
    return decode_int(value, name)


_HEX_DIGITS = "0123456789abcdefABCDEF"
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


def decode_hex_id(value: Any, length: int, name: str) -> str:
    """A trace (32) or span (16) id in OTLP JSON's hex; "" when absent or all zero."""
    if not value:
        return ""
    if value.__class__ is str and len(value) == length and not value.strip(_HEX_DIGITS):
        value = value.lower()
        return "" if value == (_ZERO_TRACE_ID if length == 32 else _ZERO_SPAN_ID) else value
    raise ValueError(f"{name}: expected {length} hex digits, got {value!r}")


def decode_enum(value: Any, names: Mapping[str, int], name: str) -> int:
    """An enum: its number (as OTLP JSON writes it) or its proto name."""
    if value.__class__ is int:
        return value
    if value is None:
        return 0
    if value.__class__ is str:
        number = names.get(value)
        if number is not None:
            return number
    raise ValueError(f"{name}: unknown value {value!r}")


def decode_string(value: Any, name: str) -> str:
    if value.__class__ is str:
        return value
    raise ValueError(f"{name}: expected a string, got {value!r}")


def _bytes(value: Any) -> bytes:
    if value.__class__ is not str:
        raise ValueError(f"bytesValue: expected base64 text, got {value!r}")
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise ValueError(f"bytesValue: not base64: {value!r}") from None


def _raw(any_value: Any) -> Any:
    """An OTLP JSON AnyValue as pdata's Value.AsRaw() gives it: str, bool, int,
    float, list, dict, bytes, or None (an empty value)."""
    if not any_value:
        return None
    if any_value.__class__ is not dict:
        raise ValueError(f"expected an AnyValue object, got {any_value!r}")
    for kind, value in any_value.items():
        if kind == "stringValue":
            if value.__class__ is str:
                return value
            raise ValueError(f"stringValue: expected a string, got {value!r}")
        if kind == "intValue":
            return decode_int(value, "intValue")
        if kind == "doubleValue":
            return decode_float(value, "doubleValue")
        if kind == "boolValue":
            if value is True or value is False:
                return value
            raise ValueError(f"boolValue: expected true or false, got {value!r}")
        if kind == "arrayValue":
            return [_raw(item) for item in list_at(value or {}, "values")]
        if kind == "kvlistValue":
            mapping: dict[str, Any] = {}
            for entry in list_at(value or {}, "values"):
                mapping[_key(entry)] = _raw(entry.get("value"))
            return mapping
        if kind == "bytesValue":
            return _bytes(value)
    return None


def _key(key_value: Any) -> str:
    if key_value.__class__ is not dict:
        raise ValueError(f"expected a KeyValue object, got {key_value!r}")
    key = key_value.get("key", "")
    if key.__class__ is not str:
        raise ValueError(f"key: expected a string, got {key!r}")
    return key


def decode_as_string(any_value: Any) -> str:
    """An OTLP JSON AnyValue as pdata's Value.AsString() gives it."""
    if any_value.__class__ is dict:
        text = any_value.get("stringValue")
        if text.__class__ is str:
            return text
    return as_string(_raw(any_value))


def put_tags(attributes: Any, tags: dict[str, str]) -> None:
    """attribute key -> AsString(value) for each non-empty key (later ones win)."""
    for key_value in attributes:
        key = _key(key_value)
        if key:
            tags[key] = decode_as_string(key_value.get("value"))


def decode_attributes(attributes: Any) -> list[tuple[str, Any]]:
    """[(key, AsRaw value)] of a KeyValue list, in order."""
    pairs = []
    append = pairs.append
    for key_value in attributes:
        if key_value.__class__ is dict:  # the common case: {"key": k, "value": {"stringValue": s}}
            key = key_value.get("key")
            value = key_value.get("value")
            if key.__class__ is str and value.__class__ is dict and len(value) == 1:
                scalar = value.get("stringValue")
                if scalar.__class__ is str:
                    append((key, scalar))
                    continue
                scalar = value.get("doubleValue")
                if scalar.__class__ is float:
                    append((key, scalar))
                    continue
                scalar = value.get("intValue")
                if scalar.__class__ is str and scalar.isascii() and scalar.isdigit():
                    append((key, int(scalar)))
                    continue
                scalar = value.get("boolValue")
                if scalar is True or scalar is False:
                    append((key, scalar))
                    continue
        append((_key(key_value), _raw(key_value.get("value"))))
    return pairs


def list_at(container: Any, key: str) -> Sequence:
    """The list under ``key`` (empty when absent); a ValueError if it is not a list."""
    if container.__class__ is not dict:
        raise ValueError(f"expected an object holding {key!r}, got {container!r}")
    items = container.get(key)
    if items is None:
        return ()
    if items.__class__ is not list:
        raise ValueError(f"{key}: expected a list, got {type(items).__name__}")
    return items


def object_at(container: Mapping, key: str) -> Mapping:
    """The object under ``key`` (empty when absent); a ValueError if it is not an object."""
    value = container.get(key)
    if value is None:
        return {}
    if value.__class__ is not dict:
        raise ValueError(f"{key}: expected an object, got {value!r}")
    return value


def scoped_items(
    request: Any, resource_key: str, scope_key: str, items_key: str
) -> Iterator[tuple[str, list[tuple[str, Any]], list[tuple[str, Any]], Sequence]]:
    """(where, resource attributes, scope attributes, items) for each scope
    of a trace or logs request; a malformed level raises ValueError naming
    its path (``resourceSpans[0].scopeSpans[1]``)."""
    for r, resource in enumerate(list_at(request, resource_key)):
        where = f"{resource_key}[{r}]"
        try:
            resource_attributes = decode_attributes(list_at(object_at(resource, "resource"), "attributes"))
            scopes = list_at(resource, scope_key)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for s, scope in enumerate(scopes):
            where_scope = f"{where}.{scope_key}[{s}]"
            try:
                scope_attributes = decode_attributes(list_at(object_at(scope, "scope"), "attributes"))
                items = list_at(scope, items_key)
            except ValueError as exc:
                raise ValueError(f"{where_scope}: {exc}") from None
            yield where_scope, resource_attributes, scope_attributes, items
