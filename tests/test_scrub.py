"""Secret scrubbing: rqa_otel.scrub.Scrubber and ScrubbingSpanExporter.

Span tests run through the real SDK: a TracerProvider whose span processors
feed an InMemorySpanExporter directly (what the span really was) and one
wrapped in ScrubbingSpanExporter (what leaves the process).
"""

from __future__ import annotations

import random
import re
import threading

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode

from rqa_otel import names
from rqa_otel.export.scrubbing import ScrubbingSpanExporter
from rqa_otel.scrub import DEFAULT_KEY_PATTERNS, MARKER, MIN_SECRET_LENGTH, Scrubber

# Secrets with no 4-character run in common with each other, the marker or
# the surrounding test text, so "no 4+ character part of it is in the
# output" is a meaningful check.
SECRETS = ("Xk9$vQ2!mPzR", "h7G#t4Wq@Lw0", "Zq8%Ny3^Jd6&Bf1*", "s3cr3t-Valu3-9Zk")


def fragments(secret: str, size: int = 4) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def assert_no_part_of(secret: str, text: str) -> None:
    leaked = sorted(part for part in fragments(secret) if part in text)
    assert not leaked, f"{text!r} still contains {leaked} of the secret"


# --- keys ----------------------------------------------------------------------

SECRET_KEYS = {
    "password": ["password", "db.password", "DB_PASSWORD", "user.Password.hash"],
    "passwd": ["passwd", "ftp.passwd"],
    "pwd": ["pwd", "mysql_pwd"],
    "secret": ["secret", "client_secret", "AWS.SecretAccessKey"],
    "token": ["token", "access_token", "X-Auth-Token"],
    r"api[-_ ]?key": ["apikey", "api_key", "X-Api-Key", "API KEY"],
    r"private[-_ ]?key": ["private_key", "privatekey", "ssh.Private-Key"],
    "authorization": ["authorization", "http.request.header.authorization"],
    "auth": ["auth", "basic_auth", "OAuth"],
    "credential": ["credential", "aws.credentials"],
    "cookie": ["cookie", "http.response.header.set-cookie"],
    "session": ["session", "session_id", "JSESSIONID"],
}


def test_every_default_pattern_has_key_cases():
    assert set(SECRET_KEYS) == set(DEFAULT_KEY_PATTERNS)


@pytest.mark.parametrize("key", [key for keys in SECRET_KEYS.values() for key in keys])
@pytest.mark.parametrize("value", ["hunter2-value", b"raw-bytes", 123456, 3.14, True, ["a", "b"], ("x",)])
def test_values_under_secret_keys_are_redacted_whole(key, value):
    scrubber = Scrubber()
    assert scrubber.is_secret_key(key)
    assert scrubber.scrub_key_value(key, value) == MARKER
    assert scrubber.scrub_attributes({key: value, "rqa.stock": "600519.SH"}) == {key: MARKER, "rqa.stock": "600519.SH"}


@pytest.mark.parametrize(
    "key",
    [names.STRATEGY, names.STOCK, names.SIGNAL, names.TRADE_PRICE, names.ALERT_MESSAGE, "exception.stacktrace",
     "code.function", "service.name", "rqa.strategy.param.window"],
)
def test_project_keys_are_not_secret_keys(key):
    assert not Scrubber().is_secret_key(key)


def test_none_under_a_secret_key_stays_none():
    assert Scrubber().scrub_key_value("password", None) is None


def test_allowlisted_keys_are_never_redacted():
    scrubber = Scrubber(allowlist=["token_count", "session_id_hash"])
    attributes = {"token_count": 1742, "session_id_hash": "9f86d081", "rqa.stock": "600519.SH"}
    assert scrubber.scrub_attributes(attributes) is attributes
    # only the exact keys: others matching the same patterns still go
    assert scrubber.scrub_attributes({"token": "t-123", "session_id": "s-1"}) == {"token": MARKER, "session_id": MARKER}
    # the allowlist also applies to inline key=value text
    assert scrubber.scrub_text("used token_count=1742 token=abc123") == "used token_count=1742 token=[REDACTED]"


