"""Real telemetry back-ends for tests, started on free 127.0.0.1 ports.

Each back-end is a small class with ``start()`` / ``stop()`` and context
manager support::

    with InfluxDB1() as influx:
        influx.create_database("db")
        ...

Common behaviour (see :class:`Backend`):

* every listening port is a free loopback port (bind port 0, read it, close);
* all state (config, data, the process log) lives in a fresh temp dir, removed
  on ``stop()`` unless ``keep_dir=True`` or ``RQA_KEEP_BACKEND_DIRS=1``;
* stdout+stderr of the process go to ``<tmp dir>/process.log``;
* ``start()`` waits until the back-end answers its health check; on timeout
  or early exit it raises :class:`BackendStartError` that includes the tail of
  the process log (an early exit caused by a port clash is retried with fresh
  ports);
* ``stop()`` sends SIGTERM, then SIGKILL after ``term_timeout`` seconds, to
  the back-end's own process group; it is idempotent;
* leaks are prevented three ways: the pytest fixtures register finalizers,
  an ``atexit`` hook stops anything still running, and on Linux each child
  gets ``PR_SET_PDEATHSIG=SIGTERM`` so it dies even if the Python process is
  SIGKILLed.  (Consequence: start back-ends from the main thread, or from a
  thread that outlives them - the signal fires when the *starting thread*
  exits.)

Missing binaries raise :class:`BackendNotFound` (``find_binary()`` returns
None); ``tests/conftest.py`` turns that into ``pytest.skip`` or, with
``CI=true``, ``pytest.fail``.

This module must not import ``rqa_otel``: it tests the environment, not the
package.  Only the standard library is used.
"""

from __future__ import annotations

import atexit
import ctypes
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

__all__ = [
    "Backend",
    "BackendNotFound",
    "BackendStartError",
    "InfluxDB1",
    "InfluxQueryError",
    "Prometheus",
    "Rotel",
    "VictoriaMetrics",
    "free_port",
    "http_request",
    "parse_rotel_debug_output",
    "promtool_check_metrics",
]


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------

LOOPBACK = "127.0.0.1"

_ports_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is currently free on ``host``.

    Binds port 0, reads the port and closes the socket.  Ports already
    returned by this function in this process are never returned again, so
    two back-ends started in a row cannot be given the same port.  (Another
    process may still grab the port before the back-end binds it; back-ends
    retry startup with new ports when they die of "address already in use".)
    """
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("could not find a free port")


# urllib with proxies disabled: the back-ends are on loopback and an
# http_proxy variable in the environment must not reroute our requests.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(
    method: str,
    url: str,
    data: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """Plain HTTP request; returns ``(status, body)`` (HTTP errors included)."""
    if isinstance(data, str):
        data = data.encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# PR_SET_PDEATHSIG: the child gets SIGTERM when the thread that started it
# dies, so back-ends do not outlive a SIGKILLed test run.  libc is loaded
# *before* any fork so the pre-exec hook only makes one foreign call.
_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    _prctl = _libc.prctl if _libc is not None else None
except (OSError, AttributeError):  # pragma: no cover - exotic platforms
    _prctl = None


def _make_preexec() -> Callable[[], None] | None:
    if _prctl is None:
        return None
    parent = os.getpid()

    def _preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # parent already gone: don't start at all
            os._exit(1)

    return _preexec


_live: "weakref.WeakSet[Backend]" = weakref.WeakSet()


@atexit.register
def _stop_all_backends() -> None:
    for backend in list(_live):
        try:
            backend.stop()
        except Exception:  # pragma: no cover - best effort at exit
            pass


# --------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------


class BackendNotFound(RuntimeError):
    """The back-end's binary is not installed."""

    def __init__(self, backend: str, binary: str, install_hint: str):
        self.backend = backend
        self.binary = binary
        self.install_hint = install_hint
        super().__init__(f"{backend}: binary {binary!r} not found ({install_hint})")


class BackendStartError(RuntimeError):
    """The back-end did not become ready (message includes its log tail)."""


