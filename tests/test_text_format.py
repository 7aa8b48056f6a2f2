"""Injection-safe text and JSON log lines (rqa_otel.export.files.text).

Every string that comes from a log record (message, logger name, attribute
keys and values, tracebacks) carries payloads that forge log lines or drive a
terminal; the formatted line must stay one visible line and the escaping must
be reversible.
"""

from __future__ import annotations

import calendar
import json
import logging
import random
import re
import time
import traceback
from pathlib import Path

import pytest

from rqa_otel import names
from rqa_otel.export.log_entry import LogEntry
from rqa_otel.export.files.text import escape, format_json, format_text, iso_time, unescape

PAYLOADS = [
    "bob\n2026-01-01 INFO admin ok",
    "\x1b[2J\x1b[31m",
    "\x1b]0;t\x07",
    "\u2028",
    "\x85",
    "\x9b31m",
    "\x00",
    "\r",
    "\x7f",
    "\u2029",
    "\\",
]
# What must never appear raw in a line: every C0 control, DEL, every C1
# control, the Unicode line and paragraph separators.
FORBIDDEN = {chr(c) for c in range(0x20)} | {"\x7f"} | {chr(c) for c in range(0x80, 0xA0)} | {"\u2028", "\u2029"}
# The bidi controls are escaped too ("Trojan Source").
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
ALL_PAYLOADS = "".join(PAYLOADS)

# 2026-11-24T01:20:09.756123Z
TIME_NS = calendar.timegm((2026, 11, 24, 1, 20, 9, 0, 0, 0)) * 1_000_000_000 + 756_123_456
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7


def assert_one_safe_line(line: str) -> None:
    bad = sorted({f"U+{ord(c):04X}" for c in line if c in FORBIDDEN or c in BIDI or 0xD800 <= ord(c) <= 0xDFFF})
    assert not bad, f"raw {bad} in {line!r}"
    assert "\n" not in line and "\r" not in line
    assert len(line.splitlines()) == 1, line


def entry(message="order filled", logger="rqa.dual_ma_demo", attributes=None, trace_id=0, span_id=0, level=logging.INFO):
    if attributes is None:
        attributes = {names.STRATEGY: "dual_ma_demo", names.STOCK: "600519.SH", names.SIGNAL: "BUY"}
    return LogEntry(TIME_NS, level, logger, message, attributes, trace_id, span_id)


# --- escape ----------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_escape_makes_each_payload_one_visible_line(payload):
    escaped = escape("x" + payload + "y")
    assert_one_safe_line(escaped)
    assert unescape(escaped) == "x" + payload + "y"


def test_escaped_forms_are_visible():
    assert escape("bob\n2026-01-01 INFO admin ok") == "bob\\n2026-01-01 INFO admin ok"
    assert escape("\x1b[2J\x1b[31m") == "\\x1b[2J\\x1b[31m"
    assert escape("\x1b]0;t\x07") == "\\x1b]0;t\\x07"
    assert escape("\r\t\x00\x7f\x85\x9b31m") == "\\r\\t\\x00\\x7f\\x85\\x9b31m"
    assert escape("a\u2028b\u2029c") == "a\\u2028b\\u2029c"
    assert escape("\\") == "\\\\"
    assert escape("\x0b\x0c\x1c\x1d\x1e") == "\\x0b\\x0c\\x1c\\x1d\\x1e"  # VT, FF, FS, GS, RS break lines too
    assert escape("abc\u202edcb") == "abc\\u202edcb"  # right-to-left override
    assert escape("\udcff") == "\\udcff"  # a lone surrogate would make a UTF-8 writer raise


def test_escape_is_unambiguous():
    assert escape("a\\nb") != escape("a\nb")
    assert escape("a\\nb") == "a\\\\nb"
    assert escape("\\x1b") != escape("\x1b")
    assert escape("\\u2028") != escape("\u2028")
    for text in ("a\\nb", "a\nb", "\\x1b", "\x1b", "\\\\n", "\\\n", "C:\\new\\table", ALL_PAYLOADS):
        assert unescape(escape(text)) == text


