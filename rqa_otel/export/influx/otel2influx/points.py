"""InfluxDB points as the conversion hands them to the line-protocol writer:
:class:`Point`, the field value types (:class:`UInt`, :func:`field_type`),
:class:`SeriesTags` and the limits of the conversion's caches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, Union

FieldType = Literal["float", "int", "uint", "string", "bool"]


class UInt(int):
    """A uint64 field value, written ``12u`` (a plain ``int`` is an int64, ``12i``)."""

    __slots__ = ()
    __str__ = int.__repr__  # "5", as for an int

    def __repr__(self) -> str:
        return f"UInt({int.__repr__(self)})"


FieldValue = Union[float, int, UInt, str, bool]

_FIELD_TYPES: Final[dict[type, FieldType]] = {float: "float", int: "int", UInt: "uint", str: "string", bool: "bool"}


def field_type(value: FieldValue) -> FieldType:
    """The InfluxDB type of a field value: float, int, uint, string or bool."""
    try:
        return _FIELD_TYPES[value.__class__]
    except KeyError:
        raise ValueError(f"not an InfluxDB field value: {value!r} ({type(value).__name__})") from None


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point. ``tags`` are as otel2influx hands them to the
    writer (empty values included: :func:`to_line_protocol` skips them, as the
    Collector does); ``fields`` keep their type (see :func:`field_type`)."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_unix_nano: int


# A frozen dataclass __init__ calls object.__setattr__ per field; the slot
# descriptors do the same job in half the time, and points are made by the
# hundred thousand per second.
_new_point = object.__new__
_set_measurement = Point.measurement.__set__  # type: ignore[attr-defined]
_set_tags = Point.tags.__set__  # type: ignore[attr-defined]
_set_fields = Point.fields.__set__  # type: ignore[attr-defined]
_set_time = Point.time_unix_nano.__set__  # type: ignore[attr-defined]


class SeriesTags(dict):
    """The tags of one metric series, built once and shared by its points
    from one export to the next (``sdk_points.MetricsConverter``). It must
    not change once built: :func:`to_line_protocol` keeps the escaped line
    prefix of each measurement on it, which saves most of the cost of a line."""

    __slots__ = ("prefixes", "heads")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.prefixes: dict[str, str] = {}
        # number_lines: per measurement and value field, (start time, the
        # line up to the value): a cumulative series keeps its start time.
        self.heads: dict[str, tuple[int, str]] = {}


def make_point(measurement: str, tags: dict, fields: dict, time_unix_nano: int) -> Point:
    """``Point(measurement, tags, fields, time_unix_nano)`` without the frozen dataclass's ``__init__``."""
    p = _new_point(Point)
    _set_measurement(p, measurement)
    _set_tags(p, tags)
    _set_fields(p, fields)
    _set_time(p, time_unix_nano)
    return p


# The module-level caches of the conversion (encoded tags, JSON members, bound
# keys...) stop growing at CACHE_LIMIT entries; strings longer than
# CACHEABLE_LENGTH are not cached (they rarely repeat).
CACHE_LIMIT = 50_000
CACHEABLE_LENGTH = 256
