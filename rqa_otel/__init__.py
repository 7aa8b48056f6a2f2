"""rqa-otel: the RQA2025 infrastructure layer as OpenTelemetry telemetry.

    import rqa_otel
    telemetry = rqa_otel.setup(strategy="mean_reversion")
    with telemetry.tracer.start_as_current_span("rebalance"):
        telemetry.get_logger().info("rebalanced")
    telemetry.alert("drawdown_limit", "critical", message="drawdown 12% > 10%")
"""

# typing.TYPE_CHECKING without importing typing: `rqa-otel run` imports
# this package to launch a program, and typing would be a tenth of that.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from rqa_otel.config.loader import load_settings
    from rqa_otel.config.model import Settings, SettingsError
    from rqa_otel.quant import quant_context
    from rqa_otel.telemetry import Telemetry, current, setup

# Loaded on first use (PEP 562): `rqa-otel run` and a program that imports
# one submodule do not pay for the whole pipeline (OTLP, protobuf, SDK).
_LAZY = {
    "load_settings": ("rqa_otel.config.loader", "load_settings"),
    "Settings": ("rqa_otel.config.model", "Settings"),
    "SettingsError": ("rqa_otel.config.model", "SettingsError"),
    "quant_context": ("rqa_otel.quant", "quant_context"),
    "Telemetry": ("rqa_otel.telemetry", "Telemetry"),
    "current": ("rqa_otel.telemetry", "current"),
    "setup": ("rqa_otel.telemetry", "setup"),
    "__version__": ("rqa_otel.telemetry", "VERSION"),
}


def __getattr__(name: str) -> "Any":
    found = _LAZY.get(name)
    if found is None:
        raise AttributeError(f"module 'rqa_otel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(found[0]), found[1])
    globals()[name] = value
    return value


def instrument_backtrader(telemetry: "Telemetry | None" = None) -> bool:
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