def test_escape_round_trips_random_text():
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(0x00, 0x250)] + list("\u2028\u2029\ud800\udfff贵州茅台\u202e\ufeff\U0001f4c8")
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        escaped = escape(text)
        assert_one_safe_line(escaped + "|")
        assert unescape(escaped) == text


def test_no_code_point_survives_as_a_line_break():
    for code in range(0x110000):
        escaped = escape(chr(code))
        assert len(("a" + escaped + "b").splitlines()) == 1, hex(code)


def test_printable_text_passes_unchanged_as_the_same_object():
    for text in ("贵州茅台 买入 600519.SH", "order filled for 600519.SH at 1712.50 qty 100", "Straße ≥ 5 €", "📈", ""):
        assert escape(text) is text


def test_fast_path_assumption_holds():
    # escape() skips the regex for printable text without a backslash: every
    # character it escapes other than the backslash must be non-printable.
    from rqa_otel.export.files import text as module

    assert [c for c in module._TABLE if c.isprintable()] == ["\\"]
    for code in range(0x110000):
        char = chr(code)
        assert (module._MUST_ESCAPE.fullmatch(char) is not None) == (char in module._TABLE), hex(code)


# --- format_text ----------------------------------------------------------------------


def test_text_line_layout():
    line = format_text(
        entry(
            "signal generated",
            attributes={
                names.SIGNAL: "BUY",
                names.STRATEGY: "dual_ma_demo",
                "short_ma": 5.25,
                names.STOCK: "600519.SH",
                "window": 20,
                "note": "均线金叉",
            },
            trace_id=TRACE_ID,
            span_id=SPAN_ID,
        )
    )
    assert line == (
        "2026-11-24T01:20:09.756123Z INFO    rqa.dual_ma_demo "
        "[strategy=dual_ma_demo stock=600519.SH signal=BUY] signal generated short_ma=5.25 window=20 note=均线金叉 "
        "trace_id=0af7651916cd43dd8448eb211c80319c span_id=00f067aa0ba902b7"
    )


def test_text_defaults_and_optional_parts():
    line = format_text(entry("tick", attributes={}, level=logging.WARNING))
    assert line == "2026-11-24T01:20:09.756123Z WARNING rqa.dual_ma_demo [strategy=GLOBAL stock=N/A signal=NONE] tick"
    assert "trace_id" not in line and "span_id" not in line and " | " not in line
    critical = format_text(entry("x", level=logging.CRITICAL))
    assert " CRITICAL rqa.dual_ma_demo [" in critical  # never glued to the logger name
    assert " Level 25 rqa" in format_text(entry("x", level=25))


def test_iso_time_has_microseconds_and_z():
    assert iso_time(TIME_NS) == "2026-11-24T01:20:09.756123Z"
    assert iso_time(0) == "1970-01-01T00:00:00.000000Z"
    assert iso_time(TIME_NS + 1_000_000_000) == "2026-11-24T01:20:10.756123Z"  # the per-second cache moves on


def test_every_record_string_is_escaped_in_the_text_line():
    attributes = {names.STRATEGY: "s\n1", names.STOCK: "\x1b[31m600519.SH", names.SIGNAL: "\u2028BUY"}
    for i, payload in enumerate(PAYLOADS):
        attributes[f"key{i}{payload}"] = f"value{payload}"
    attributes["bytes"] = b"\n\x1b"
    attributes["obj"] = ValueError("boom\r\nINFO forged")
    attributes["exception.stacktrace"] = "Traceback (most recent call last):\n" + ALL_PAYLOADS + "\n"
    line = format_text(entry(ALL_PAYLOADS, logger="rqa." + ALL_PAYLOADS, attributes=attributes, trace_id=1, span_id=2))
    assert_one_safe_line(line)
    for form in ("\\n", "\\x1b", "\\x07", "\\u2028", "\\x85", "\\x9b", "\\x00", "\\r", "\\x7f", "\\u2029", "\\\\"):
        assert form in line
    assert "[strategy=s\\n1 stock=\\x1b[31m600519.SH signal=\\u2028BUY]" in line
    assert " key0bob\\n2026-01-01 INFO admin ok=valuebob\\n2026-01-01 INFO admin ok " in line
    assert " bytes=b'\\\\n\\\\x1b' " in line  # str() of the bytes, then escaped
    assert " obj=boom\\r\\nINFO forged " in line
    assert line.endswith(" | Traceback (most recent call last):\\n" + escape(ALL_PAYLOADS))  # trailing newline dropped
    assert "trace_id=00000000000000000000000000000001 span_id=0000000000000002 | Traceback" in line


