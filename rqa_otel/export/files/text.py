"""Injection-safe text and JSON lines for log entries.

A log line is data from the record (message, logger name, ``extra`` keys and
values, tracebacks) in a layout we choose. Anything in the data that a
terminal, ``tail``, ``grep`` or a log viewer treats as a line break or a
control sequence lets a caller forge records (``"bob\\n2026-01-01 INFO admin
ok"``) or drive the operator's terminal (``"\\x1b]0;title\\x07"``,
``"\\x1b[2J"``). :func:`escape` makes any string a visible, reversible,
single-line text; :func:`format_text` and :func:`format_json` pass every
string that comes from the record through it (or through JSON's own escaping
plus the same post-processing).

Escaped (see ``_MUST_ESCAPE``):

* backslash -> ``\\\\`` (so escapes are unambiguous: ``"a\\\\nb"`` and
  ``"a\\nb"`` stay distinct and :func:`unescape` restores the input);
* ``\\n`` ``\\r`` ``\\t`` by name, every other C0 control (U+0000-U+001F,
  which includes VT, FF and the FS/GS/RS separators), DEL (U+007F) and every
  C1 control (U+0080-U+009F: NEL U+0085, CSI U+009B, OSC U+009D ...) as
  ``\\xHH``;
* the Unicode line and paragraph separators U+2028 and U+2029 as ``\\uHHHH``
  (together with the controls above this is every code point that
  ``str.splitlines`` breaks on);
* the bidirectional format controls U+061C, U+200E, U+200F, U+202A-U+202E and
  U+2066-U+2069 ("Trojan Source", CVE-2021-42574): they do not break lines
  but reorder what the reader sees, so a line can be made to display as
  another one;
* lone surrogates U+D800-U+DFFF (from ``surrogateescape`` decoding) as
  ``\\uHHHH``: written raw they make a UTF-8 file writer raise.

Everything else, CJK text such as ``贵州茅台`` included, passes unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from datetime import date
from json.encoder import encode_basestring
from typing import Any, Mapping

from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_STACKTRACE

from rqa_otel import names
from rqa_otel.export.log_entry import LogEntry, attributes_of

__all__ = ["escape", "unescape", "format_text", "format_json", "iso_time"]

# One character class, used both for the fast-path search and for the sub.
_MUST_ESCAPE_CLASS = (
    "\\\\"  # backslash
    "\x00-\x1f"  # C0 controls
    "\x7f-\x9f"  # DEL and C1 controls
    "\u061c\u200e\u200f"  # bidi marks
    "\u2028\u2029"  # line / paragraph separator
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides, isolates
    "\ud800-\udfff"  # lone surrogates
)
_MUST_ESCAPE = re.compile(f"[{_MUST_ESCAPE_CLASS}]")
_needs_escape = _MUST_ESCAPE.search


def _escaped_form(code: int) -> str:
    named = {0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}.get(code)
    if named is not None:
        return named
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _build_table() -> dict[str, str]:
    ranges = ((0x00, 0x1F), (0x5C, 0x5C), (0x7F, 0x9F), (0x061C, 0x061C), (0x200E, 0x200F),
              (0x2028, 0x202E), (0x2066, 0x2069), (0xD800, 0xDFFF))
    return {chr(code): _escaped_form(code) for low, high in ranges for code in range(low, high + 1)}


# char -> escaped form, looked up by the sub callback: for a text with a few
# characters to escape that is 2.5x faster than str.translate with the same
# table, which maps every character (1.0 us against 2.5 us for 60 characters).
_TABLE = _build_table()
_escape_sub = _MUST_ESCAPE.sub


def _replace(match: re.Match[str], _table: dict[str, str] = _TABLE) -> str:
    return _table[match.group()]


def escape(text: str) -> str:
    """``text`` as a single visible line; the same object when nothing needs escaping."""
    # Fast path, ~2x cheaper than the regex search alone: every character in
    # the class except the backslash is non-printable for str.isprintable
    # (tests/test_text_format.py checks this on the whole table), so a
    # printable text without a backslash has nothing to escape. Texts that
    # fail it (an NBSP, a CJK full-width space ...) still get the exact search.
    if text.isprintable() and "\\" not in text:
        return text
    if _needs_escape(text) is None:
        return text
    return _escape_sub(_replace, text)


_UNESCAPE = re.compile(r"\\(?:([\\nrt])|x([0-9a-f]{2})|u([0-9a-f]{4}))")
_UNNAMED = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def _unreplace(match: re.Match[str]) -> str:
    named, byte, wide = match.groups()
    if named is not None:
        return _UNNAMED[named]
    return chr(int(byte or wide, 16))


def unescape(text: str) -> str:
    """Inverse of :func:`escape`: ``unescape(escape(s)) == s`` for every str ``s``."""
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(_unreplace, text)


# --- time -------------------------------------------------------------------

# One-entry cache of the "YYYY-MM-DDTHH:MM:SS" prefix: at high rates most
# records share their second. A tuple is swapped atomically, so concurrent
# writers at worst recompute it.
_second_cache: tuple[int, str] = (-1, "")
_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()
_fromordinal = date.fromordinal
_YEAR_10000 = 253402300800  # seconds since the epoch


def iso_time(time_ns: int) -> str:
    """UTC ISO-8601 with microseconds and ``Z``: ``2026-11-24T01:20:09.756123Z``."""
    global _second_cache
    seconds, ns = divmod(time_ns, 1_000_000_000)
    cached_second, prefix = _second_cache
    if seconds != cached_second:
        if 0 <= seconds < _YEAR_10000:
            # What strftime writes, without its call: records of a backtest
            # carry the bars' times, a new second each (and strftime's first
            # call in a process costs ~20 us).
            day, second = divmod(seconds, 86400)
            hour, second = divmod(second, 3600)
            minute, second = divmod(second, 60)
            prefix = f"{_fromordinal(_EPOCH_ORDINAL + day).isoformat()}T{hour:02d}:{minute:02d}:{second:02d}"
        else:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second_cache = (seconds, prefix)
    return f"{prefix}.{ns // 1000:06d}Z"


# --- levels -----------------------------------------------------------------

_level_text: dict[int, str] = {}
_level_name: dict[int, str] = {}


def _level_column(level: int) -> str:
    """Level name in a column of 8 ("INFO    ", "WARNING ", "CRITICAL "): names
    of up to 7 characters are padded to 8, longer ones get one separating
    space, so the logger name never touches the level."""
    text = _level_text.get(level)
    if text is None:
        name = escape(str(logging.getLevelName(level)))
        text = name.ljust(7) + " "
        if len(_level_text) < 256:
            _level_text[level] = text
    return text


def _level(level: int) -> str:
    text = _level_name.get(level)
    if text is None:
        text = str(logging.getLevelName(level))
        if len(_level_name) < 256:
            _level_name[level] = text
    return text


# --- text lines ---------------------------------------------------------------

_NOT_LISTED = frozenset((names.STRATEGY, names.STOCK, names.SIGNAL, EXCEPTION_STACKTRACE))


def _text_value(value: Any) -> str:
    return escape(value if type(value) is str else str(value))


# Records logged inside one span share their ids: the last text is reused.
_ids_cache: tuple[int, int, str] = (0, 0, "")


def _ids_text(trace_id: int, span_id: int) -> str:
    global _ids_cache
    cached_trace, cached_span, text = _ids_cache
    if trace_id != cached_trace or span_id != cached_span:
        text = (f" trace_id={trace_id:032x}" if trace_id else "") + (f" span_id={span_id:016x}" if span_id else "")
        _ids_cache = (trace_id, span_id, text)
    return text


def format_text(entry: tuple) -> str:
    """One line, without a trailing newline::

        2026-11-24T01:20:09.756123Z INFO    rqa.dual_ma_demo [strategy=dual_ma_demo stock=600519.SH signal=BUY] message key=value trace_id=<32 hex> span_id=<16 hex> | <escaped stacktrace>

    Every string from the record goes through :func:`escape`; values that are
    not strings are rendered with ``str()`` first. ``trace_id``/``span_id``
    only appear when non-zero, the ``| stacktrace`` part only with an
    ``exception.stacktrace`` attribute (its trailing newline dropped).
    ``entry`` is a LogEntry or a plain entry tuple, of a registered event
    shape too (``rqa_otel.export.log_entry``).
    """
    # Fast path: every string from the record that needs no escaping (the
    # usual case) goes in as it is: printable and without a backslash, which
    # escape() returns unchanged (see there). One check per string, and none
    # for the str() of a float, int or bool, or for strings seen clean before
    # (keys, quant values, run ids). Any other record, and every record with
    # a stack trace, is formatted piece by piece (_format_text_escaped, the
    # one definition of the format); the two agree on every record the fast
    # path takes (tests/test_text_format.py compares them).
    attributes = entry[4]
    if attributes is None:
        attributes = attributes_of(entry)
    if _STACKTRACE in attributes:
        return _format_text_escaped(entry, attributes)
    head = _heads.get((entry[1], entry[2]))
    if head is None:
        head = _head(entry[1], entry[2])
        if head is None:
            return _format_text_escaped(entry, attributes)
    clean = _clean
    get = attributes.get
    strategy = get(_STRATEGY)
    stock = get(_STOCK)
    signal = get(_SIGNAL)
    message = entry[3]
    if (
        (strategy.__class__ is not str or strategy not in clean)
        and (strategy := _plain_text(strategy, _DEFAULT_STRATEGY)) is None
        or (stock.__class__ is not str or stock not in clean)
        and (stock := _plain_text(stock, _DEFAULT_STOCK)) is None
        or (signal.__class__ is not str or signal not in clean)
        and (signal := _plain_text(signal, _DEFAULT_SIGNAL)) is None
        or message.__class__ is not str
        or not message.isprintable()
        or "\\" in message
    ):
        return _format_text_escaped(entry, attributes)
    parts = [iso_time(entry[0]), head, strategy, " stock=", stock, " signal=", signal, "] ", message]
    append = parts.append
    keys = _keys
    for key, value in attributes.items():
        key_text = keys.get(key) if key.__class__ is str else None
        if key_text is None:
            if key in _QUANT:
                continue
            key_text = _key_text(key)
            if key_text is None:
                return _format_text_escaped(entry, attributes)
        append(key_text)
        kind = value.__class__
        if kind is str:
            if value not in clean:
                if not value.isprintable() or "\\" in value:
                    return _format_text_escaped(entry, attributes)
                if len(value) <= _CLEAN_LENGTH:
                    if len(clean) >= _CACHE_SIZE:
                        clean.clear()
                    clean.add(value)
            append(value)
        elif kind is float or kind is int or kind is bool:
            append(str(value))  # digits, ".", "e", "+", "-", "inf", "nan", "True", "False"
        else:
            value = str(value)
            if not value.isprintable() or "\\" in value:
                return _format_text_escaped(entry, attributes)
            append(value)
    if entry[5] or entry[6]:
        append(_ids_text(entry[5], entry[6]))
    return "".join(parts)


_STRATEGY, _STOCK, _SIGNAL, _STACKTRACE = names.STRATEGY, names.STOCK, names.SIGNAL, EXCEPTION_STACKTRACE
_DEFAULT_STRATEGY, _DEFAULT_STOCK, _DEFAULT_SIGNAL = names.DEFAULT_STRATEGY, names.DEFAULT_STOCK, names.DEFAULT_SIGNAL
_QUANT = frozenset((names.STRATEGY, names.STOCK, names.SIGNAL))
_CACHE_SIZE = 4096
_CLEAN_LENGTH = 64
# Strings (values up to _CLEAN_LENGTH characters) found to need no escaping.
# The caches below are cleared when full, so generated values cannot grow them.
_clean: set[str] = set()
# " INFO    logger [strategy=" per (level, logger name) whose name needs no
# escaping; " key=" per attribute key that needs none and is not a quant key.
_heads: dict[tuple[int, str], str] = {}
_keys: dict[str, str] = {}


def _plain(text: str) -> bool:
    """escape(text) is text (printable, no backslash: see escape())."""
    return text.isprintable() and "\\" not in text


def _plain_text(value: Any, default: str) -> str | None:
    """The text of a quant value as format_text writes it, None when it
    needs escaping."""
    if value is None:
        return default
    text = value if type(value) is str else str(value)
    if not _plain(text):
        return None
    if type(value) is str and len(text) <= _CLEAN_LENGTH:
        if len(_clean) >= _CACHE_SIZE:
            _clean.clear()
        _clean.add(text)
    return text


def _head(level: int, logger: Any) -> str | None:
    if type(logger) is not str or not _plain(logger):
        return None
    head = f" {_level_column(level)}{logger} [strategy="
    if not _plain(head):  # a level name that escape() changed
        return None
    if len(_heads) >= _CACHE_SIZE:
        _heads.clear()
    _heads[(level, logger)] = head
    return head


def _key_text(key: Any) -> str | None:
    if type(key) is not str or not _plain(key):
        return None
    text = f" {key}="
    if len(_keys) >= _CACHE_SIZE:
        _keys.clear()
    _keys[key] = text
    return text


def _format_text_escaped(entry: tuple, attributes: Mapping[Any, Any]) -> str:
    """format_text, every piece escaped on its own: the format's definition,
    and the path of lines the fast one cannot take."""
    get = attributes.get
    strategy = get(names.STRATEGY)
    stock = get(names.STOCK)
    signal = get(names.SIGNAL)
    parts = [
        iso_time(entry[0]),
        " ",
        _level_column(entry[1]),
        escape(entry[2]),
        " [strategy=",
        names.DEFAULT_STRATEGY if strategy is None else _text_value(strategy),
        " stock=",
        names.DEFAULT_STOCK if stock is None else _text_value(stock),
        " signal=",
        names.DEFAULT_SIGNAL if signal is None else _text_value(signal),
        "] ",
        _text_value(entry[3]),
    ]
    append = parts.append
    stacktrace = None
    for key, value in attributes.items():
        if key in _NOT_LISTED:
            if key == EXCEPTION_STACKTRACE:
                stacktrace = value
            continue
        append(" ")
        append(escape(key) if type(key) is str else _text_value(key))
        append("=")
        append(escape(value) if type(value) is str else _text_value(value))
    if entry[5] or entry[6]:
        append(_ids_text(entry[5], entry[6]))
    if stacktrace is not None:
        append(" | ")
        text = stacktrace if type(stacktrace) is str else str(stacktrace)
        append(escape(text.rstrip("\r\n")))
    return "".join(parts)


# --- JSON lines ---------------------------------------------------------------

# Non-ASCII is written as is (ensure_ascii=False semantics): CJK messages and
# stock names stay readable in the file, at 3 UTF-8 bytes a character instead
# of a 6-byte \uXXXX. JSON string escaping (json's C encode_basestring)
# covers only '"', '\\' and C0 controls, so the finished line is checked for
# what it leaves raw (DEL, C1 controls with NEL, U+2028/U+2029, bidi
# controls, lone surrogates) and those become \uXXXX escapes. The JSON
# structure itself is ASCII, so such characters can only be inside strings,
# where \uXXXX stands for exactly the same character: json.loads gives back
# the original strings. All of them are non-printable, so a printable line
# (nearly every line) needs no regex search at all.
# The line is assembled from encode_basestring pieces rather than by
# json.dumps of a dict: ~3 us instead of ~6 us for a typical record.
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_json_raw_search = _JSON_RAW.search
_json_raw_sub = _JSON_RAW.sub
_quote = encode_basestring  # the C implementation: str -> '"escaped"'
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_float_repr = float.__repr__  # what json uses for floats
_int_repr = int.__repr__


def _json_u(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _json_value(value: Any) -> Any:
    """``value`` as something json can encode without loss or error."""
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else str(value)  # no NaN/Infinity tokens: not JSON
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    return str(value)  # bytes, enums, Decimal, numpy scalars, objects ...: their text


def _json(value: Any) -> str:
    """``value`` as JSON text."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is float:
        return _float_repr(value) if math.isfinite(value) else _quote(str(value))
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return _int_repr(value)
    if value is None:
        return "null"
    return _encode(_json_value(value))


