"""Shared pytest fixtures.

Layout (add new fixtures in their own section below, keep this file small):

1. Real telemetry back-ends -- processes from ``tests/backends.py`` started on
   free 127.0.0.1 ports and stopped by finalizers.  A missing binary skips
   the test with a reason naming the binary and its Debian/PyPI package; with
   ``CI=true`` it fails instead (see :func:`missing_backend`).
2. Project fixtures -- ``file_telemetry``: ``rqa_otel.setup`` handles that
   export to OTLP-JSON files in a temporary directory (read them back with
   ``tests/otlp_files.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NoReturn, Sequence

import pytest

import rqa_otel

# Make ``import backends`` work for test modules whatever --import-mode is.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from backends import (  # noqa: E402
    Backend,
    BackendNotFound,
    InfluxDB1,
    Prometheus,
    Rotel,
    VictoriaMetrics,
    promtool_check_metrics,
)


def _bypass_proxy_for_loopback() -> None:
    """Back-ends listen on 127.0.0.1: never send that traffic to a proxy
    (requests and gRPC honour *_proxy variables)."""
    if not any(os.environ.get(v) for v in ("http_proxy", "HTTP_PROXY", "https_proxy",
                                           "HTTPS_PROXY", "grpc_proxy", "all_proxy", "ALL_PROXY")):
        return
    for var in ("no_proxy", "NO_PROXY"):
        entries = [e for e in os.environ.get(var, "").split(",") if e]
        for host in ("127.0.0.1", "localhost"):
            if host not in entries:
                entries.append(host)
        os.environ[var] = ",".join(entries)


_bypass_proxy_for_loopback()


# ==========================================================================
# 1. Real telemetry back-ends
# ==========================================================================


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_backend(exc: BackendNotFound) -> NoReturn:
    """The one place deciding what a missing back-end binary means:
    ``pytest.skip`` normally, ``pytest.fail`` when ``CI=true``."""
    reason = f"{exc.backend}: {exc.binary!r} not installed; install {exc.install_hint}"
    if in_ci():
        pytest.fail(f"CI=true and a back-end is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def _start(request: pytest.FixtureRequest, backend: Backend) -> Backend:
    request.addfinalizer(backend.stop)  # registered first: runs even if start() fails
    try:
        backend.start()
    except BackendNotFound as exc:
        missing_backend(exc)
    return backend


@pytest.fixture
def start_backend(request: pytest.FixtureRequest) -> Callable[[Backend], Backend]:
    """Start any ``backends.Backend`` instance for this test (custom options),
    with the skip/fail handling and a stop finalizer: ``start_backend(Rotel(...))``.
    Function scope."""
    return lambda backend: _start(request, backend)


@pytest.fixture
def require_backend() -> Callable[[type[Backend]], str]:
    """``require_backend(Rotel)`` -> path of the binary, or skip/fail (as for
    the fixtures) when it is missing.  For tests that drive processes
    themselves."""

    def check(cls: type[Backend]) -> str:
        try:
            return cls.require_binary()
        except BackendNotFound as exc:
            missing_backend(exc)

    return check


@pytest.fixture
def rotel(request: pytest.FixtureRequest) -> Rotel:
    """Rotel agent (OTLP gRPC + HTTP receiver, detailed debug log, blackhole
    exporter).  Function scope: a fresh agent per test (ready in ~30ms), so
    ``rotel.spans()`` etc. only contain this test's data."""
    return _start(request, Rotel())


@pytest.fixture
def influxdb_v1(request: pytest.FixtureRequest) -> InfluxDB1:
    """Empty InfluxDB 1.x server.  Function scope (ready in ~30ms)."""
    return _start(request, InfluxDB1())


@pytest.fixture
def victoria_metrics(request: pytest.FixtureRequest) -> VictoriaMetrics:
    """Empty single-node VictoriaMetrics.  Function scope (ready in ~70ms)."""
    return _start(request, VictoriaMetrics())


@pytest.fixture
def prometheus_factory(request: pytest.FixtureRequest) -> Callable[..., Prometheus]:
    """``prometheus_factory(["127.0.0.1:PORT", ...], scrape_interval="1s", ...)``
    starts a Prometheus scraping those targets (kwargs go to
    ``backends.Prometheus``).  Function scope: every instance is stopped at
    the end of the test."""

    def factory(targets: Sequence[str], **kwargs) -> Prometheus:
        return _start(request, Prometheus(targets, **kwargs))

    return factory


_GAUGE_COUNT_LINT = 'non-histogram and non-summary metrics should not have "_count" suffix'


@pytest.fixture
def promtool() -> Callable[[str], tuple[bool, str]]:
    """``promtool(text) -> (ok, output)`` (``backends.promtool_check_metrics``);
    skip/fail like the back-ends when promtool is missing.

    One lint finding does not count against ok: a gauge named ``*_count``.
    The OpenTelemetry specification's Prometheus rules (and the Collector)
    keep the semantic conventions' ``process.thread.count`` as
    ``process_thread_count``; promtool's linter reserves ``_count`` for
    histograms and summaries. tests/test_prometheus_names.py checks that
    this is the only finding."""

    def check(text: str) -> tuple[bool, str]:
        try:
            ok, output = promtool_check_metrics(text)
        except BackendNotFound as exc:
            missing_backend(exc)
        findings = [line for line in output.splitlines() if line.strip()]
        if not ok and findings and all(_GAUGE_COUNT_LINT in line for line in findings):
            return True, output
        return ok, output

    return check


# ==========================================================================
# 2. Project fixtures
# ==========================================================================


@pytest.fixture
def file_telemetry(tmp_path: Path) -> Iterator[Callable[..., rqa_otel.Telemetry]]:
    """``file_telemetry(settings_file=None, *, directory=tmp_path, strategy=None,
    overrides=None)`` -> a ``rqa_otel.setup(set_global=False)`` handle whose
    default (file) exporters write ``traces.jsonl``, ``metrics.jsonl`` and
    ``logs.jsonl`` to ``directory``; ``overrides`` are added to
    ``export.directory``.  Every handle is shut down at teardown; shutdown is
    idempotent, so a test may shut down first to flush and read the files."""
    handles: list[rqa_otel.Telemetry] = []

    def factory(
        settings_file: str | os.PathLike[str] | None = None,
        *,
        directory: Path | None = None,
        strategy: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> rqa_otel.Telemetry:
        handle = rqa_otel.setup(
            settings_file,
            strategy=strategy,
            overrides={"export.directory": str(tmp_path if directory is None else directory), **(overrides or {})},
            set_global=False,
        )
        handles.append(handle)
        return handle

    yield factory
    for handle in handles:
        handle.shutdown()