def test_extra_patterns_are_added_to_the_defaults():
    plain = Scrubber()
    extra = Scrubber(extra_patterns=[r"pin(code)?", "otp"])
    for key in ("card.pincode", "PIN", "sms_otp"):
        assert not plain.is_secret_key(key)
        assert extra.is_secret_key(key)
        assert extra.scrub_key_value(key, "4711") == MARKER
    assert extra.is_secret_key("db.password")  # defaults still apply
    assert plain.scrub_text("confirm with otp=482913 now") == "confirm with otp=482913 now"
    assert extra.scrub_text("confirm with OTP=482913 now") == "confirm with OTP=[REDACTED] now"


def test_invalid_extra_pattern_is_rejected():
    with pytest.raises(ValueError, match="invalid secret key pattern"):
        Scrubber(extra_patterns=["pin("])


def test_redact_values_false_only_redacts_by_key():
    scrubber = Scrubber(redact_values=False)
    attributes = {"note": "login password=hunter2", "rqa.stock": "600519.SH"}
    assert scrubber.scrub_attributes(attributes) is attributes
    assert scrubber.scrub_attributes({"password": "x1234"}) == {"password": MARKER}


def test_key_decision_cache_is_bounded():
    scrubber = Scrubber()
    for i in range(10_000):
        scrubber.is_secret_key(f"k{i}")
    assert len(scrubber._key_cache) <= 4096
    assert scrubber.is_secret_key("password") and not scrubber.is_secret_key("k1")


def test_key_decisions_equal_the_case_insensitive_search_of_the_patterns():
    """An ASCII key is decided on its lower-case form; every key gets the
    decision the case-insensitive search of the patterns gives."""
    from rqa_otel.scrub import DEFAULT_KEY_PATTERNS

    search = re.compile("|".join(f"(?:{p})" for p in DEFAULT_KEY_PATTERNS), re.IGNORECASE).search
    rng = random.Random(3)
    words = ["password", "passwd", "pwd", "secret", "token", "api-key", "api_key", "api key", "apikey", "private_key",
             "privatekey", "authorization", "auth", "credential", "cookie", "session", "author", "pass", "tok", "api-",
             "rqa.strategy", "rqa.portfolio.holdings", "run.id", "x", "\u017fecret", "pa\u00dfword", "\u212aey", "t\u00f6ken"]
    keys = ["k\u212aey", "api_\u212aey", "pa\u00dfword", "\u017fecret", "SECRET", "X-Api-Key", "Db.PassWord"]
    for _ in range(5000):
        key = "".join(rng.choice(words) + rng.choice(["", ".", "_", "-", " "]) for _ in range(rng.randrange(1, 4)))
        keys.append("".join(c.upper() if rng.random() < 0.3 else c for c in key))
    fresh = Scrubber()
    for key in keys:
        assert fresh.is_secret_key(key) == (search(key) is not None), key
    assert Scrubber().is_secret_key("\u017fecret") and not Scrubber().is_secret_key("pa\u00dfword")  # as re has them
    assert Scrubber().is_secret_key("api_\u212aey")  # the Kelvin sign is a K for re's IGNORECASE


# --- registered secret values ----------------------------------------------


