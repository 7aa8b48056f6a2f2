"""Values as Go writes them, for tags, field keys and ``attributes`` JSON:
pdata's ``Value.AsString()`` (:func:`as_string`), encoding/json's float64
(:func:`es6_float`), ``strconv.FormatFloat(f, 'f', -1, 64)``
(:func:`format_float_f`, :func:`bound_key`) and ``json.Marshal`` of AsRaw()
values (:func:`go_json`, :func:`json_member`, :func:`json_object`)."""

from __future__ import annotations

import base64
import json
import math
from decimal import Decimal
from typing import Any, Callable, Mapping

from rqa_otel.export.influx.otel2influx.points import CACHE_LIMIT, CACHEABLE_LENGTH


class _Unsupported(Exception):
    """A NaN or infinite float where Go's json.Marshal fails."""


def as_string(raw: Any) -> str:
    """pdata's Value.AsString() of an AsRaw() value: what otel2influx writes as a tag value."""
    cls = raw.__class__
    if cls is str:
        return raw
    if cls is bool:
        return "true" if raw else "false"
    if cls is int:
        return str(raw)
    if cls is float:
        try:
            return es6_float(raw)
        except _Unsupported:
            return "json: unsupported value: " + _format_float_g_special(raw)
    if raw is None:
        return ""
    if cls is bytes:
        return base64.b64encode(raw).decode()
    try:  # map or slice: json.Marshal(AsRaw()), "" when that fails
        return go_json(raw)
    except _Unsupported:
        return ""


# --- Go number formatting -------------------------------------------------------


def es6_float(f: float) -> str:
    """Go's encoding/json float64 (and pdata's float64AsString): shortest
    digits, fixed notation unless |f| < 1e-6 or >= 1e21 (then 1e-7, 1e+21)."""
    if f - f != 0:  # NaN or ±Inf
        raise _Unsupported
    magnitude = -f if f < 0 else f
    if magnitude == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    text = repr(f)
    if magnitude < 1e-6 or magnitude >= 1e21:
        mantissa, _, exponent = text.partition("e")
        if exponent[:2] == "-0":
            exponent = "-" + exponent[2:]
        return mantissa + "e" + exponent
    if "e" in text:
        return format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def format_float_f(f: float) -> str:
    """strconv.FormatFloat(f, 'f', -1, 64): histogram bounds and quantiles as keys."""
    if f - f != 0:
        return _format_float_g_special(f)
    text = repr(f)
    if "e" in text:
        return format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _format_float_g_special(f: float) -> str:
    return "NaN" if f != f else ("+Inf" if f > 0 else "-Inf")


_bound_keys: dict[float, str] = {}


def bound_key(f: float) -> str:
    """:func:`format_float_f`, cached: histogram bounds and quantiles repeat."""
    if f == 0:  # 0.0 and -0.0 share a dict slot
        return format_float_f(f)
    key = _bound_keys.get(f)
    if key is None:
        key = format_float_f(f)
        if len(_bound_keys) < CACHE_LIMIT:
            _bound_keys[f] = key
    return key


# --- Go json.Marshal of AsRaw() values -------------------------------------------

_encode_basestring: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
# json.Marshal escapes these (HTMLEscape and the JavaScript line separators).
_GO_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_string(text: str) -> str:
    encoded = _encode_basestring(text)
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        encoded = encoded.translate(_GO_JSON_ESCAPES)
    return encoded


def go_json(value: Any) -> str:
    """Go's json.Marshal of a pdata AsRaw() value: sorted keys, no spaces,
    ES6 floats; raises _Unsupported for NaN and infinities."""
    cls = value.__class__
    if cls is str:
        return _json_string(value)
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    if cls is float:
        return es6_float(value)
    if value is None:
        return "null"
    if cls is dict:
        return "{" + ",".join([_json_string(k) + ":" + go_json(value[k]) for k in sorted(value)]) + "}"
    if cls is list:
        return "[" + ",".join([go_json(item) for item in value]) + "]"
    if cls is bytes:
        return '"' + base64.b64encode(value).decode() + '"'
    raise TypeError(f"not an attribute value: {value!r}")


json_member_cache: dict[tuple, str] = {}
_MEMBER_CACHEABLE = frozenset((str, int, float, bool, bytes, type(None)))


def json_member(key: str, raw: Any) -> str | None:
    """``"key":value`` of an ``attributes`` JSON object, None where Go's
    json.Marshal fails (NaN, ±Inf). Cached: attribute values repeat."""
    cls = raw.__class__
    cacheable = cls in _MEMBER_CACHEABLE
    if cacheable:
        cache_key = (key, cls, raw)
        member = json_member_cache.get(cache_key)
        if member is not None:
            return member
    try:
        member = _json_string(key) + ":" + go_json(raw)
    except _Unsupported:
        return None
    if cacheable and len(json_member_cache) < CACHE_LIMIT and (cls is not str or len(raw) <= CACHEABLE_LENGTH):
        json_member_cache[cache_key] = member
    return member


def json_object(members: Mapping[str, str | None]) -> str | None:
    """json.Marshal(map[string]any) from the members of :func:`json_member`:
    sorted keys; None when a value cannot be marshalled."""
    if None in members.values():
        return None
    return "{" + ",".join([members[key] for key in sorted(members)]) + "}"
