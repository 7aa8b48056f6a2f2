"""RetryHandler: the RQA2025 design's generic retry decorator.

    retry = RetryHandler(telemetry)

    @retry.with_retry(max_retries=3, retry_delay=2.0, retry_exceptions=[ConnectionError, TimeoutError])
    def load_bars(symbol): ...

- any exception types (``retry_exceptions``), not only the trading taxonomy
  that ``TradingErrorHandler.with_retry`` retries by policy;
- ``max_retries`` counts RETRIES: 3 means at most 4 calls;
- ``backoff="fixed"`` (the design's: ``retry_delay`` before every retry) or
  ``"exponential"`` (``retry_delay`` x 2**n, capped by ``max_delay``);
  ``jitter=True`` draws each delay uniformly from [0, delay] ("full jitter"),
  off by default so that a fixed delay is exactly that;
- a call that needed retries is one alert-tagged span ``retry`` (warning;
  critical when it gave up) with one ``rqa.retry`` event per retry and its
  outcome, as TradingErrorHandler reports; an exception outside
  ``retry_exceptions`` is not caught at all.

Sync and async functions both work. Without a telemetry handle nothing is
reported (the retries still happen).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
from typing import Any, Callable, Iterable, TypeVar

from rqa_otel import names

_log = logging.getLogger("rqa_otel.trading_errors")
F = TypeVar("F", bound=Callable[..., Any])
BACKOFFS = ("fixed", "exponential")


class RetryHandler:
    def __init__(self, telemetry=None, sleep: Callable[[float], Any] = time.sleep) -> None:
        """``telemetry``: where retries are reported (None: nowhere);
        ``sleep``: the sync sleep (tests pass a recorder)."""
        self._telemetry = telemetry
        self._sleep = sleep

    def with_retry(
        self,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        retry_exceptions: Iterable[type[BaseException]] | type[BaseException] = (Exception,),
        *,
        backoff: str = "fixed",
        max_delay: float | None = None,
        jitter: bool = False,
        strategy: str | None = None,
    ) -> Callable[[F], F]:
        """Decorate a function: retry it up to ``max_retries`` times when it
        raises one of ``retry_exceptions``. Bad arguments raise at once
        (TypeError or ValueError naming the argument)."""
        exceptions = _exception_types(retry_exceptions)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries = {max_retries!r}: expected an integer >= 0 (retries, not calls)")
        if isinstance(retry_delay, bool) or not isinstance(retry_delay, (int, float)) or not 0 <= retry_delay < float("inf"):
            raise ValueError(f"retry_delay = {retry_delay!r}: expected a number of seconds >= 0")
        if backoff not in BACKOFFS:
            raise ValueError(f"backoff = {backoff!r}: expected one of {', '.join(BACKOFFS)}")
        if max_delay is not None and (isinstance(max_delay, bool) or not isinstance(max_delay, (int, float)) or max_delay < 0):
            raise ValueError(f"max_delay = {max_delay!r}: expected a number of seconds >= 0, or None")

        def delay(retry: int) -> float:
            value = float(retry_delay) if backoff == "fixed" else float(retry_delay) * 2 ** (retry - 1)
            if max_delay is not None:
                value = min(value, float(max_delay))
            return random.uniform(0, value) if jitter else value

        def decorate(function: F) -> F:
            name = getattr(function, "__qualname__", repr(function))
            if inspect.iscoroutinefunction(function):
                @functools.wraps(function)
                async def run_async(*args, **kwargs):
                    attempt = _Attempts(self._telemetry, name, max_retries, strategy)
                    while True:
                        try:
                            result = await function(*args, **kwargs)
                        except exceptions as error:
                            await asyncio.sleep(attempt.failed(error, delay))
                        else:
                            attempt.succeeded()
                            return result

                return run_async  # type: ignore[return-value]

            @functools.wraps(function)
            def run(*args, **kwargs):
                attempt = _Attempts(self._telemetry, name, max_retries, strategy)
                while True:
                    try:
                        result = function(*args, **kwargs)
                    except exceptions as error:
                        self._sleep(attempt.failed(error, delay))
                    else:
                        attempt.succeeded()
                        return result

            return run  # type: ignore[return-value]

        return decorate


def _exception_types(value: Any) -> tuple[type[BaseException], ...]:
    def is_type(item: Any) -> bool:
        return isinstance(item, type) and issubclass(item, BaseException)

    if is_type(value):
        return (value,)
    if isinstance(value, (list, tuple, set, frozenset)) and value and all(is_type(item) for item in value):
        return tuple(value)
    raise TypeError(
        f"retry_exceptions must be a list of exception types (e.g. [ConnectionError, TimeoutError]), got {value!r}"
    )


class _Attempts:
    """One decorated call: counts retries, reports them on one alert span."""

    def __init__(self, telemetry, function: str, max_retries: int, strategy: str | None) -> None:
        self.telemetry = telemetry
        self.function = function
        self.max_retries = max_retries
        self.strategy = strategy
        self.retries = 0
        self.alert_context = None
        self.alert = None

    def failed(self, error: BaseException, delay: Callable[[int], float]) -> float:
        if self.retries >= self.max_retries:
            self._finish(error, names.ERROR_OUTCOMES[1] if self.retries else names.ERROR_OUTCOMES[2])
            raise error
        self.retries += 1
        seconds = delay(self.retries)
        self._open(error)
        if self.alert is not None:
            try:
                self.alert.add_event(names.RETRY_EVENT, {
                    names.ERROR_ATTEMPTS: self.retries,
                    names.ERROR_TYPE: type(error).__name__,
                    names.RETRY_DELAY_S: round(seconds, 3),
                    names.ALERT_MESSAGE: str(error),
                })
            except Exception:  # telemetry never breaks the retried call
                _log.warning("could not report a retry", exc_info=True)
        return seconds

    def succeeded(self) -> None:
        if self.alert is not None:
            self._close(names.ERROR_OUTCOMES[0], None)

    def _open(self, error: BaseException) -> None:
        if self.alert is not None or self.telemetry is None:
            return
        try:
            self.alert_context = self.telemetry.alerts.open(
                names.RETRY_ALERT, "warning", strategy=self.strategy, message=f"{self.function}: {error}",
                attributes={names.ERROR_TYPE: type(error).__name__, names.RETRY_FUNCTION: self.function},
            )
            self.alert = self.alert_context.__enter__()
        except Exception:
            _log.warning("could not report a retry", exc_info=True)
            self.alert = self.alert_context = None

    def _finish(self, error: BaseException, outcome: str) -> None:
        if self.retries == 0:
            return  # max_retries=0: nothing was retried, the caller gets the error as is
        self._open(error)
        if self.alert is not None:
            try:
                self.alert.escalate("critical")
                self.alert.record_exception(error)
            except Exception:
                _log.warning("could not report a retry", exc_info=True)
        if hasattr(error, "add_note"):
            error.add_note(f"rqa-otel: gave up after {self.retries} retries")
        self._close(outcome, error)

    def _close(self, outcome: str, error: BaseException | None) -> None:
        try:
            self.alert.set_attributes({names.ERROR_ATTEMPTS: self.retries + 1, names.ERROR_OUTCOME: outcome})
            self.alert_context.__exit__(None, None, None)
        except Exception:
            _log.warning("could not report a retry", exc_info=True)
        self.alert = self.alert_context = None
