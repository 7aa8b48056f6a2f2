"""The RQA2025 design's own names and signatures, on rqa-otel's machinery.

Code written against the design (../shared/seed/) runs with only its
imports changed:

    from rqa_otel.rqa2025 import (
        ConfigManager, QuantFilter, LogManager, ResourceManager, GPUManager,
        BacktestMonitor, TradingError, TradingErrorHandler, RetryHandler,
        OrderRejectedError, InsufficientFundsError, PositionLimitError, BrokerConnectionError,
    )

Where the design's name differs from the project's, docs/migration.md has
the table: design name -> project name -> differences, and why. Classes that
report (BacktestMonitor, TradingErrorHandler, ResourceManager) use the
process's telemetry (``rqa_otel.setup()``), setting it up on first use when
there is none.
"""

from rqa_otel.logs.quant_filter import QuantFilter
from rqa_otel.resources.gpu_manager import GPUManager
from rqa_otel.rqa2025.config import ConfigManager
from rqa_otel.rqa2025.logs import LogManager
from rqa_otel.rqa2025.resources import ResourceManager
from rqa_otel.rqa2025.trading import (
    BacktestMonitor,
    BrokerConnectionError,
    InsufficientFundsError,
    OrderRejectedError,
    PositionLimitError,
    TradingError,
    TradingErrorHandler,
)
from rqa_otel.trading.retry import RetryHandler

__all__ = [
    "BacktestMonitor",
    "BrokerConnectionError",
    "ConfigManager",
    "GPUManager",
    "InsufficientFundsError",
    "LogManager",
    "OrderRejectedError",
    "PositionLimitError",
    "QuantFilter",
    "ResourceManager",
    "RetryHandler",
    "TradingError",
    "TradingErrorHandler",
]