def format_json(entry: LogEntry) -> str:
    """One JSON object, without a trailing newline, that contains no raw line
    break, control or bidi character; ``json.loads`` returns the exact strings.

    Keys: time, level, logger, message, strategy, stock, signal, attributes,
    then trace_id/span_id (hex, only when non-zero) and exception (the
    ``exception.stacktrace`` attribute, only when present).
    """
    attributes = entry.attributes
    get = attributes.get
    strategy = get(names.STRATEGY)
    stock = get(names.STOCK)
    signal = get(names.SIGNAL)
    parts = [
        '{"time":"',
        iso_time(entry.time_ns),
        '","level":',
        _quote(_level(entry.level)),
        ',"logger":',
        _json(entry.logger),
        ',"message":',
        _json(entry.message),
        ',"strategy":',
        _DEFAULT_STRATEGY_JSON if strategy is None else _json(strategy),
        ',"stock":',
        _DEFAULT_STOCK_JSON if stock is None else _json(stock),
        ',"signal":',
        _DEFAULT_SIGNAL_JSON if signal is None else _json(signal),
        ',"attributes":{',
    ]
    append = parts.append
    stacktrace = None
    separator = ""
    for key, value in attributes.items():
        if key in _NOT_LISTED:
            if key == EXCEPTION_STACKTRACE:
                stacktrace = value
            continue
        append(separator)
        append(_quote(key if type(key) is str else str(key)))
        append(":")
        append(_json(value))
        separator = ","
    append("}")
    if entry.trace_id:
        append(f',"trace_id":"{entry.trace_id:032x}"')
    if entry.span_id:
        append(f',"span_id":"{entry.span_id:016x}"')
    if stacktrace is not None:
        append(',"exception":')
        append(_json(stacktrace))
    append("}")
    line = "".join(parts)
    if line.isprintable() or _json_raw_search(line) is None:
        return line
    return _json_raw_sub(_json_u, line)


_DEFAULT_STRATEGY_JSON = _quote(names.DEFAULT_STRATEGY)
_DEFAULT_STOCK_JSON = _quote(names.DEFAULT_STOCK)
_DEFAULT_SIGNAL_JSON = _quote(names.DEFAULT_SIGNAL)