def test_chinese_passes_unchanged():
    line = format_text(
        entry("贵州茅台 金叉买入", logger="rqa.策略", attributes={names.STOCK: "600519.SH", "名称": "贵州茅台"})
    )
    assert "rqa.策略 [strategy=GLOBAL stock=600519.SH signal=NONE] 贵州茅台 金叉买入 名称=贵州茅台" in line


def test_a_real_traceback_stays_on_one_line():
    try:
        {}["missing\nINFO forged line"]
    except KeyError as exc:
        attributes = {
            names.STRATEGY: "dual_ma_demo",
            "exception.type": type(exc).__name__,
            "exception.message": str(exc),
            "exception.stacktrace": traceback.format_exc(),
        }
    line = format_text(entry("order failed", attributes=attributes))
    assert_one_safe_line(line)
    message, _, stacktrace = line.partition(" | ")
    assert "exception.type=KeyError" in message
    assert stacktrace.startswith("Traceback (most recent call last):\\n  File ")
    assert unescape(stacktrace) == attributes["exception.stacktrace"].rstrip("\n")

    document = json.loads(format_json(entry("order failed", attributes=attributes)))
    assert document["exception"] == attributes["exception.stacktrace"]
    assert "exception.stacktrace" not in document["attributes"]


# --- format_json ---------------------------------------------------------------------------


