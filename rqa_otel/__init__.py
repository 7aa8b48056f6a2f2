"""rqa-otel: the RQA2025 infrastructure layer as OpenTelemetry telemetry.

    import rqa_otel
    telemetry = rqa_otel.setup(strategy="mean_reversion")
    with telemetry.tracer.start_as_current_span("rebalance"):
        telemetry.get_logger().info("rebalanced")
    telemetry.alert("drawdown_limit", "critical", message="drawdown 12% > 10%")
"""

from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import Settings, SettingsError
from rqa_otel.quant import quant_context
from rqa_otel.telemetry import VERSION as __version__
from rqa_otel.telemetry import Telemetry, current, setup


def instrument_backtrader(telemetry: Telemetry | None = None) -> bool:
    """Report every backtrader ``Cerebro.run()`` from now on: a run span,
    orders, fills and broker value (rqa_otel/instrumentation/backtrader.py).
    False when backtrader is not installed."""
    # Here, not at the top: `import rqa_otel` should not load the
    # instrumentation framework for programs that never call this.
    from rqa_otel.instrumentation.backtrader import instrument_backtrader as instrument

    return instrument(telemetry)


__all__ = [
    "Settings",
    "SettingsError",
    "Telemetry",
    "current",
    "instrument_backtrader",
    "load_settings",
    "quant_context",
    "setup",
    "__version__",
]
