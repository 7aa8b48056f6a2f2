"""Deprecated path, kept for code written against it: the trading errors
live in ``rqa_otel.trading.errors`` (also exported by ``rqa_otel.trading``)."""

from rqa_otel.trading.errors import *  # noqa: F401,F403
from rqa_otel.trading.errors import __all__  # noqa: F401