def test_json_line_keys_and_values():
    attributes = {
        names.STRATEGY: "dual_ma_demo",
        names.STOCK: "600519.SH",
        names.SIGNAL: "BUY",
        "price": 1712.5,
        "qty": 100,
        "flag": True,
        "none": None,
        "levels": (1, 2.5, "x"),
        "nested": {"a": [1, 2]},
        "bytes": b"\x01",
        "nan": float("nan"),
        "obj": ValueError("boom"),
    }
    line = format_json(entry("filled", attributes=attributes, trace_id=TRACE_ID, span_id=SPAN_ID))
    assert "\n" not in line
    document = json.loads(line, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    assert document == {
        "time": "2026-11-24T01:20:09.756123Z",
        "level": "INFO",
        "logger": "rqa.dual_ma_demo",
        "message": "filled",
        "strategy": "dual_ma_demo",
        "stock": "600519.SH",
        "signal": "BUY",
        "attributes": {
            "price": 1712.5,
            "qty": 100,
            "flag": True,
            "none": None,
            "levels": [1, 2.5, "x"],
            "nested": {"a": [1, 2]},
            "bytes": "b'\\x01'",
            "nan": "nan",
            "obj": "boom",
        },
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "00f067aa0ba902b7",
    }
    bare = json.loads(format_json(entry("x", attributes={})))
    assert (bare["strategy"], bare["stock"], bare["signal"]) == ("GLOBAL", "N/A", "NONE")
    assert "trace_id" not in bare and "span_id" not in bare and "exception" not in bare


def test_json_round_trips_every_payload_exactly():
    attributes = {names.STRATEGY: "s\u2028", names.STOCK: "600519.SH\x85", names.SIGNAL: "\x9bBUY"}
    for i, payload in enumerate(PAYLOADS):
        attributes[f"key{i}{payload}"] = f"value{payload}"
    attributes["lone"] = "\ud800x"
    attributes["bidi"] = BIDI
    attributes["exception.stacktrace"] = "Traceback\n" + ALL_PAYLOADS
    message = ALL_PAYLOADS + " 贵州茅台"
    line = format_json(entry(message, logger="rqa." + ALL_PAYLOADS, attributes=attributes))
    assert_one_safe_line(line)
    assert "贵州茅台" in line  # ensure_ascii=False: CJK stays readable
    line.encode("utf-8")  # no lone surrogate left raw
    document = json.loads(line)
    assert document["message"] == message
    assert document["logger"] == "rqa." + ALL_PAYLOADS
    assert (document["strategy"], document["stock"], document["signal"]) == ("s\u2028", "600519.SH\x85", "\x9bBUY")
    assert document["exception"] == "Traceback\n" + ALL_PAYLOADS
    expected = {k: v for k, v in attributes.items() if k not in (names.STRATEGY, names.STOCK, names.SIGNAL)}
    del expected["exception.stacktrace"]
    assert document["attributes"] == expected


# --- through the real logging module ------------------------------------------------------

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class LineFileHandler(logging.Handler):
    """Builds a LogEntry from each LogRecord and writes one line per record."""

    def __init__(self, path: Path, formatter=format_text) -> None:
        super().__init__()
        self._file = path.open("w", encoding="utf-8", newline="")
        self._format = formatter

    def emit(self, record: logging.LogRecord) -> None:
        attributes = {key: value for key, value in vars(record).items() if key not in _STANDARD}
        if record.exc_info:
            attributes["exception.stacktrace"] = logging.Formatter().formatException(record.exc_info)
        log_entry = LogEntry(int(record.created * 1e9), record.levelno, record.name, record.getMessage(), attributes)
        self._file.write(self._format(log_entry) + "\n")

    def close(self) -> None:
        self._file.close()
        super().close()


@pytest.mark.parametrize("formatter", [format_text, format_json], ids=["text", "json"])
def test_real_logging_writes_one_line_per_call(tmp_path, formatter):
    path = tmp_path / "app.log"
    handler = LineFileHandler(path, formatter)
    loggers = [logging.getLogger("rqa.test_text_format." + p) for p in PAYLOADS + ["贵州茅台"]]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    calls = 0
    try:
        for logger in loggers:
            for payload in PAYLOADS:
                logger.info("user %s logged in%s", payload, payload)
                logger.warning(payload, extra={names.STOCK: payload, "note" + payload: payload})
                try:
                    raise RuntimeError("failed:" + payload)
                except RuntimeError:
                    logger.exception("order %s rejected", payload)
                calls += 3
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()

    data = path.read_bytes()
    assert data.count(b"\n") == calls
    assert b"\r" not in data
    text = data.decode("utf-8")
    lines = text.splitlines()  # also breaks at \x85, \u2028, \x1c ...
    assert len(lines) == calls
    for line in lines:
        assert_one_safe_line(line)
    if formatter is format_json:
        documents = [json.loads(line) for line in lines]
        assert documents[0]["message"] == f"user {PAYLOADS[0]} logged in{PAYLOADS[0]}"
        assert documents[1]["stock"] == PAYLOADS[0]
        assert documents[2]["exception"].endswith(f"RuntimeError: failed:{PAYLOADS[0]}")
        assert {d["logger"] for d in documents} == {logger.name for logger in loggers}
    else:
        assert lines[0].endswith("user bob\\n2026-01-01 INFO admin ok logged inbob\\n2026-01-01 INFO admin ok")
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ERROR   rqa\.test_text_format\.", lines[2])
        assert " | Traceback (most recent call last):\\n" in lines[2]


# --- the fast path of format_text --------------------------------------------------------


class _Shown(str):
    """A str subclass whose str() differs from its value."""

    def __str__(self) -> str:
        return "shown\n" + self


def _random_value(rng: random.Random):
    texts = PAYLOADS + BIDI_TEXTS + ["600519.SH", "贵州茅台", "Straße", "", " ", "\xa0nbsp", "a" * 100, "\ud800lone"]
    kind = rng.randrange(12)
    if kind < 4:
        return rng.choice(texts) if rng.random() < 0.5 else rng.choice(["BUY", "dual_ma_demo", "run-1", "贵州茅台"])
    return [
        1688.5, float("nan"), float("-inf"), 1e16, -0.0, 42, -(1 << 70), True, None,
        b"\n\x1b", ValueError("boom\r\nINFO forged"), _Shown("x"), logging.INFO, (1, "a\nb"), {"k": "v\x1b"},
    ][rng.randrange(15)] if kind >= 5 else rng.choice(texts)


BIDI_TEXTS = ["\u202eevil", "a\u2066b", "\u061c"]


def test_fast_text_path_writes_what_escaping_each_piece_writes():
    from rqa_otel.export.files import text as module

    rng = random.Random(16)
    keys = ["note", "rqa.run.id", "键", "a\nb", "back\\slash", 7, None, _Shown("k"), "\u2028", "x" * 80]
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, 25, 5, 35]
    logging.addLevelName(35, "BAD\nLEVEL")
    logging.addLevelName(5, "trace")
    try:
        for _ in range(3000):
            attributes = {}
            for _ in range(rng.randrange(6)):
                key = rng.choice(keys + [names.STRATEGY, names.STOCK, names.SIGNAL])
                attributes[key] = _random_value(rng)
            if rng.random() < 0.1:
                attributes["exception.stacktrace"] = "Traceback\n  line " + rng.choice(PAYLOADS) + "\n"
            record = LogEntry(
                rng.choice([TIME_NS, 0, 1_706_684_400_000_000_046]),
                rng.choice(levels),
                rng.choice(["rqa.dual_ma_demo", "rqa.策略", "rqa.\x1b[2J", "rqa.\\x"]),
                rng.choice(["order filled", "贵州茅台 买入"] + PAYLOADS),
                attributes,
                rng.choice([0, TRACE_ID]),
                rng.choice([0, SPAN_ID]),
            )
            expected = module._format_text_escaped(record, attributes)
            assert format_text(record) == expected  # the caches filled ...
            assert format_text(record) == expected  # ... and used
            assert format_text(tuple(record)) == expected  # a plain tuple as the sinks pass it
    finally:
        logging.addLevelName(35, "Level 35")
        logging.addLevelName(5, "Level 5")


