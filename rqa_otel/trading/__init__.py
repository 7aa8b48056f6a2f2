"""Trading as telemetry: the backtest monitor (trades, portfolio, journal),
the trading-error taxonomy with retries and a circuit breaker.

    from rqa_otel.trading import BacktestMonitor, TradingErrorHandler
"""

from rqa_otel.trading.circuit_breaker import CircuitBreaker
from rqa_otel.trading.errors import (
    BrokerConnection,
    CircuitOpen,
    DataLoadError,
    InsufficientFunds,
    OrderRejected,
    PositionLimit,
    ReasonCode,
    RetryPolicy,
    TradingError,
    TradingErrorHandler,
)
from rqa_otel.trading.monitor import BacktestMonitor, Trade, history_query

__all__ = [
    "BacktestMonitor",
    "BrokerConnection",
    "CircuitBreaker",
    "CircuitOpen",
    "DataLoadError",
    "InsufficientFunds",
    "OrderRejected",
    "PositionLimit",
    "ReasonCode",
    "RetryPolicy",
    "Trade",
    "TradingError",
    "TradingErrorHandler",
    "history_query",
]
