"""Entry points for ``opentelemetry-instrument``.

With ``OTEL_PYTHON_DISTRO=rqa`` and ``OTEL_PYTHON_CONFIGURATOR=rqa``,
``opentelemetry-instrument python app.py`` gives the same setup as
``rqa-otel run -- python app.py``.
"""

from __future__ import annotations

import os

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
from opentelemetry.sdk._configuration import _BaseConfigurator


class RqaDistro(BaseDistro):
    def _configure(self, **kwargs) -> None:
        """Keep the `logging` instrumentor out: setup() already bridges stdlib
        logging, and a second handler would export every record twice."""
        disabled = [name.strip() for name in os.environ.get(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, "").split(",")]
        if "logging" not in disabled:
            os.environ[OTEL_PYTHON_DISABLED_INSTRUMENTATIONS] = ",".join(filter(None, [*disabled, "logging"]))


class RqaConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs) -> None:
        # Here, not at the top: opentelemetry-instrument loads this module to
        # find the distro too, and only a chosen configurator sets telemetry up.
        from rqa_otel.autostart import start

        start()
