"""Deprecated path, kept for code written against it: the circuit breaker
lives in ``rqa_otel.trading.circuit_breaker``."""

from rqa_otel.trading.circuit_breaker import STATE_VALUES, CircuitBreaker

__all__ = ["STATE_VALUES", "CircuitBreaker"]