def test_registered_secret_is_redacted_in_text_and_under_innocent_keys():
    scrubber = Scrubber()
    for secret in SECRETS:
        scrubber.register_secret(secret)
    assert scrubber.secrets_registered() == len(SECRETS)
    text = f"connecting with {SECRETS[0]} to broker, fallback{SECRETS[1]}!"
    assert scrubber.scrub_text(text) == "connecting with [REDACTED] to broker, fallback[REDACTED]!"
    attributes = {
        "db.statement": f"SELECT 1 -- {SECRETS[2]}",
        "argv": ["trade", "--key", SECRETS[3]],
        "nested": {"dsn": f"host=db user=bob {SECRETS[0]}"},
        "rqa.stock": "600519.SH",
    }
    scrubbed = scrubber.scrub_attributes(attributes)
    assert scrubbed == {
        "db.statement": "SELECT 1 -- [REDACTED]",
        "argv": ["trade", "--key", MARKER],
        "nested": {"dsn": "host=db user=bob [REDACTED]"},
        "rqa.stock": "600519.SH",
    }
    for secret in SECRETS:
        assert_no_part_of(secret, repr(scrubbed))
    assert attributes["argv"][2] == SECRETS[3]  # the input is not modified


def test_registered_secrets_longest_first_and_case_sensitive():
    scrubber = Scrubber()
    scrubber.register_secret("Tr4d3r")
    scrubber.register_secret("Tr4d3r-Extended-2026")
    assert scrubber.scrub_text("k=Tr4d3r-Extended-2026;") == "k=[REDACTED];"
    assert scrubber.scrub_text("a Tr4d3r b") == "a [REDACTED] b"
    assert scrubber.scrub_text("a TR4D3R b") == "a TR4D3R b"


def test_short_values_are_not_registered():
    scrubber = Scrubber()
    for value in ("", "1", "ab", "yes"):
        assert len(value) < MIN_SECRET_LENGTH
        scrubber.register_secret(value)
    assert scrubber.secrets_registered() == 0
    assert scrubber.scrub_text("yes 1 ab") == "yes 1 ab"
    scrubber.register_secret("abcd")
    scrubber.register_secret("abcd")  # twice counts once
    assert scrubber.secrets_registered() == 1


def test_secret_values_with_regex_metacharacters():
    scrubber = Scrubber()
    scrubber.register_secret("a.b*c+(d)[e]\\f")
    assert scrubber.scrub_text("x a.b*c+(d)[e]\\f y aXbbbc") == "x [REDACTED] y aXbbbc"


