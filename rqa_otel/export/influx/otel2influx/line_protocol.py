"""Points to InfluxDB line protocol, as the Collector's influxdb exporter
writes them (``exporter/influxdbexporter/writer.go`` with the
influxdata/line-protocol/v2 Encoder): :func:`to_line_protocol`,
:func:`line_strings`, :func:`encode_lines` and the escaping."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from rqa_otel.export.influx.otel2influx.points import CACHE_LIMIT, CACHEABLE_LENGTH, Point, SeriesTags, UInt
from rqa_otel.export.influx.otel2influx.schema import ATTRIBUTE_TRACE_ID

INT64_MIN, INT64_MAX, UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1
# line-protocol/v2 refuses these in measurements and keys (validMeasurementOrKey).
_NON_PRINTABLE = frozenset(chr(c) for c in (*range(0x20), 0x7F))
_measurements: dict[str, str] = {}
_tag_pairs: dict[tuple[str, str], str] = {}
# 'key=' by field key, escaped and checked; metrics.number_lines reads it too.
escaped_field_keys: dict[str, str] = {}
# "measurement,k=v,..." by (measurement, tuple(tags.items())): metric points
# repeat their tag sets. Points tagged with a trace id (spans, events, links,
# trace-correlated logs, exemplars) have unique tag sets and skip it.
_prefixes: dict[tuple, str] = {}


class InvalidPoint(ValueError):
    """A point the line protocol cannot carry; ``reason`` is one of
    ``names.EXPORT_DROP_REASONS`` (invalid_name, invalid_value, no_fields,
    out_of_range)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


OnDrop = Callable[[str, str], None]
"""``on_drop(reason, message)``: a point was left out (see :func:`line_strings`)."""


def to_line_protocol(points: Iterable[Point]) -> bytes:
    """InfluxDB line protocol (nanosecond timestamps, UTF-8), one line per
    point: :func:`encode_lines` of :func:`line_strings`."""
    return encode_lines(line_strings(points))


def encode_lines(lines: Iterable[str]) -> bytes:
    """Lines of :func:`line_strings` or :func:`number_lines` as UTF-8 bytes."""
    text = "".join(lines)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (json.loads lets "\ud800" through): Go's JSON decoder
        # turns them into U+FFFD, and so does this.
        return "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "\ufffd" for c in text).encode("utf-8")


def line_strings(points: Iterable[Point], on_drop: Optional[OnDrop] = None) -> list[str]:
    """One line-protocol line per point, each ending in a newline.

    As the Collector's writer: tags sorted by key, tags with an empty key or
    value and fields with an empty key left out, NaN and infinite floats left
    out (InfluxDB has no such values). Escaping: measurement ``,`` and space;
    tag keys, tag values and field keys ``,`` ``=`` and space; string field
    values ``"`` and ``\\``.

    Raises ValueError, naming the point, where the Collector fails the batch:
    a measurement, key or tag value that is empty or holds a control
    character or a trailing backslash, a point left without fields, an
    integer out of the int64/uint64 range. With ``on_drop``, that point
    alone is left out and ``on_drop(reason, message)`` called instead: the
    exporters' way, so that one bad value never costs the batch around it
    (nor, for a metric series, every later export).
    """
    lines = []
    append = lines.append
    prefixes, field_keys = _prefixes, escaped_field_keys
    for index, point in enumerate(points):
        try:
            tags = point.tags
            if tags.__class__ is SeriesTags:
                prefix = tags.prefixes.get(point.measurement)
                if prefix is None:
                    prefix = tags.prefixes[point.measurement] = _prefix(index, point)
                parts = [prefix]
            elif ATTRIBUTE_TRACE_ID in tags:
                parts = [_prefix(index, point)]
            else:
                cache_key = (point.measurement, tuple(tags.items()))
                prefix = prefixes.get(cache_key)
                if prefix is None:
                    prefix = _prefix(index, point)
                    if len(prefixes) >= CACHE_LIMIT:
                        prefixes.clear()
                    prefixes[cache_key] = prefix
                parts = [prefix]
            separator = " "
            for key, value in point.fields.items():
                encoded_key = field_keys.get(key)
                if encoded_key is None:
                    encoded_key = _escape_field_key(index, point, key)
                    if not encoded_key:
                        continue
                cls = value.__class__
                # One f-string per field: the commonest types first.
                if cls is int:
                    if not INT64_MIN <= value <= INT64_MAX:
                        raise InvalidPoint(_point_error(index, point, f"field {key!r}: {value} is out of the int64 range"), "out_of_range")
                    parts.append(f"{separator}{encoded_key}{value}i")
                elif cls is float:
                    if value - value != 0:  # NaN, ±Inf: lineprotocol.NewValue refuses them; the field is left out
                        continue
                    parts.append(f"{separator}{encoded_key}{value!r}")
                elif cls is str:
                    if "\\" in value or '"' in value:
                        value = value.replace("\\", "\\\\").replace('"', '\\"')
                    parts.append(f'{separator}{encoded_key}"{value}"')
                elif cls is UInt:
                    if not 0 <= value <= UINT64_MAX:
                        raise InvalidPoint(_point_error(index, point, f"field {key!r}: {value} is out of the uint64 range"), "out_of_range")
                    parts.append(f"{separator}{encoded_key}{int.__repr__(value)}u")
                elif cls is bool:
                    parts.append(f"{separator}{encoded_key}{'true' if value else 'false'}")
                else:
                    raise InvalidPoint(
                        _point_error(index, point, f"field {key!r}: {value!r} is not a float, int, UInt, str or bool"),
                        "invalid_value",
                    )
                separator = ","
            if separator == " ":
                raise InvalidPoint(_point_error(index, point, "no fields to write (a line needs at least one)"), "no_fields")
            ts = point.time_unix_nano
            if ts.__class__ is not int or ts < INT64_MIN or ts > INT64_MAX:
                raise InvalidPoint(_point_error(index, point, f"timestamp {ts!r} is not an int64 of nanoseconds"), "out_of_range")
        except InvalidPoint as exc:
            if on_drop is None:
                raise
            on_drop(exc.reason, str(exc))
            continue
        except (TypeError, AttributeError) as exc:  # not a Point, tags that are not strings…
            if on_drop is None:
                raise ValueError(f"point {index}: cannot be written: {exc}") from None
            on_drop("invalid_value", f"point {index}: cannot be written: {exc}")
            continue
        parts.append(f" {ts}\n")
        append("".join(parts))
    return lines