class Backend:
    """Common process handling; subclasses fill in the hooks below."""

    #: human-readable name, also used in temp dir names
    name = "backend"
    #: main binary name (for messages)
    binary = ""
    #: how to install the binary (Debian package / PyPI package)
    install_hint = ""
    #: seconds to wait for readiness
    ready_timeout = 30.0
    #: seconds between SIGTERM and SIGKILL
    term_timeout = 10.0
    #: attempts when the process dies early because its port was taken
    start_attempts = 3

    def __init__(
        self,
        *,
        ready_timeout: float | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        keep_dir: bool | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if ready_timeout is not None:
            self.ready_timeout = ready_timeout
        self.base_dir = base_dir
        if keep_dir is None:
            keep_dir = os.environ.get("RQA_KEEP_BACKEND_DIRS", "") not in ("", "0", "false")
        self.keep_dir = keep_dir
        self.extra_args = list(extra_args)
        self.dir: Path | None = None
        self.log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        #: seconds from spawn to ready, of the successful attempt
        self.startup_seconds: float | None = None
        self._argv: list[str] = []

    # -- hooks ------------------------------------------------------------

    @classmethod
    def find_binary(cls) -> str | None:
        """Absolute path of the binary, or None when it is not installed."""
        return shutil.which(cls.binary)

    def _prepare(self, binary: str) -> list[str]:
        """Pick ports, write config files into ``self.dir``; return argv."""
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _is_ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------

    @classmethod
    def require_binary(cls) -> str:
        path = cls.find_binary()
        if path is None:
            raise BackendNotFound(cls.name, cls.binary, cls.install_hint)
        return path

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "Backend":
        if self.process is not None:
            raise RuntimeError(f"{self.name} already started")
        binary = self.require_binary()
        self.dir = Path(tempfile.mkdtemp(prefix=f"rqa-{self.name.lower()}-", dir=self.base_dir))
        self.log_path = self.dir / "process.log"
        try:
            for attempt in range(1, self.start_attempts + 1):
                if self._start_once(binary, attempt):
                    return self
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException:
            self.stop()
            raise

    def _start_once(self, binary: str, attempt: int) -> bool:
        self._argv = self._prepare(binary) + self.extra_args
        return self._spawn_and_wait(attempt, retry_on_port_clash=attempt < self.start_attempts)

    def restart(self) -> "Backend":
        """Stop the process and start it again with the same ports, config
        and data (e.g. to test reconnects).  The temp dir is kept."""
        if self.dir is None or not getattr(self, "_argv", None):
            raise RuntimeError(f"{self.name} was never started")
        self._kill()
        _live.add(self)
        self._spawn_and_wait("restart", retry_on_port_clash=False)
        return self

    def _spawn_and_wait(self, attempt: int | str, retry_on_port_clash: bool) -> bool:
        argv = self._argv
        assert self.log_path is not None and self.dir is not None
        with open(self.log_path, "ab") as log:
            log.write(f"### attempt {attempt}: {' '.join(argv)}\n".encode())
            log.flush()
            attempt_offset = log.tell()
            t0 = time.monotonic()
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=self._env(),
                start_new_session=True,
                preexec_fn=_make_preexec(),
            )
        _live.add(self)
        deadline = t0 + self.ready_timeout
        while True:
            if self.process.poll() is not None:
                tail = self.log_tail()
                self._kill()
                this_attempt = self.log_text().encode()[attempt_offset:].decode(errors="replace")
                if retry_on_port_clash and re.search(
                    r"address already in use|bind: address|unable to bind", this_attempt, re.I
                ):
                    return False
                raise BackendStartError(
                    f"{self.name} exited with code {self.process.returncode} before it was "
                    f"ready; log {self.log_path}:\n{tail}"
                )
            try:
                ready = self._is_ready()
            except (OSError, http.client.HTTPException):
                ready = False
            if ready:
                self.startup_seconds = time.monotonic() - t0
                return True
            if time.monotonic() > deadline:
                raise BackendStartError(
                    f"{self.name} not ready after {self.ready_timeout:.0f}s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _kill(self) -> None:
        """SIGTERM the process group, SIGKILL after ``term_timeout``."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                os.killpg(proc.pid, signal.SIGCONT)  # in case a test SIGSTOPped it
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=self.term_timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the process (idempotent) and remove the temp dir."""
        try:
            self._kill()
        finally:
            _live.discard(self)
            if self.dir is not None and not self.keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- logs ---------------------------------------------------------------

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes().decode("utf-8", errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {state} dir={self.dir}>"


def _poll(
    fn: Callable[[], Any],
    timeout: float,
    describe: Callable[[], str],
    interval: float = 0.05,
) -> Any:
    """Call ``fn`` until it returns a truthy value; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {describe()}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Rotel (OTLP receiver, data printed by its debug log)
# --------------------------------------------------------------------------


class Rotel(Backend):
    """Rotel agent receiving OTLP on gRPC and HTTP, printing what it gets.

    Runs ``rotel-agent start --exporter blackhole --debug-log {traces,metrics,
    logs} --debug-log-verbosity detailed``, so everything received is printed
    to stdout (our log file) and then discarded.

    * ``grpc_endpoint`` / ``http_endpoint``: ``http://127.0.0.1:PORT``
      (OTLP/HTTP paths are the defaults ``/v1/traces``, ``/v1/metrics``,
      ``/v1/logs``);
    * ``output()``: debug text received so far (ANSI colours stripped);
    * ``wait_for(text_or_predicate)``;
    * ``spans()``, ``metrics()``, ``logs()``: parsed items, see
      :func:`parse_rotel_debug_output`; ``wait_for_span(name)``,
      ``wait_for_metric(name)``, ``wait_for_log(body)``;
    * ``clear()``: forget output received so far (handy when one instance is
      shared by several tests).

    Items are printed once the agent's batch is flushed (``--batch-timeout``,
    200ms by default), so expect up to ~0.3s latency after the SDK export.
    """

    name = "Rotel"
    binary = "rotel-agent"
    install_hint = "PyPI package 'rotel' (ships <site-packages>/rotel/rotel-agent)"
    ready_timeout = 20.0

    def __init__(
        self,
        *,
        debug_log: Iterable[str] = ("traces", "metrics", "logs"),
        verbosity: str = "detailed",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.debug_log = list(debug_log)
        self.verbosity = verbosity
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._offset = 0

    @classmethod
    def find_binary(cls) -> str | None:
        try:
            spec = importlib.util.find_spec("rotel")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                candidate = Path(location) / "rotel-agent"
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    return str(candidate)
        return shutil.which("rotel-agent")

    def _prepare(self, binary: str) -> list[str]:
        assert self.dir is not None
        self.grpc_port = free_port()
        self.http_port = free_port()
        argv = [
            binary,
            "start",
            "--otlp-grpc-endpoint", f"{LOOPBACK}:{self.grpc_port}",
            "--otlp-http-endpoint", f"{LOOPBACK}:{self.http_port}",
            "--exporter", "blackhole",
            # only used with --daemon, but keep them off the shared /tmp paths
            "--pid-file", str(self.dir / "rotel-agent.pid"),
            "--log-file", str(self.dir / "rotel-agent.log"),
        ]
        for kind in self.debug_log:
            argv += ["--debug-log", kind]
        argv += ["--debug-log-verbosity", self.verbosity]
        return argv

    def _env(self) -> dict[str, str]:
        # ROTEL_* variables would override our flags; NO_COLOR drops ANSI
        # codes from the agent's own log lines.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
        env["NO_COLOR"] = "1"
        return env

    def _is_ready(self) -> bool:
        return _tcp_open(LOOPBACK, self.grpc_port) and _tcp_open(LOOPBACK, self.http_port)

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    # -- received data ------------------------------------------------------

    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def output(self) -> str:
        """Debug-log text received so far (since the last ``clear()``)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        return self._ANSI.sub("", data.decode("utf-8", errors="replace"))

    def clear(self) -> None:
        """Ignore everything received so far in ``output()``/``spans()``/..."""
        if self.log_path is not None and self.log_path.exists():
            self._offset = self.log_path.stat().st_size

    def _tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for(
        self, text_or_predicate: str | Callable[[str], Any], timeout: float = 10.0
    ) -> str:
        """Wait until ``text`` is in ``output()`` (or ``predicate(output())``
        is truthy); return the output.  AssertionError with the output tail
        on timeout."""
        if callable(text_or_predicate):
            pred = text_or_predicate
            what = getattr(pred, "__name__", "predicate")
        else:
            text = text_or_predicate
            pred = lambda out: text in out  # noqa: E731
            what = repr(text)

        def check() -> str | None:
            out = self.output()
            return out if pred(out) else None

        def describe() -> str:
            return (
                f"{what} not seen in rotel output "
                f"(process {'running' if self.running else 'NOT running'}); "
                f"last lines:\n{self._tail()}"
            )

        return _poll(check, timeout, describe)

    def log_records_received(self) -> int:
        """Log records received so far, from the ``logs=N`` of each "Received
        logs" line that ``verbosity="basic"`` prints (cheap at any rate)."""
        return sum(int(n) for n in re.findall(r"Received logs\..*?\blogs=(\d+)", self.output()))

    def received(self) -> dict[str, list[dict[str, Any]]]:
        return parse_rotel_debug_output(self.output())

    def spans(self, name: str | None = None) -> list[dict[str, Any]]:
        return [s for s in self.received()["spans"] if name is None or s["name"] == name]

    def metrics(self, name: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.received()["metrics"] if name is None or m["name"] == name]

    def logs(self, body: Any = None) -> list[dict[str, Any]]:
        return [r for r in self.received()["logs"] if body is None or r["body"] == body]

    def _wait_items(self, getter: Callable[[], list], what: str, timeout: float) -> list:
        return _poll(getter, timeout, lambda: f"{what} not received; rotel output tail:\n{self._tail()}")

    def wait_for_span(self, name: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self._wait_items(lambda: self.spans(name), f"span {name!r}", timeout)

    def wait_for_metric(self, name: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self._wait_items(lambda: self.metrics(name), f"metric {name!r}", timeout)

    def wait_for_log(self, body: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self._wait_items(lambda: self.logs(body), f"log with body {body!r}", timeout)


# --------------------------------------------------------------------------
# Rotel detailed debug-log parser
# --------------------------------------------------------------------------
#
# Format of `rotel-agent --debug-log-verbosity detailed` (rotel 0.0.1a15,
# binary reports 0.0.1-alpha10).  It mirrors the OpenTelemetry Collector
# debug exporter.  Every received Resource{Spans,Metrics,Log} is printed with
# a single write() to stdout, so blocks never interleave.  Nothing is
# escaped: values are printed raw, a string with a newline continues on the
# next line.  Timestamps are unix nanoseconds.  Agent log lines
# ("2026-...Z  INFO Starting Rotel. ...") are mixed in on the same stream.
#
#   ResourceSpans #0                       | ResourceMetrics #0   | ResourceLog #0
#   Resource SchemaURL: <url>
#   Resource attributes:
#        -> service.name: Str(svc)         (5 spaces, "-> key: Value")
#   ScopeSpans #0                          | ScopeMetrics #0      | ScopeLogs #0
#   ScopeSpans SchemaURL: <url>
#   InstrumentationScope <name> <version>
#   InstrumentationScope attributes:       (only if any)
#        -> k: Str(v)
#   --- spans ---
#   Span #0
#       Trace ID       : <hex>             (4 spaces, label padded, " : ")
#       Parent ID      : <hex or empty>
#       ID             : <hex>
#       Name           : <name>
#       Kind           : SPAN_KIND_INTERNAL
#   Start time: <ns>
#   End time: <ns>
#       Status code    : STATUS_CODE_UNSET
#       Status message : <text>
#   Attributes:                            (only if any)
#        -> a.str: Str(hello world)
#   Events:                                (only if any)
#   SpanEvent #0
#        -> Name: evt
#        -> Timestamp: <ns>
#        -> DroppedAttributesCount: 0
#        -> Attributes::                   (only if any; 10-space items)
#             -> ek: Str(ev)
#   Links:                                 (only if any)
#   SpanLink #0
#        -> Trace ID: <hex>
#        -> ID: <hex>
#        -> TraceState: <text>
#        -> DroppedAttributesCount: 0
#        -> Attributes::
#             -> lk: Str(lv)
#   --- metrics ---
#   Metric #0
#   Descriptor:
#        -> Name: req.count
#        -> Description: desc
#        -> Unit: 1
#        -> DataType: Sum                  (Gauge|Sum|Histogram|ExponentialHistogram|Summary)
#        -> IsMonotonic: true              (Sum only)
#        -> AggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE
#   NumberDataPoints #0                    (or HistogramDataPoints / ExponentialHistogramDataPoints)
#   Data point attributes:                 (only if any)
#        -> route: Str(/a)
#   StartTimestamp: <ns>
#   Timestamp: <ns>
#   Value: 3                               (number points; 1.0 prints as "1")
#   Count: 1 / Sum: 12.5 / Min: 12.5 / Max: 12.5             (histograms)
#   ExplicitBounds #0: 0                   (histogram)
#   Buckets #0, Count: 0                   (histogram)
#   Bucket [-1.0000006610368821, -1), Count: 0               (exponential)
#   Exemplars:                             (only if any)
#   Exemplar #0
#        -> Trace ID: <hex>
#        -> Span ID: <hex>
#        -> Timestamp: <ns>
#        -> Value: 1.5
#   --- logs ---
#   LogRecord #0
#   ObservedTimestamp: <ns>
#   Timestamp: <ns>
#   SeverityText: WARN
#   SeverityNumber: SEVERITY_NUMBER_WARN(13)
#   EventName: my.event                    (only if set)
#   Body: Str(log body)                    (or Map(...), Slice(...), Bytes([..]), Empty)
#   Attributes:                            (only if any)
#        -> lk: Str(lv)
#       Trace ID       : <hex or empty>
#       Span ID        : <hex or empty>
#   Flags: 0
#
# Values: Str(x) Int(42) Double(1.5) Bool(true) Bytes([0, 1]) Empty
#         Slice(Str(x), Int(2))  Map(k:Str(v), n:Int(1))
#
# Limitations: because nothing is escaped, a Str *inside* Slice/Map that
# contains unbalanced parentheses may be split wrongly (top-level Str values
# are always exact), and a multi-line string whose continuation line looks
# like one of the header lines above ends early.  Double values that are
# whole numbers come back as int (the agent prints 1.0 as "1").

_ROTEL_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\b")
_ARROW = re.compile(r"^( {5,})-> (.*)$")
_SPAN_FIELD = re.compile(
    r"^ {4}(Trace ID|Parent ID|ID|Name|Kind|Status code|Status message|Span ID)\s*: ?(.*)$"
)
_NUMBERED = re.compile(r"^([A-Za-z]+) #(\d+)(.*)$")
_FIELD = re.compile(r"^([A-Za-z][A-Za-z ]*?): ?(.*)$")
_BUCKET_EXP = re.compile(r"^Bucket ([\[(])(.*), (.*)([\])]), Count: (\d+)$")
_SEVERITY = re.compile(r"^(\w+?)\((-?\d+)\)$")

# Header words that may start a non-indented line; a line that is neither one
# of these nor an arrow/span-field line is a continuation of the previous
# (multi-line) value.
_HEADERS = {
    "Resource SchemaURL", "Resource attributes", "ScopeSpans SchemaURL",
    "ScopeMetrics SchemaURL", "ScopeLogs SchemaURL", "InstrumentationScope attributes",
    "Start time", "End time", "Attributes", "Events", "Links", "Descriptor",
    "Data point attributes", "StartTimestamp", "Timestamp", "Value", "Count", "Sum",
    "Min", "Max", "Exemplars", "ObservedTimestamp", "SeverityText", "SeverityNumber",
    "EventName", "Body", "Flags", "DroppedAttributesCount", "DroppedEventsCount",
    "DroppedLinksCount", "Scale", "ZeroCount", "Positive", "Negative",
    "QuantileValues", "TraceState",
}


class _Raw:
    """A value as printed; may grow with continuation lines."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _number(text: str) -> int | float | str:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _matching_paren(s: str, i: int) -> int:
    """Index of the ')' closing the '(' just before ``i`` (best effort)."""
    depth = 1
    j = i
    while j < len(s):
        if s[j] == "(":
            depth += 1
        elif s[j] == ")":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return len(s)


def _parse_value_at(s: str, i: int) -> tuple[Any, int]:
    m = re.compile(r"[A-Za-z]+").match(s, i)
    if not m:
        raise ValueError(f"no value type at {i} in {s!r}")
    typ = m.group(0)
    i = m.end()
    if typ == "Empty":
        if s.startswith("()", i):
            i += 2
        return None, i
    if i >= len(s) or s[i] != "(":
        raise ValueError(f"expected '(' at {i} in {s!r}")
    i += 1
    if typ in ("Slice", "Array", "Map", "KvList", "KeyValueList"):
        is_map = typ != "Slice" and typ != "Array"
        items: Any = {} if is_map else []
        while i < len(s) and s[i] != ")":
            if is_map:
                colon = s.index(":", i)
                key = s[i:colon]
                val, i = _parse_value_at(s, colon + 1)
                items[key] = val
            else:
                val, i = _parse_value_at(s, i)
                items.append(val)
            if s.startswith(", ", i):
                i += 2
        return items, i + 1
    if typ == "Bytes":
        close = s.index("]", i)
        inner = s[i + 1 : close].strip()
        data = bytes(int(b) for b in inner.split(",")) if inner else b""
        return data, close + 2
    end = _matching_paren(s, i)
    inner = s[i:end]
    if typ == "Str":
        return inner, end + 1
    if typ == "Int":
        return int(inner), end + 1
    if typ == "Double":
        return float(inner), end + 1
    if typ == "Bool":
        return inner == "true", end + 1
    return f"{typ}({inner})", end + 1  # unknown type: keep as printed


def parse_rotel_value(text: str) -> Any:
    """Parse one printed AnyValue (``Str(x)``, ``Int(1)``, ``Map(...)``...)."""
    text = text.strip("\r")
    if text.startswith("Str(") and text.endswith(")"):
        return text[4:-1]  # exact even if the string contains parentheses
    try:
        value, end = _parse_value_at(text, 0)
        if end >= len(text):
            return value
    except (ValueError, IndexError):
        pass
    return text


def _finish(obj: Any) -> Any:
    if isinstance(obj, _Raw):
        return parse_rotel_value(obj.text)
    if isinstance(obj, dict):
        return {k: _finish(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [_finish(v) for v in obj]
    return obj


def parse_rotel_debug_output(text: str) -> dict[str, list[dict[str, Any]]]:
    """Parse rotel's detailed debug output (format described above).

    Returns ``{"spans": [...], "metrics": [...], "logs": [...]}`` where

    * span: ``name, kind, trace_id, span_id, parent_span_id, status_code,
      status_message, start_time, end_time, attributes, events
      [{name, time, attributes}], links [{trace_id, span_id, trace_state,
      attributes}], resource, scope {name, version, schema_url, attributes}``
    * metric: ``name, description, unit, type, is_monotonic (Sum only),
      temporality, data_points [...], resource, scope``; a data point has
      ``kind`` ("Number", "Histogram", ...), ``attributes``, ``start_time``,
      ``time`` and ``value`` or ``count/sum/min/max/explicit_bounds/
      bucket_counts`` (exponential: ``buckets`` [(lower, upper, count)]) and
      ``exemplars`` [{trace_id, span_id, time, value}]
    * log: ``body, severity_text, severity_number (int), severity (e.g.
      "SEVERITY_NUMBER_WARN"), event_name, attributes, trace_id, span_id,
      flags, time, observed_time, resource, scope``

    Attribute values are Python values (str, int, float, bool, bytes, list,
    dict, None).  Data points / spans / logs appear once per receipt, in
    arrival order.
    """
    spans: list[dict] = []
    metrics: list[dict] = []
    logs: list[dict] = []

    resource: dict = {}
    scope: dict = {}
    kind = None  # "spans" | "metrics" | "logs"
    item: dict | None = None  # current span / metric / log record
    point: dict | None = None  # current metric data point
    sub: dict | None = None  # current span event / link / exemplar
    attrs: dict | None = None  # where "     -> k: v" lines go
    nested: dict | None = None  # where "          -> k: v" lines go
    section = None  # what 5-space arrows belong to: attrs|descriptor|sub
    last: _Raw | None = None  # value that continuation lines extend

    def put(target: dict, key: str, value: str) -> None:
        nonlocal last
        raw = _Raw(value)
        target[key] = raw
        last = raw

    for line in text.splitlines():
        stripped = line.rstrip()
        if _ROTEL_LOG_LINE.match(line) or line.startswith("### attempt "):
            last = None
            continue

        m = _ARROW.match(line)
        if m:
            indent, rest = len(m.group(1)), m.group(2)
            key, sep, value = rest.partition(": ")
            if not sep:  # "-> Attributes::" or "-> Key:" with empty value
                key, value = rest.rstrip(":"), ""
            if indent >= 10:
                if nested is not None:
                    put(nested, key, value)
                continue
            if section == "attrs" and attrs is not None:
                put(attrs, key, value)
            elif section == "descriptor" and item is not None:
                put(item["_descriptor"], key, value)
            elif section == "sub" and sub is not None:
                if key == "Attributes" and rest.endswith(":"):
                    nested = sub["attributes"]
                else:
                    put(sub["_fields"], key, value)
            continue

        m = _SPAN_FIELD.match(line)
        if m and item is not None and kind in ("spans", "logs"):
            put(item["_fields"], m.group(1), m.group(2))
            section = None
            continue

        m = _NUMBERED.match(stripped)
        if m and m.group(3) == "" or (m and m.group(1) in ("ExplicitBounds", "Buckets")):
            word, rest = m.group(1), m.group(3)
            last = None
            if word in ("ResourceSpans", "ResourceMetrics", "ResourceLog", "ResourceLogs"):
                kind = {"ResourceSpans": "spans", "ResourceMetrics": "metrics"}.get(word, "logs")
                resource, scope, item, point, sub = {}, {}, None, None, None
                attrs = nested = section = None
            elif word in ("ScopeSpans", "ScopeMetrics", "ScopeLogs"):
                scope = {"name": "", "version": "", "schema_url": "", "attributes": {}}
                item = point = sub = None
                attrs = nested = section = None
            elif word == "Span":
                item = {"_fields": {}, "attributes": {}, "events": [], "links": [],
                        "resource": resource, "scope": scope}
                spans.append(item)
                sub, attrs, nested, section = None, None, None, None
            elif word in ("SpanEvent", "SpanLink", "Exemplar"):
                sub = {"_fields": {}, "attributes": {}}
                if word == "SpanEvent" and item is not None:
                    item["events"].append(sub)
                elif word == "SpanLink" and item is not None:
                    item["links"].append(sub)
                elif word == "Exemplar" and point is not None:
                    point["exemplars"].append(sub)
                section, nested = "sub", None
            elif word == "Metric":
                item = {"_descriptor": {}, "data_points": [], "resource": resource,
                        "scope": scope}
                metrics.append(item)
                point = sub = attrs = nested = section = None
            elif word.endswith("DataPoints"):
                point = {"kind": word[: -len("DataPoints")], "attributes": {}, "exemplars": []}
                if item is not None:
                    item["data_points"].append(point)
                sub = attrs = nested = section = None
            elif word == "LogRecord":
                item = {"_fields": {}, "attributes": {}, "body": None,
                        "resource": resource, "scope": scope}
                logs.append(item)
                sub = attrs = nested = section = None
            elif word == "ExplicitBounds" and point is not None:
                point.setdefault("explicit_bounds", []).append(_number(rest.lstrip(": ")))
            elif word == "Buckets" and point is not None:
                point.setdefault("bucket_counts", []).append(
                    int(rest.rsplit("Count:", 1)[1]) if "Count:" in rest else rest
                )
            continue

        if stripped.startswith("InstrumentationScope ") and not stripped.startswith(
            "InstrumentationScope attributes:"
        ):
            name, _, version = stripped[len("InstrumentationScope "):].partition(" ")
            scope["name"], scope["version"] = name, version.strip()
            last = None
            continue

        m = _BUCKET_EXP.match(stripped)
        if m and point is not None:
            point.setdefault("buckets", []).append(
                (_number(m.group(2)), _number(m.group(3)), int(m.group(5)))
            )
            last = None
            continue

        m = _FIELD.match(line)
        if m and m.group(1) in _HEADERS:
            field, value = m.group(1), m.group(2)
            last = None
            if field == "Resource attributes":
                attrs, section = resource, "attrs"
            elif field == "InstrumentationScope attributes":
                attrs, section = scope.setdefault("attributes", {}), "attrs"
            elif field.endswith("SchemaURL"):
                target = resource if field.startswith("Resource") else scope
                if field.startswith("Resource"):
                    resource["_schema_url"] = value
                else:
                    target["schema_url"] = value.strip()
            elif field == "Attributes" and item is not None and "attributes" in item:
                attrs, section, sub = item["attributes"], "attrs", None
            elif field == "Data point attributes" and point is not None:
                attrs, section = point["attributes"], "attrs"
            elif field == "Descriptor":
                section = "descriptor"
            elif field in ("Events", "Links", "Exemplars"):
                section = None
            elif kind == "metrics" and point is not None:
                point[field] = value
            elif item is not None and "_fields" in item:
                if field == "Body":
                    put(item["_fields"], field, value)
                else:
                    item["_fields"][field] = value
            continue

        # Anything else continues the last (multi-line) value.
        if last is not None:
            last.text += "\n" + line

    return {
        "spans": [_span_dict(s) for s in spans],
        "metrics": [_metric_dict(m) for m in metrics],
        "logs": [_log_dict(r) for r in logs],
    }


def _text(v: Any) -> str:
    return v.text.strip() if isinstance(v, _Raw) else (v or "").strip()


def _int_or_none(v: Any) -> int | None:
    try:
        return int(_text(v))
    except ValueError:
        return None


def _scope(scope: dict) -> dict:
    return _finish(dict(scope))


def _span_dict(s: dict) -> dict:
    f = s["_fields"]
    return {
        "name": _text(f.get("Name")) if "Name" in f else "",
        "kind": _text(f.get("Kind")),
        "trace_id": _text(f.get("Trace ID")),
        "span_id": _text(f.get("ID")),
        "parent_span_id": _text(f.get("Parent ID")),
        "status_code": _text(f.get("Status code")),
        "status_message": f["Status message"].text if "Status message" in f else "",
        "start_time": _int_or_none(f.get("Start time", s.get("Start time", ""))),
        "end_time": _int_or_none(f.get("End time", s.get("End time", ""))),
        "attributes": _finish(s["attributes"]),
        "events": [
            {
                "name": _text(e["_fields"].get("Name")),
                "time": _int_or_none(e["_fields"].get("Timestamp")),
                "attributes": _finish(e["attributes"]),
            }
            for e in s["events"]
        ],
        "links": [
            {
                "trace_id": _text(link["_fields"].get("Trace ID")),
                "span_id": _text(link["_fields"].get("ID")),
                "trace_state": _text(link["_fields"].get("TraceState")),
                "attributes": _finish(link["attributes"]),
            }
            for link in s["links"]
        ],
        "resource": _finish(s["resource"]),
        "scope": _scope(s["scope"]),
    }


def _metric_dict(m: dict) -> dict:
    d = {k: _text(v) for k, v in m["_descriptor"].items()}
    out: dict[str, Any] = {
        "name": d.get("Name", ""),
        "description": d.get("Description", ""),
        "unit": d.get("Unit", ""),
        "type": d.get("DataType", ""),
        "temporality": d.get("AggregationTemporality", ""),
        "data_points": [],
        "resource": _finish(m["resource"]),
        "scope": _scope(m["scope"]),
    }
    if "IsMonotonic" in d:
        out["is_monotonic"] = d["IsMonotonic"] == "true"
    for p in m["data_points"]:
        dp: dict[str, Any] = {"kind": p["kind"], "attributes": _finish(p["attributes"])}
        for src, dst in (("StartTimestamp", "start_time"), ("Timestamp", "time")):
            if src in p:
                dp[dst] = _int_or_none(p[src])
        for src in ("Value", "Count", "Sum", "Min", "Max"):
            if src in p:
                dp[src.lower()] = _number(p[src])
        for key in ("explicit_bounds", "bucket_counts", "buckets"):
            if key in p:
                dp[key] = p[key]
        dp["exemplars"] = [
            {
                "trace_id": _text(e["_fields"].get("Trace ID")),
                "span_id": _text(e["_fields"].get("Span ID")),
                "time": _int_or_none(e["_fields"].get("Timestamp")),
                "value": _number(_text(e["_fields"].get("Value"))),
                "attributes": _finish(e["attributes"]),
            }
            for e in p["exemplars"]
        ]
        out["data_points"].append(dp)
    return out


def _log_dict(r: dict) -> dict:
    f = r["_fields"]
    sev = _SEVERITY.match(_text(f.get("SeverityNumber")))
    return {
        "body": parse_rotel_value(f["Body"].text) if "Body" in f else None,
        "severity_text": _text(f.get("SeverityText")),
        "severity_number": int(sev.group(2)) if sev else None,
        "severity": sev.group(1) if sev else _text(f.get("SeverityNumber")),
        "event_name": _text(f.get("EventName")),
        "attributes": _finish(r["attributes"]),
        "trace_id": _text(f.get("Trace ID")),
        "span_id": _text(f.get("Span ID")),
        "flags": _int_or_none(f.get("Flags")),
        "time": _int_or_none(f.get("Timestamp")),
        "observed_time": _int_or_none(f.get("ObservedTimestamp")),
        "resource": _finish(r["resource"]),
        "scope": _scope(r["scope"]),
    }


# --------------------------------------------------------------------------
# InfluxDB 1.x
# --------------------------------------------------------------------------


class InfluxQueryError(RuntimeError):
    """InfluxDB answered a query with an error."""


class InfluxDB1(Backend):
    """Debian's ``influxd`` 1.x with a throw-away config and data dir.

    * ``url``: ``http://127.0.0.1:PORT`` (``/write``, ``/query``, ``/ping``)
    * ``query(influxql, db=None)`` -> the parsed ``results`` list
    * ``points(influxql, db)`` -> rows as dicts (flattened series)
    * ``create_database(name)``, ``write(lines, db)``

    The ``_internal`` monitor database, usage reporting, query/HTTP access
    logs are disabled; log level is "warn".
    """

    name = "InfluxDB1"
    binary = "influxd"
    install_hint = "Debian package 'influxdb' (influxd 1.x)"
    ready_timeout = 30.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.port: int | None = None
        self.rpc_port: int | None = None

    def _prepare(self, binary: str) -> list[str]:
        assert self.dir is not None
        self.port = free_port()
        self.rpc_port = free_port()
        d = self.dir
        config = f"""\
reporting-enabled = false
reporting-disabled = true
bind-address = "{LOOPBACK}:{self.rpc_port}"

[meta]
  dir = "{d / 'meta'}"
  logging-enabled = false

[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  query-log-enabled = false
  index-version = "inmem"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{LOOPBACK}:{self.port}"
  auth-enabled = false
  log-enabled = false
  suppress-write-log = true
  pprof-enabled = false
  flux-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
"""
        # Debian's 1.6 build knows "reporting-enabled"; upstream 1.x uses
        # "reporting-disabled".  Unknown keys are ignored by influxd.
        (d / "influxdb.conf").write_text(config)
        return [binary, "run", "-config", str(d / "influxdb.conf")]

    def _env(self) -> dict[str, str]:
        # INFLUXDB_* variables override the config file.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def _is_ready(self) -> bool:
        status, _ = http_request("GET", f"{self.url}/ping", timeout=1)
        return status == 204

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def query(
        self, influxql: str, db: str | None = None, *, epoch: str | None = None, check: bool = True
    ) -> list[dict[str, Any]]:
        """Run InfluxQL (POST /query); return the ``results`` list.

        With ``check`` (default) an error in the response raises
        :class:`InfluxQueryError`.
        """
        params = {"q": influxql}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        status, body = http_request(
            "POST",
            f"{self.url}/query",
            data=urllib.parse.urlencode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = {"error": body.decode(errors="replace")}
        results = payload.get("results", [])
        if check:
            errors = [payload["error"]] if "error" in payload else []
            errors += [r["error"] for r in results if "error" in r]
            if status >= 400 or errors:
                raise InfluxQueryError(f"{influxql!r}: HTTP {status}: {errors or body!r}")
        return results

    def points(self, influxql: str, db: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        """Rows of all series of the first statement, as dicts (tags included)."""
        rows = []
        results = self.query(influxql, db=db, **kwargs)
        for series in (results[0].get("series", []) if results else []):
            for values in series.get("values", []):
                row = dict(series.get("tags", {}))
                row.update(zip(series["columns"], values))
                row["_measurement"] = series.get("name")
                rows.append(row)
        return rows

    def create_database(self, name: str) -> None:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        self.query(f'CREATE DATABASE "{escaped}"')

    def write(self, lines: str | Iterable[str], db: str, precision: str = "ns") -> None:
        """Write line protocol via HTTP ``/write``; raises on non-204."""
        if not isinstance(lines, str):
            lines = "\n".join(lines)
        status, body = http_request(
            "POST",
            f"{self.url}/write?" + urllib.parse.urlencode({"db": db, "precision": precision}),
            data=lines,
        )
        if status != 204:
            raise InfluxQueryError(f"write failed: HTTP {status}: {body!r}")


# --------------------------------------------------------------------------
# VictoriaMetrics
# --------------------------------------------------------------------------


class VictoriaMetrics(Backend):
    """Single-node ``victoria-metrics``; accepts InfluxDB line protocol on
    ``/write`` and ``/api/v2/write`` (what influxdb-client uses).

    * ``url``: ``http://127.0.0.1:PORT``
    * ``flush()``: ``/internal/force_flush``
    * ``export(match)`` -> parsed JSON lines of ``/api/v1/export``:
      ``[{"metric": {"__name__": "cpu_usage", "host": "a"}, "values": [...],
      "timestamps": [ms, ...]}]``
    * ``wait_for_export(match, min_series=1)``: flush + poll export; written
      rows become visible ~0.5-1s after the write even after a flush (VM
      1.79), so tests should use this instead of a single ``export()``.
    * ``query(promql)``: instant query (``-search.latencyOffset=0s`` and the
      rollup cache disabled so fresh samples are visible).

    Influx line protocol mapping: ``measurement,tag=v field=1`` becomes
    series ``measurement_field{tag="v"}``; ``/write?db=x`` adds label
    ``db="x"``, ``/api/v2/write?bucket=..`` does not.  Retention is 100y so
    fixed (old) timestamps in tests are accepted.
    """

    name = "VictoriaMetrics"
    binary = "victoria-metrics"
    install_hint = "Debian package 'victoria-metrics'"
    ready_timeout = 30.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.port: int | None = None

    def _prepare(self, binary: str) -> list[str]:
        assert self.dir is not None
        self.port = free_port()
        return [
            binary,
            f"-httpListenAddr={LOOPBACK}:{self.port}",
            f"-storageDataPath={self.dir / 'data'}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]

    def _is_ready(self) -> bool:
        status, _ = http_request("GET", f"{self.url}/health", timeout=1)
        return status == 200

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def flush(self) -> None:
        status, body = http_request("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            raise RuntimeError(f"force_flush: HTTP {status}: {body!r}")

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        status, body = http_request(
            "POST",
            f"{self.url}/api/v1/export",
            data=urllib.parse.urlencode({"match[]": match}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise RuntimeError(f"export {match!r}: HTTP {status}: {body!r}")
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def wait_for_export(
        self, match: str = '{__name__!=""}', min_series: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Flush and poll ``export(match)`` until >= ``min_series`` series."""
        seen: list = []

        def check() -> list | None:
            self.flush()
            seen[:] = self.export(match)
            return list(seen) if len(seen) >= min_series else None

        return _poll(
            check,
            timeout,
            lambda: f"export {match!r} has {len(seen)} series, wanted {min_series}: "
            f"{seen!r}\nlog tail:\n{self.log_tail()}",
            interval=0.1,
        )

    def query(self, promql: str, time_: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql}
        if time_ is not None:
            params["time"] = str(time_)
        status, body = http_request(
            "GET", f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params)
        )
        payload = json.loads(body)
        if status != 200 or payload.get("status") != "success":
            raise RuntimeError(f"query {promql!r}: HTTP {status}: {payload!r}")
        return payload["data"]["result"]


# --------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------


class Prometheus(Backend):
    """``prometheus`` scraping the given ``host:port`` targets.

    * ``Prometheus(["127.0.0.1:8000"], scrape_interval="1s")``
    * ``url``; ``query(promql)`` -> ``data.result`` of ``/api/v1/query``;
      ``wait_for_target_up(timeout)``; ``wait_for_query(promql)``;
      ``targets()`` (``/api/v1/targets`` active targets).

    All targets are in one job (``job_name``, default "rqa") with the given
    ``metrics_path``; ``scrape_config`` (a dict) is merged into that job for
    anything else (e.g. ``{"honor_labels": True}``).  The config file is JSON
    (a YAML subset) in the temp dir.
    """

    name = "Prometheus"
    binary = "prometheus"
    install_hint = "Debian package 'prometheus'"
    ready_timeout = 30.0

    def __init__(
        self,
        targets: Sequence[str],
        *,
        scrape_interval: str = "1s",
        job_name: str = "rqa",
        metrics_path: str = "/metrics",
        scrape_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(targets, str):
            targets = [targets]
        self.scrape_targets = list(targets)
        self.scrape_interval = scrape_interval
        self.job_name = job_name
        self.metrics_path = metrics_path
        self.scrape_config = dict(scrape_config or {})
        self.port: int | None = None

    def _prepare(self, binary: str) -> list[str]:
        assert self.dir is not None
        self.port = free_port()
        job = {
            "job_name": self.job_name,
            "metrics_path": self.metrics_path,
            "static_configs": [{"targets": self.scrape_targets}],
        }
        job.update(self.scrape_config)
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [job],
        }
        (self.dir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        return [
            binary,
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--log.level=warn",
            # hidden flag (2.41+): apply discovered targets after 100ms
            # instead of 5s, so the first scrape happens ~1s after start
            "--scrape.discovery-reload-interval=100ms",
        ]

    def _is_ready(self) -> bool:
        status, _ = http_request("GET", f"{self.url}/-/ready", timeout=1)
        return status == 200

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _api(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_request("GET", url)
        payload = json.loads(body)
        if status != 200 or payload.get("status") != "success":
            raise RuntimeError(f"{path} {params}: HTTP {status}: {payload!r}")
        return payload["data"]

    def query(self, promql: str, time_: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the ``result`` list (vector/matrix)."""
        params = {"query": promql}
        if time_ is not None:
            params["time"] = str(time_)
        return self._api("/api/v1/query", params)["result"]

    def targets(self) -> list[dict[str, Any]]:
        return self._api("/api/v1/targets", {"state": "active"})["activeTargets"]

    def wait_for_target_up(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Wait until every configured target was scraped successfully."""
        seen: list = []

        def check() -> list | None:
            seen[:] = self.targets()
            ok = len(seen) >= len(set(self.scrape_targets)) and all(
                t["health"] == "up" for t in seen
            )
            return list(seen) if ok else None

        def describe() -> str:
            states = [
                f"{t.get('scrapeUrl')}: {t.get('health')} {t.get('lastError') or ''}".strip()
                for t in seen
            ]
            return f"targets not all up: {states}\nlog tail:\n{self.log_tail()}"

        return _poll(check, timeout, describe, interval=0.1)

    def wait_for_query(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], Any] = bool,
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Poll ``query(promql)`` until ``predicate(result)`` (default:
        non-empty); returns the result."""
        seen: list = []

        def check() -> tuple | None:
            seen[:] = self.query(promql)
            return (list(seen),) if predicate(seen) else None

        return _poll(
            check, timeout, lambda: f"query {promql!r}: last result {seen!r}", interval=0.1
        )[0]


def promtool_check_metrics(text: str, timeout: float = 30.0) -> tuple[bool, str]:
    """Pipe exposition ``text`` into ``promtool check metrics``.

    Returns ``(ok, output)``; ok means exit code 0.  promtool exits 1 on
    parse errors and 3 on lint problems (e.g. a counter without ``_total``).
    Raises :class:`BackendNotFound` when promtool is missing.
    """
    promtool = shutil.which("promtool")
    if promtool is None:
        raise BackendNotFound("promtool", "promtool", "Debian package 'prometheus'")
    proc = subprocess.run(
        [promtool, "check", "metrics"],
        input=text.encode(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    return proc.returncode == 0, proc.stdout.decode("utf-8", errors="replace")