def test_register_while_scrubbing_in_other_threads():
    scrubber = Scrubber()
    errors: list[BaseException] = []
    stop = threading.Event()

    def scrub_loop() -> None:
        try:
            while not stop.is_set():
                scrubber.scrub_text("order filled password=abc for 600519.SH")
                scrubber.scrub_attributes({"note": "clean", "token": "t"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scrub_loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    registrars = [
        threading.Thread(target=lambda n=n: [scrubber.register_secret(f"secret-{n}-{i:04d}") for i in range(10)])
        for n in range(4)
    ]
    for thread in registrars:
        thread.start()
    for thread in registrars:
        thread.join()
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    assert scrubber.secrets_registered() == 40
    assert scrubber.scrub_text("use secret-3-0009 and secret-0-0000") == "use [REDACTED] and [REDACTED]"


# --- inline secrets in free text -----------------------------------------------

INLINE = [
    ("login password=hunter2 ok", "login password=[REDACTED] ok"),
    ("login PASSWORD = hunter2 ok", "login PASSWORD = [REDACTED] ok"),
    ("db.password: hunter2, retry", "db.password: [REDACTED], retry"),
    # an unquoted value runs to whitespace: "&" may be part of a password
    ("GET /q?user=bob&api_key=k-77a1&x=1 HTTP/1.1", "GET /q?user=bob&api_key=[REDACTED] HTTP/1.1"),
    ("password=p&ss,w;rd! next", "password=[REDACTED] next"),
    ("(token=abc123), {'pwd': abc}", "(token=[REDACTED]), {'pwd': [REDACTED]}"),
    ('{"user": "bob", "password": "hun\\"ter2", "n": 1}', '{"user": "bob", "password": "[REDACTED]", "n": 1}'),
    ("{'client_secret': 'abc def', 'id': 7}", "{'client_secret': '[REDACTED]', 'id': 7}"),
    ('body={\\"token\\": \\"t0k3n-v4lue\\"}', 'body={\\"token\\": \\"[REDACTED]\\"}'),
    ('truncated password="hunter2', 'truncated password="[REDACTED]'),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "Authorization: [REDACTED]"),
    ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='", "curl -H 'Authorization: [REDACTED]'"),
    ("sent Bearer eyJhbGciOiJIUzI1NiJ9.x.y upstream", "sent Bearer [REDACTED] upstream"),
    ("header basic dXNlcjpwYXNzd29yZA== end", "header basic [REDACTED] end"),
    ("dsn postgres://quant:Pg-s3cret@db:5432/rqa", "dsn postgres://quant:[REDACTED]@db:5432/rqa"),
    (
        "key -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nq9Zx==\n-----END RSA PRIVATE KEY----- loaded",
        "key -----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY----- loaded",
    ),
    (
        "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----\\n",
        "-----BEGIN PRIVATE KEY-----[REDACTED]-----END PRIVATE KEY-----\\n",
    ),
    ("cut -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk", "cut -----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]"),
    ("two password=a1 token=b2", "two password=[REDACTED] token=[REDACTED]"),
    # AWS access key ids, whole, wherever they stand
    ("key AKIAIOSFODNN7EXAMPLE loaded", "key [REDACTED] loaded"),
    ("creds=(ASIAY34FZKBOKMUTVV7A,x)", "creds=([REDACTED],x)"),
    # a strong key word and a credential-like value, no separator
    ("use secret s3cr3tVALUE now", "use secret [REDACTED] now"),
    ("login password Tr4d3r! failed", "login password [REDACTED] failed"),
    ("db_password Hunter2x9, retry", "db_password [REDACTED], retry"),
    ("api key Xy7-abc12", "api key [REDACTED]"),
]


@pytest.mark.parametrize("text, expected", INLINE)
def test_inline_secrets_keep_the_key_and_lose_the_value(text, expected):
    assert Scrubber().scrub_text(text) == expected


@pytest.mark.parametrize("text, expected", INLINE)
def test_inline_secrets_when_casefolding_changes_length(text, expected):
    # "ß" casefolds to "ss": the scrubber then scans the text itself with the
    # case-insensitive regex instead of the folded copy; same result.
    assert Scrubber().scrub_text("Straße " + text) == "Straße " + expected


@pytest.mark.parametrize(
    "text",
    [
        "order filled for 600519.SH at 1712.50 qty 100",
        "price=1712.50 qty=100 side=BUY venue: SSE time 09:30:01",
        "贵州茅台 买入信号 成交 600519.SH 价格 1712.50",
        "Basic strategy works; Bearer tokens expire",
        "password reset requested",  # a key word without a value
        "secret sauce, Secret Santa, token count 5, token budget 4096",  # words, not credentials
        "session 2024-06-01 opened",  # a trading session
        "AKIA is a prefix; AKIAIOSFODNN7EXAMPLE1 is too long",
        "see https://example.com:8443/path",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
    ],
)
def test_clean_text_is_returned_as_the_same_object(text):
    assert Scrubber().scrub_text(text) is text


def test_scrubbing_is_idempotent():
    scrubber = Scrubber()
    for text, expected in INLINE:
        assert scrubber.scrub_text(expected) == expected


def test_fast_detection_never_misses_what_the_full_scan_redacts():
    # scrub_text only runs the (slow, case-insensitive) redaction regex where
    # a fast search of the casefolded text finds a candidate. Generated texts
    # made of the grammar's pieces must come out exactly as from a full scan.
    pieces = [
        "password", "PassWd", "db.pwd", "TOKEN", "X-Api-Key", "private key", "OAuth", "Session", "pin", "=", ":",
        " = ", ": ", '"', "'", "\\\"", "\\", " ", "\t", "\n", ",", "&", ";", "}", "]", ")", "{", MARKER, "Bearer ",
        "basic ", "dXNlcjpwYXNz", "eyJ0.Ab9", "abc", "Tr4d3r", "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----", "://", "u", "@", "/", "x", "贵州", "Σ", "9",
    ]
    scrubber = Scrubber(extra_patterns=["pin"], allowlist=["token_count"])
    scrubber.register_secret("Tr4d3r")
    exact_sub = scrubber._state[1]
    full_scan_sub = re.compile(scrubber._structural_source).sub  # the structural rules, over the whole text
    rng = random.Random(20261124)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        full_scan = full_scan_sub(scrubber._replace_value, exact_sub(MARKER, text))
        assert scrubber.scrub_text(text) == full_scan, text


def test_one_search_over_many_texts_flags_every_text_that_would_change():
    """all_clean() (the log worker's per-batch shortcut) is never True when
    scrub_text() would change one of the texts."""
    pieces = [
        "password", "db.pwd", "TOKEN", "X-Api-Key", "=", ":", " = ", '"', "\\", " ", "\t", "\n", ",", "&",
        "Bearer ", "basic ", "dXNlcjpwYXNz", "Tr4d3r", "-----BEGIN RSA PRIVATE KEY-----", "://", "u", "@", "/",
        "x", "贵州", "buy 100 600519.SH @ 1688.5",
    ]
    scrubber = Scrubber()
    scrubber.register_secret("Tr4d3r")
    rng = random.Random(4)
    changed = 0
    for _ in range(5_000):
        texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 5))]
        if any(scrubber.scrub_text(text) is not text for text in texts):
            changed += 1
            assert not scrubber.all_clean(texts), texts
    assert changed > 500
    assert scrubber.all_clean(["buy 100 600519.SH @ 1688.5", "sell 200 000001.SZ @ 10.5"])
    assert not Scrubber(extra_patterns=["^pin"]).all_clean(["clean"]), "anchored extra patterns: no shortcut"


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize(
    "template",
    [
        "password={}",
        "password: {} and more",
        '{{"api_key": "{}"}}',
        "Authorization: Bearer {}",
        "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----",
        "redis://:{}@cache:6379",
    ],
)
def test_marker_reveals_no_part_of_the_secret(secret, template):
    text = template.format(secret)
    scrubbed = Scrubber().scrub_text(text)
    assert MARKER in scrubbed
    assert_no_part_of(secret, scrubbed)
    assert_no_part_of(secret, MARKER)
    # no length hint either: a longer secret gives the same output
    assert Scrubber().scrub_text(template.format(secret * 3)) == scrubbed


