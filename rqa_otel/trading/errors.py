"""Trading errors: a taxonomy, retries with backoff, a circuit breaker, alerts.

    handler = TradingErrorHandler(telemetry)

    @handler.with_retry(strategy="mean_rev")
    def submit(order): ...              # sync or async

Policies, as the RQA2025 design has them, with its fixed delays turned into
exponential backoff with full jitter (the ``backoff`` package's generators):

| error            | tries | delay (base .. max) | alert                          |
| OrderRejected    | 3     | 1 s .. 5 s          | warning; critical on giving up |
| BrokerConnection | 5     | 2 s .. 10 s         | warning; critical on giving up |
| DataLoadError    | 3     | 1 s .. 10 s         | warning; critical on giving up |
| InsufficientFunds| 1     | not retried         | critical                       |
| PositionLimit    | 1     | not retried         | warning                        |

Broker connection failures also feed a circuit breaker: while it is open no
call goes out and the caller gets ``CircuitOpen`` at once.

Each handled error is one alert-tagged span (``rqa.alert``) carrying the
error type, reason code, context, attempts and outcome, with one
``rqa.retry`` event per retry, and one increment of ``rqa.trading_errors``
by type, strategy and outcome. The exception the caller finally gets is
the last one raised, traceback and cause chain intact, with a note of the
attempts.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

import backoff

from rqa_otel import names
from rqa_otel._util.weak import subscribe_while_alive, weak_callback
from rqa_otel.config.loader import load_settings
from rqa_otel.trading.circuit_breaker import STATE_VALUES, CircuitBreaker

_log = logging.getLogger("rqa_otel.trading_errors")
F = TypeVar("F", bound=Callable[..., Any])


class ReasonCode(str, enum.Enum):
    """Why an order or request failed (after Lean's OrderResponseErrorCode)."""

    UNKNOWN = "unknown"
    BROKER_REJECTED = "broker_rejected"
    PRICE_OUT_OF_LIMIT = "price_out_of_limit"
    INVALID_QUANTITY = "invalid_quantity"
    MARKET_CLOSED = "market_closed"
    RISK_CHECK_FAILED = "risk_check_failed"
    DUPLICATE_ORDER = "duplicate_order"
    RATE_LIMITED = "rate_limited"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    POSITION_LIMIT_EXCEEDED = "position_limit_exceeded"
    CONNECTION_LOST = "connection_lost"
    TIMEOUT = "timeout"
    CIRCUIT_OPEN = "circuit_open"
    DATA_MISSING = "data_missing"
    DATA_CORRUPT = "data_corrupt"
    DATA_SOURCE_UNAVAILABLE = "data_source_unavailable"


class TradingError(Exception):
    """Base of the taxonomy; every field is optional context for the alert."""

    alert_name = names.ALERT_TRADING_ERROR
    default_reason = ReasonCode.UNKNOWN

    def __init__(
        self,
        message: str = "",
        *,
        strategy: str | None = None,
        symbol: str | None = None,
        order_id: str | None = None,
        reason: ReasonCode | None = None,
        required: float | None = None,
        available: float | None = None,
        current: float | None = None,
        limit: float | None = None,
    ) -> None:
        super().__init__(message or self.__class__.__name__)
        self.strategy = strategy
        self.symbol = symbol
        self.order_id = order_id
        self.reason = ReasonCode(reason) if reason is not None else self.default_reason
        self.required = required
        self.available = available
        self.current = current
        self.limit = limit

    def attributes(self) -> dict[str, Any]:
        """The context as span attributes (only the fields that are set)."""
        fields = {
            names.STOCK: self.symbol,
            names.ORDER_ID: self.order_id,
            names.ERROR_REQUIRED: self.required,
            names.ERROR_AVAILABLE: self.available,
            names.ERROR_CURRENT: self.current,
            names.ERROR_LIMIT: self.limit,
        }
        attributes = {key: value for key, value in fields.items() if value is not None}
        attributes[names.ERROR_TYPE] = type(self).__name__
        attributes[names.ERROR_REASON] = self.reason.value
        return attributes


class OrderRejected(TradingError):
    alert_name = names.ALERT_ORDER_REJECTED
    default_reason = ReasonCode.BROKER_REJECTED


class InsufficientFunds(TradingError):
    alert_name = names.ALERT_INSUFFICIENT_FUNDS
    default_reason = ReasonCode.INSUFFICIENT_FUNDS


class PositionLimit(TradingError):
    alert_name = names.ALERT_POSITION_LIMIT
    default_reason = ReasonCode.POSITION_LIMIT_EXCEEDED


class BrokerConnection(TradingError):
    alert_name = names.ALERT_BROKER_CONNECTION
    default_reason = ReasonCode.CONNECTION_LOST


class CircuitOpen(BrokerConnection):
    """Raised without calling the broker while its circuit breaker is open."""

    alert_name = names.ALERT_CIRCUIT_OPEN
    default_reason = ReasonCode.CIRCUIT_OPEN


class DataLoadError(TradingError):
    """For the data layer: a feed or file could not be loaded."""

    alert_name = names.ALERT_DATA_LOAD_FAILED
    default_reason = ReasonCode.DATA_SOURCE_UNAVAILABLE


@dataclass(frozen=True)
class RetryPolicy:
    max_tries: int
    """Attempts in all, the first one included; 1 means no retry."""
    base_delay_s: float = 1.0
    max_delay_s: float = 10.0
    severity: str = "warning"
    """Alert severity of a handled error; giving up after retries is critical."""

    def delays(self):
        """Delays before each retry: exponential from base to max, full jitter."""
        for delay in backoff.expo(base=2, factor=self.base_delay_s, max_value=self.max_delay_s):
            if delay is not None:  # backoff's generators start with a priming None
                yield backoff.full_jitter(delay)


def default_policies(settings=None) -> dict[type, RetryPolicy]:
    """The design's policies, from settings when given (``errors.*``)."""
    def policy(section, severity: str) -> RetryPolicy:
        return RetryPolicy(section.max_tries, section.base_delay_s, section.max_delay_s, severity)

    if settings is None:
        settings = load_settings(environ={})
    errors = settings.errors
    return {
        OrderRejected: policy(errors.order_rejected, "warning"),
        BrokerConnection: policy(errors.broker_connection, "warning"),
        DataLoadError: policy(errors.data_load, "warning"),
        InsufficientFunds: RetryPolicy(1, severity="critical"),
        PositionLimit: RetryPolicy(1, severity="warning"),
        TradingError: RetryPolicy(1, severity="warning"),
    }


RECOVERED, GAVE_UP, NOT_RETRIED, REFUSED = names.ERROR_OUTCOMES


class TradingErrorHandler:
    """Handles trading errors with the policies above and reports them."""

    def __init__(self, telemetry, policies: Mapping[type, RetryPolicy] | None = None, sleep=time.sleep) -> None:
        self._telemetry = telemetry
        self._policies = dict(policies) if policies is not None else default_policies(telemetry.settings)
        config = getattr(telemetry, "live_settings", None)
        if policies is None and config is not None:
            # Hot reload: the next call uses the new policies (a call in
            # progress keeps its own); breakers take the new threshold and
            # open time at once.
            subscribe_while_alive(self, lambda callback: config.on_change("errors", callback), self._settings_changed)
        self._sleep = sleep
        self._handlers: dict[type, Callable[[BaseException], Any]] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._breakers_lock = threading.Lock()
        self._counter = telemetry.meter.create_counter(
            names.TRADING_ERRORS_COUNTER, unit="{error}",
            description="Handled trading errors, by type, strategy and outcome.",
        )
        # Weak, as is the settings subscription: the telemetry handle outlives
        # handlers, and one dropped must not be kept (and called) forever.
        telemetry.add_readiness_check(names.CIRCUIT_BREAKER_READINESS,
                                      weak_callback(self._breakers_closed, (True, "no circuit breaker")))
        telemetry.meter.create_observable_gauge(
            names.CIRCUIT_BREAKER_STATE_GAUGE,
            callbacks=[weak_callback(self._observe_breakers, [])],
            unit="{state}",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        )

    def _settings_changed(self, key: str, old, new) -> None:
        self._policies = default_policies(self._telemetry.settings)
        config = self._telemetry.settings.errors.breaker
        for breaker in list(self._breakers.values()):
            breaker.failure_threshold, breaker.open_s = config.failure_threshold, config.open_s

    # --- dispatch -----------------------------------------------------------

    def register_handler(self, exception_type: type, handler: Callable[[BaseException], Any]) -> None:
        """Call ``handler(error)`` for errors of this type or a subclass; the
        most specific registration along the error's MRO wins."""
        if not (isinstance(exception_type, type) and issubclass(exception_type, BaseException)):
            raise TypeError(f"exception_type must be an exception class, got {exception_type!r}")
        self._handlers[exception_type] = handler

    def policy_for(self, error: BaseException) -> RetryPolicy:
        for cls in type(error).__mro__:
            if cls in self._policies:
                return self._policies[cls]
        return RetryPolicy(1, severity="warning")

    def handle(self, error: BaseException, *, strategy: str | None = None, attempts: int = 1,
               outcome: str = NOT_RETRIED) -> None:
        """Report one error that was not retried (or whose retries are over):
        its alert span, its counter, then the registered handler."""
        policy = self.policy_for(error)
        severity = "critical" if outcome == GAVE_UP else policy.severity
        with self._alert(error, strategy, severity) as alert:
            alert.record_exception(error)
            alert.set_attributes({names.ERROR_ATTEMPTS: attempts, names.ERROR_OUTCOME: outcome})
        self._count(error, strategy, outcome)
        self._dispatch(error)

    def _dispatch(self, error: BaseException) -> None:
        for cls in type(error).__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                try:
                    handler(error)
                except Exception:
                    _log.warning("handler for %s raised", cls.__name__, exc_info=True)
                return

    # --- circuit breakers -----------------------------------------------------

    def breaker(self, name: str = "broker") -> CircuitBreaker:
        with self._breakers_lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                config = self._telemetry.settings.errors.breaker
                breaker = CircuitBreaker(name, config.failure_threshold, config.open_s, on_change=self._breaker_changed)
                self._breakers[name] = breaker
            return breaker

    def _breaker_changed(self, name: str, old: str, new: str) -> None:
        attributes = {names.BREAKER_NAME: name, names.BREAKER_STATE: new, names.BREAKER_PREVIOUS_STATE: old}
        level = logging.WARNING if new == "open" else logging.INFO
        # A log event in the strategy's own log stream (not rqa_otel's
        # diagnostics): it belongs with the orders it held back.
        self._telemetry.get_logger(names.BREAKER_LOGGER).log(
            level, "circuit breaker %s: %s -> %s", name, old, new, extra=attributes
        )
        if new == "open":
            self._telemetry.alert(names.BREAKER_OPEN_ALERT, "critical", attributes=attributes,
                                  message=f"circuit breaker {name} opened: no calls for {self.breaker(name).open_s:g} s")

    def _breakers_closed(self) -> tuple[bool, str]:
        not_closed = sorted(f"{name} {breaker.state}" for name, breaker in list(self._breakers.items())
                            if breaker.state != "closed")
        return (False, "circuit breaker " + ", ".join(not_closed)) if not_closed else (True, "all closed")

    def _observe_breakers(self, options):
        from opentelemetry.metrics import Observation

        return [
            Observation(STATE_VALUES[breaker.state], {names.BREAKER_NAME: name})
            for name, breaker in list(self._breakers.items())
        ]

    # --- retries --------------------------------------------------------------

    def with_retry(self, strategy: str | None = None, breaker: str | None = "broker") -> Callable[[F], F]:
        """Decorate a sync or async function: retry its trading errors by
        policy, guard it with the named circuit breaker, report each handled
        error. ``breaker=None`` leaves it unguarded."""

        def decorate(function: F) -> F:
            if inspect.iscoroutinefunction(function):
                @functools.wraps(function)
                async def run_async(*args, **kwargs):
                    attempt = self._attempt(strategy, breaker)
                    while True:
                        attempt.before_call()
                        try:
                            result = await function(*args, **kwargs)
                        except Exception as error:
                            delay = attempt.failed(error)
                            await asyncio.sleep(delay)
                        else:
                            attempt.succeeded()
                            return result

                return run_async  # type: ignore[return-value]

            @functools.wraps(function)
            def run(*args, **kwargs):
                attempt = self._attempt(strategy, breaker)
                while True:
                    attempt.before_call()
                    try:
                        result = function(*args, **kwargs)
                    except Exception as error:
                        self._sleep(attempt.failed(error))
                    else:
                        attempt.succeeded()
                        return result

            return run  # type: ignore[return-value]

        return decorate

    def _attempt(self, strategy: str | None, breaker: str | None) -> "_Attempts":
        return _Attempts(self, strategy, self.breaker(breaker) if breaker else None)

    def _alert(self, error: BaseException, strategy: str | None, severity: str):
        strategy = strategy or getattr(error, "strategy", None)
        attributes = error.attributes() if isinstance(error, TradingError) else {names.ERROR_TYPE: type(error).__name__}
        alert_name = getattr(error, "alert_name", names.ALERT_TRADING_ERROR)
        return self._telemetry.alerts.open(alert_name, severity, strategy=strategy, message=str(error), attributes=attributes)

    def _count(self, error: BaseException, strategy: str | None, outcome: str) -> None:
        strategy = strategy or getattr(error, "strategy", None) or self._telemetry.strategy
        self._counter.add(
            1, {names.ERROR_TYPE: type(error).__name__, names.STRATEGY: str(strategy), names.ERROR_OUTCOME: outcome}
        )


class _Attempts:
    """One decorated call's attempts: the decisions shared by sync and async."""

    def __init__(self, handler: TradingErrorHandler, strategy: str | None, breaker: CircuitBreaker | None) -> None:
        self.handler = handler
        self.strategy = strategy
        self.breaker = breaker
        self.count = 0
        self.errors: list[BaseException] = []
        self.alert_context = None
        self.alert = None
        self.delays = None

    def before_call(self) -> None:
        if self.breaker is not None and not self.breaker.allow():
            refused = CircuitOpen(
                f"circuit breaker {self.breaker.name} is open; call not sent", strategy=self.strategy
            )
            if self.errors:
                refused.__cause__ = self.errors[-1]
            self._finish(refused, REFUSED)
            raise refused
        self.count += 1

    def failed(self, error: Exception) -> float:
        """The delay before the next try; raises ``error`` when there is none."""
        if self.breaker is not None and isinstance(error, BrokerConnection):
            self.breaker.record_failure()
        if not isinstance(error, TradingError):  # not ours to retry or report
            if self.alert is not None:
                self._finish(error, NOT_RETRIED)
            raise error
        self.errors.append(error)
        policy = self.handler.policy_for(error)
        if self.alert is None:
            self.alert_context = self.handler._alert(error, self.strategy, policy.severity)
            self.alert = self.alert_context.__enter__()
        if self.count >= policy.max_tries:
            outcome = GAVE_UP if policy.max_tries > 1 else NOT_RETRIED
            self._finish(error, outcome)
            raise error
        if self.delays is None:
            self.delays = policy.delays()
        delay = next(self.delays)
        self.alert.add_event(
            names.RETRY_EVENT,
            {
                names.ERROR_ATTEMPTS: self.count,
                names.ERROR_TYPE: type(error).__name__,
                names.ERROR_REASON: error.reason.value,
                names.RETRY_DELAY_S: round(delay, 3),
                names.ALERT_MESSAGE: str(error),
            },
        )
        return delay

    def succeeded(self) -> None:
        if self.breaker is not None:
            self.breaker.record_success()
        if self.errors:
            self._finish(self.errors[-1], RECOVERED)

    def _finish(self, error: BaseException, outcome: str) -> None:
        handler = self.handler
        if self.alert is None:  # not a trading error, or refused before any try
            policy = handler.policy_for(error)
            self.alert_context = handler._alert(error, self.strategy, policy.severity)
            self.alert = self.alert_context.__enter__()
        if outcome == GAVE_UP:
            self.alert.escalate("critical")
        if outcome in (GAVE_UP, NOT_RETRIED, REFUSED):
            self.alert.record_exception(error)
            if self.count > 1 and hasattr(error, "add_note"):
                error.add_note(f"rqa-otel: gave up after {self.count} attempts ({_summary(self.errors)})")
        self.alert.set_attributes({names.ERROR_ATTEMPTS: self.count, names.ERROR_OUTCOME: outcome})
        self.alert_context.__exit__(None, None, None)
        handler._count(error, self.strategy, outcome)
        if outcome != RECOVERED:
            handler._dispatch(error)


def _summary(errors: list[BaseException]) -> str:
    return "; ".join(f"{type(e).__name__}: {e}" for e in errors[-5:])


__all__ = [
    "BrokerConnection",
    "CircuitOpen",
    "DataLoadError",
    "InsufficientFunds",
    "OrderRejected",
    "PositionLimit",
    "ReasonCode",
    "RetryPolicy",
    "TradingError",
    "TradingErrorHandler",
]