def test_fast_text_path_is_taken_for_ordinary_records(monkeypatch):
    from rqa_otel.export.files import text as module

    plain = entry("BUY 600519.SH close=1688.50", attributes={
        names.STRATEGY: "dual_ma_demo", names.STOCK: "600519.SH", names.SIGNAL: "BUY",
        "rqa.portfolio.value": 1019291.4986468812, "rqa.portfolio.positions": 2, "ok": True, "名称": "贵州茅台",
    }, trace_id=TRACE_ID, span_id=SPAN_ID)
    expected = module._format_text_escaped(plain, plain.attributes)
    calls = []
    monkeypatch.setattr(module, "_format_text_escaped", lambda *args: calls.append(args) or expected)
    assert format_text(plain) == expected
    assert calls == []
    format_text(entry("bob\n2026-01-01 INFO admin ok"))  # needs escaping: the other path
    assert len(calls) == 1


def test_a_shaped_entry_is_formatted_as_its_attribute_dict():
    from rqa_otel.export.log_entry import with_attribute_dict
    from rqa_otel.trading import monitor  # registers the trade event's shape

    shape = monitor.TRADE_EVENT_SHAPE
    for strings in (("dual_ma_demo", "600519.SH", "BUY", "buy", "run1"), ("s\n1", "贵州茅台", "BUY", "buy", "\x1b]0;t")):
        shaped = (TIME_NS, logging.INFO, shape.name, "buy 100 600519.SH @ 1688.5", None, TRACE_ID, SPAN_ID, 1,
                  *strings, 1688.5, 100.0, 168850.0, 3)
        as_dict = LogEntry._make(with_attribute_dict(shaped))
        assert format_text(shaped) == format_text(as_dict)
        assert " rqa.trade.price=1688.5 " in format_text(shaped)


def test_iso_time_writes_what_strftime_writes():
    rng = random.Random(7)
    seconds = [0, 1, 59, 60, 86399, 86400, 951782400, 951868799, 2147483647, 2147483648, 4102444800,
               253402300799, 253402300800, 253402300801, -1, -86401]
    seconds += [rng.randrange(0, 253402300800) for _ in range(20000)] + [rng.randrange(-10**10, 0) for _ in range(200)]
    for second in seconds:
        for ns in (0, 999, 123_456_789, 999_999_999):
            expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{ns // 1000:06d}Z"
            assert iso_time(second * 1_000_000_000 + ns) == expected, second