def _prefix(index: int, point: Point) -> str:
    """The escaped measurement and sorted tags of a line."""
    measurement = point.measurement
    escaped = _measurements.get(measurement)
    if escaped is None:
        escaped = _escape_measurement(index, point)
    tags = point.tags
    if not tags:
        return escaped
    parts = [escaped]
    tag_pairs = _tag_pairs
    for pair in sorted(tags.items()):
        encoded = tag_pairs.get(pair)
        if encoded is None:
            encoded = _escape_tag(index, point, pair)
        parts.append(encoded)
    return "".join(parts)


def _point_error(index: int, point: Point, message: str) -> str:
    return f"point {index} (measurement {point.measurement!r}, time {point.time_unix_nano}): {message}"


def _check_name(index: int, point: Point, what: str, text: Any) -> None:
    if text.__class__ is not str:
        raise InvalidPoint(_point_error(index, point, f"{what} {text!r} is not a string"), "invalid_name")
    if not text or not _NON_PRINTABLE.isdisjoint(text) or text[-1] == "\\":
        raise InvalidPoint(
            _point_error(
                index,
                point,
                f"{what} {text!r} cannot be written: empty, a control character or a trailing backslash",
            ),
            "invalid_name",
        )


def _escape_measurement(index: int, point: Point) -> str:
    measurement = point.measurement
    _check_name(index, point, "measurement", measurement)
    escaped = measurement.replace(",", "\\,").replace(" ", "\\ ")
    if len(_measurements) < CACHE_LIMIT:
        _measurements[measurement] = escaped
    return escaped


def _escape_key(text: str) -> str:
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_tag(index: int, point: Point, pair: tuple[str, str]) -> str:
    key, value = pair
    if (not key or not value) and key.__class__ is str and value.__class__ is str:
        return ""  # writer.go optimizeTags: empty tag keys and values are left out
    _check_name(index, point, "tag key", key)
    _check_name(index, point, f"value of tag {key!r}", value)
    encoded = "," + _escape_key(key) + "=" + _escape_key(value)
    if len(_tag_pairs) < CACHE_LIMIT and len(value) <= CACHEABLE_LENGTH:
        _tag_pairs[pair] = encoded
    return encoded


def _escape_field_key(index: int, point: Point, key: str) -> str:
    if key == "":  # writer.go convertFields: empty field keys are left out
        return ""
    _check_name(index, point, "field key", key)
    encoded = _escape_key(key) + "="
    if len(escaped_field_keys) < CACHE_LIMIT:
        escaped_field_keys[key] = encoded
    return encoded
