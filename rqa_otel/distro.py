"""Entry points for ``opentelemetry-instrument``.

With ``OTEL_PYTHON_DISTRO=rqa`` and ``OTEL_PYTHON_CONFIGURATOR=rqa``,
``opentelemetry-instrument python app.py`` gives the same setup as
``rqa-otel run -- python app.py``.
"""

from __future__ import annotations

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _BaseConfigurator


class RqaDistro(BaseDistro):
    def _configure(self, **kwargs) -> None:
        """Nothing to set: settings are read by the configurator's setup()."""


class RqaConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs) -> None:
        from rqa_otel.autostart import start

        start()
