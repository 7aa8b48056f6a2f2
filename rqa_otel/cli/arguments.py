"""Argument types and the one-line error every command prints."""

from __future__ import annotations

import argparse
import sys


def port_or_off(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port, 0 (off) to 65535, got {text}")
    return int(text)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def port_or_auto(text: str) -> int | str:
    if text in ("auto", "off"):
        return text
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1..65535, auto or off, got {text}")
    return port


def fail(message: str, code: int = 2) -> int:
    """One line on stderr, never a traceback; ``code`` is the exit status."""
    print(f"rqa-otel: {message}", file=sys.stderr)
    return code