def test_registered_secret_marker_reveals_no_part_of_it():
    scrubber = Scrubber()
    for secret in SECRETS:
        scrubber.register_secret(secret)
    for secret in SECRETS:
        scrubbed = scrubber.scrub_text(f"a{secret}b {secret}")
        assert scrubbed == "a[REDACTED]b [REDACTED]"
        assert_no_part_of(secret, scrubbed)


# --- identity on the fast path ----------------------------------------------------


def test_scrub_attributes_returns_the_same_object_when_clean():
    scrubber = Scrubber()
    scrubber.register_secret("Xk9$vQ2!mPzR")
    attributes = {
        names.STRATEGY: "dual_ma_demo",
        names.STOCK: "600519.SH",
        names.SIGNAL: "BUY",
        names.TRADE_PRICE: 1712.5,
        "tags": ["a", "b"],
        "raw": b"\x00\x01",
        "nothing": None,
    }
    assert scrubber.scrub_attributes(attributes) is attributes
    assert scrubber.scrub_key_value("tags", attributes["tags"]) is attributes["tags"]
    # already scrubbed attributes stay the same object too
    done = {"password": MARKER, "note": "password=[REDACTED]"}
    assert scrubber.scrub_attributes(done) is done


def test_registering_a_secret_invalidates_cached_values():
    scrubber = Scrubber()
    attributes = {"order.ref": "Q7-Tr4d3r"}
    assert scrubber.scrub_attributes(attributes) is attributes  # cached as clean
    scrubber.register_secret("Tr4d3r")
    assert scrubber.scrub_attributes(attributes) == {"order.ref": "Q7-[REDACTED]"}


