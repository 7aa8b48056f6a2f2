"""LogManager: the design's root-logger setup, with QuantFilter on every handler.

    LogManager(log_dir="logs").setup_root_logger(max_bytes=10 * 2**20, backup_count=5)
    logging.getLogger("strategy").info("filled", extra={"stock": "600519.SH"})
    # console and logs/rqa2025.log: "... [dual_ma] 600519.SH NONE filled"

rqa-otel's own pipeline is separate: ``rqa_otel.setup()`` adds its handler
to the root logger (records leave as OTLP log records with ``rqa.stock``,
``rqa.strategy`` and ``rqa.signal``); the handlers here are the design's
console and rotating file, for people reading logs on the machine.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from rqa_otel.logs.quant_filter import QuantFilter

DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(strategy)s] %(stock)s %(signal)s %(message)s"


class LogManager:
    def __init__(
        self,
        log_dir: str | os.PathLike[str] = "logs",
        log_file: str = "rqa2025.log",
        level: int | str = logging.INFO,
        fmt: str = DEFAULT_FORMAT,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.log_file = log_file
        self.level = level
        self.formatter = logging.Formatter(fmt)
        self.quant_filter = QuantFilter()
        self.handlers: list[logging.Handler] = []
        self._previous_level: int | None = None

    def setup_root_logger(self, max_bytes: int = 10 * 1024 * 1024, backup_count: int = 5) -> None:
        """The root logger at ``level`` with a console handler and a file
        handler rotating at ``max_bytes`` and keeping ``backup_count``
        backups, both with QuantFilter. Calling it again replaces the
        handlers this manager added (never anyone else's)."""
        for name, value, minimum in (("max_bytes", max_bytes, 0), ("backup_count", backup_count, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} = {value!r}: expected an integer >= {minimum}")
        root = logging.getLogger()
        if self._previous_level is None:
            self._previous_level = root.level
        root.setLevel(self.level)
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        console = logging.StreamHandler()
        file = logging.handlers.RotatingFileHandler(
            self.log_dir / self.log_file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
        )
        for handler in (console, file):
            handler.addFilter(self.quant_filter)
            handler.setFormatter(self.formatter)
            root.addHandler(handler)
        self.handlers = [console, file]

    def close(self) -> None:
        """Remove and close the handlers it added; the root level as it was."""
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()
        self.handlers = []
        if self._previous_level is not None:
            root.setLevel(self._previous_level)
            self._previous_level = None
