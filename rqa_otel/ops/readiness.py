"""Readiness checks: what /ready asks each capability."""

from __future__ import annotations

from typing import Any, Callable

Check = Callable[[], "tuple[bool, str]"]
"""A readiness check: () -> (ok, reason); the reason never holds a secret."""


def exporter_check(destination: str, exporter: Any) -> Check:
    """Ready while ``exporter`` (an accounting exporter) is not failing."""

    def check() -> tuple[bool, str]:
        counts = exporter.counts
        if exporter.failing:
            return False, f"exporting to {destination} is failing ({counts.failed} lost so far)"
        return True, f"{counts.exported} exported to {destination}"

    return check