def test_scrub_attributes_copies_only_when_something_changed():
    attributes = {"a": "1", "password": "p4ss", "b": "2"}
    scrubbed = Scrubber().scrub_attributes(attributes)
    assert scrubbed is not attributes
    assert list(scrubbed) == ["a", "password", "b"]  # order kept
    assert attributes["password"] == "p4ss"


# --- spans through the real SDK -----------------------------------------------------


class Recorder(SpanExporter):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def export(self, spans):
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.calls.append(f"force_flush {timeout_millis}")
        return True


@pytest.fixture
def pipeline():
    scrubber = Scrubber()
    scrubber.register_secret("Xk9$vQ2!mPzR")
    raw = InMemorySpanExporter()
    scrubbed = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({names.SERVICE_NAME: "rqa-test"}),
        span_limits=SpanLimits(max_span_attributes=6, max_events=2, max_event_attributes=3),
    )
    provider.add_span_processor(SimpleSpanProcessor(raw))
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(scrubbed, scrubber)))
    yield provider.get_tracer("test-scope", "1.2.3"), raw, scrubbed
    provider.shutdown()


def pairs(raw: InMemorySpanExporter, scrubbed: InMemorySpanExporter):
    before, after = raw.get_finished_spans(), scrubbed.get_finished_spans()
    assert len(before) == len(after)
    return list(zip(before, after))


def test_span_and_event_attributes_are_scrubbed_the_rest_intact(pipeline):
    tracer, raw, scrubbed = pipeline
    with tracer.start_as_current_span("rqa.backtest", kind=SpanKind.INTERNAL) as parent:
        linked = parent.get_span_context()
        with tracer.start_as_current_span(
            names.ALERT_SPAN, kind=SpanKind.CLIENT, links=[Link(linked, {"token": "lnk-t0k3n"})]
        ) as span:
            span.set_attributes(
                {
                    names.STOCK: "600519.SH",
                    "db.password": "Pg-s3cret",
                    "http.request.header.authorization": ["Bearer eyJhbGciOiJIUzI1NiJ9.x.y"],
                    "db.statement": "CONNECT user=bob password=hunter2",
                    "note": "vault value Xk9$vQ2!mPzR used",
                    names.TRADE_QUANTITY: 100,
                    "overflow.one": 1,  # over max_span_attributes: the oldest is dropped
                }
            )
            span.add_event("rqa.debug", {"x": 1})
            span.add_event("login password=hunter2", {"api_key": "k-123", names.SIGNAL: "BUY", "msg": "Xk9$vQ2!mPzR"})
            span.add_event(names.TRADE_EVENT, {names.TRADE_SIDE: "BUY", "session": "s-99", "a": 1, "b": 2})
    (raw_span, clean_span), (raw_parent, parent_out) = pairs(raw, scrubbed)

    assert parent_out is raw_parent  # nothing to scrub: the same object
    assert clean_span is not raw_span
    assert clean_span.name == raw_span.name == names.ALERT_SPAN
    assert dict(clean_span.attributes) == {
        "db.password": MARKER,
        "http.request.header.authorization": MARKER,
        "db.statement": "CONNECT user=bob password=[REDACTED]",
        "note": "vault value [REDACTED] used",
        names.TRADE_QUANTITY: 100,
        "overflow.one": 1,
    }
    assert names.STOCK not in raw_span.attributes  # it was the one dropped
    assert clean_span.dropped_attributes == raw_span.dropped_attributes == 1

    assert [e.name for e in clean_span.events] == ["login password=[REDACTED]", names.TRADE_EVENT]
    assert dict(clean_span.events[0].attributes) == {"api_key": MARKER, names.SIGNAL: "BUY", "msg": MARKER}
    assert dict(clean_span.events[1].attributes) == {"session": MARKER, "a": 1, "b": 2}
    assert clean_span.events[1].dropped_attributes == raw_span.events[1].dropped_attributes == 1
    assert clean_span.dropped_events == raw_span.dropped_events == 1
    assert [e.timestamp for e in clean_span.events] == [e.timestamp for e in raw_span.events]
    assert dict(clean_span.links[0].attributes) == {"token": MARKER}
    assert clean_span.links[0].context == raw_span.links[0].context

    for field in ("context", "parent", "kind", "start_time", "end_time", "resource", "instrumentation_scope"):
        assert getattr(clean_span, field) == getattr(raw_span, field), field
    assert clean_span.context.trace_id == raw_span.context.trace_id
    assert clean_span.context.span_id == raw_span.context.span_id
    assert clean_span.parent.span_id == raw_parent.context.span_id
    assert clean_span.status.status_code == raw_span.status.status_code
    assert clean_span.instrumentation_scope.name == "test-scope"

    text = clean_span.to_json() + repr(encode_spans([clean_span]))  # the OTLP encoder accepts the copy
    for leaked in ("Pg-s3cret", "hunter2", "eyJhbGci", "Xk9$vQ2!mPzR", "k-123", "s-99", "lnk-t0k3n"):
        assert leaked not in text
    assert "Pg-s3cret" in raw_span.to_json()  # the span itself is untouched


def test_exception_events_and_status_are_scrubbed(pipeline):
    tracer, raw, scrubbed = pipeline
    with pytest.raises(ValueError):
        with tracer.start_as_current_span("rqa.order"):
            raise ValueError("broker rejected login password=hunter2")
    ((raw_span, clean_span),) = pairs(raw, scrubbed)
    assert "hunter2" in raw_span.status.description
    assert clean_span.status.status_code == StatusCode.ERROR
    assert clean_span.status.description == "ValueError: broker rejected login password=[REDACTED]"
    (event,) = clean_span.events
    assert event.name == "exception"
    assert event.attributes["exception.message"] == "broker rejected login password=[REDACTED]"
    assert "password=[REDACTED]" in event.attributes["exception.stacktrace"]
    assert "hunter2" not in clean_span.to_json()


def test_clean_spans_pass_through_unchanged(pipeline):
    tracer, raw, scrubbed = pipeline
    for i in range(3):
        with tracer.start_as_current_span("rqa.tick") as span:
            span.set_attribute(names.STOCK, "600519.SH")
            span.add_event(names.TRADE_EVENT, {names.TRADE_PRICE: 1712.5 + i})
    for before, after in pairs(raw, scrubbed):
        assert after is before


def test_an_event_only_renamed_keeps_its_attributes_and_dropped_count(pipeline):
    tracer, raw, scrubbed = pipeline
    with tracer.start_as_current_span("rqa.order") as span:
        span.add_event("login password=hunter2", {"a": 1, "b": 2, "c": 3, "d": 4})  # one over max_event_attributes
    ((raw_span, clean_span),) = pairs(raw, scrubbed)
    (event,) = clean_span.events
    assert event.name == "login password=[REDACTED]"
    assert dict(event.attributes) == {"b": 2, "c": 3, "d": 4}
    assert event.dropped_attributes == raw_span.events[0].dropped_attributes == 1


def test_shutdown_and_force_flush_delegate():
    inner = Recorder()
    exporter = ScrubbingSpanExporter(inner, Scrubber())
    assert exporter.force_flush(1234) is True
    exporter.shutdown()
    assert inner.calls == ["force_flush 1234", "shutdown"]
    assert exporter.export([]) == SpanExportResult.SUCCESS
