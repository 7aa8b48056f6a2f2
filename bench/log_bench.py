"""Logging benchmarks, one measurement per process: `python bench/log_bench.py MODE ...`.

Each mode prints one JSON object. bench/run.py starts these in fresh
processes, interleaving project and anchor runs, so no run inherits another's
handlers, threads or warm caches.

Modes:
- throughput-project ENDPOINT N   rqa-otel's pipeline, OTLP/HTTP to rotel
- throughput-anchor ENDPOINT N    the stock SDK path: LoggingHandler +
                                  BatchLogRecordProcessor + OTLP/HTTP
- hot-project DIR N               per-call µs in the calling thread, rqa-otel (file exporter)
- hot-anchor DIR N                the same for stdlib logging to a file with the design's QuantFilter
- sampled-project DIR N           offered DEBUG/INFO calls/s with a 1% sampling rule
- sampled-anchor DIR N            the same calls through the stock SDK path (no sampling there)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

EXTRA = {"stock": "600519.SH", "strategy": "bench", "signal": "BUY"}


def _rqa(overrides: dict):
    import rqa_otel

    return rqa_otel.setup(
        strategy="bench",
        overrides={"export.traces": "none", "export.metrics": "none", **overrides},
        set_global=False,
    )


def _stock_sdk(endpoint: str):
    """The OTel SDK's stock log path, as its docs set it up."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint)))
    return provider, LoggingHandler(logger_provider=provider)


def _logger(handler: logging.Handler, name: str = "bench") -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def _spin(logger: logging.Logger, count: int, level: int = logging.INFO) -> float:
    started = time.perf_counter()
    log = logger.log
    for i in range(count):
        log(level, "order %d filled at %.2f", i, 1688.5, extra=EXTRA)
    return time.perf_counter() - started


def throughput_project(endpoint: str, count: int) -> dict:
    telemetry = _rqa(
        {
            "export.logs": "otlp",
            "export.otlp.endpoint": endpoint,
            "export.otlp.protocol": "http/protobuf",
            "export.shutdown_timeout_s": 60,
        }
    )
    logger = _logger(telemetry.logging_handler)
    started = time.perf_counter()
    _spin(logger, count)
    calls_s = time.perf_counter() - started
    telemetry.shutdown()
    return {"calls_s": calls_s, "sent_s": time.perf_counter() - started, "drops": sum(telemetry.log_drops().values())}


def throughput_anchor(endpoint: str, count: int) -> dict:
    provider, handler = _stock_sdk(endpoint.rstrip("/") + "/v1/logs")
    logger = _logger(handler)
    started = time.perf_counter()
    _spin(logger, count)
    calls_s = time.perf_counter() - started
    provider.shutdown()
    return {"calls_s": calls_s, "sent_s": time.perf_counter() - started}


def _per_call_us(logger: logging.Logger, count: int) -> dict:
    clock = time.perf_counter_ns
    samples = []
    for i in range(count):
        started = clock()
        logger.info("order %d filled at %.2f", i, 1688.5, extra=EXTRA)
        samples.append(clock() - started)
    samples.sort()
    return {"median_us": samples[len(samples) // 2] / 1000, "p99_us": samples[int(len(samples) * 0.99)] / 1000}


def hot_project(directory: str, count: int) -> dict:
    telemetry = _rqa({"export.logs": "file", "export.directory": directory})
    result = _per_call_us(_logger(telemetry.logging_handler), count)
    telemetry.shutdown()
    return result


class QuantFilter(logging.Filter):
    """The RQA2025 design's QuantFilter, as written there."""

    def filter(self, record):
        record.stock = getattr(record, "stock", "N/A")
        record.strategy = getattr(record, "strategy", "GLOBAL")
        record.signal = getattr(record, "signal", "NONE")
        return True


def hot_anchor(directory: str, count: int) -> dict:
    from logging.handlers import RotatingFileHandler

    handler = RotatingFileHandler(os.path.join(directory, "anchor.log"), maxBytes=100 * 2**20, backupCount=5)
    handler.addFilter(QuantFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(strategy)s %(stock)s %(signal)s] %(message)s")
    )
    result = _per_call_us(_logger(handler), count)
    handler.close()
    return result


SAMPLING_RULE = [{"logger": "*", "level": "INFO", "ratio": 0.01}]


def sampled_project(directory: str, count: int) -> dict:
    telemetry = _rqa(
        {"export.logs": "file", "export.directory": directory, "logging.level": "DEBUG", "logging.sampling.rules": SAMPLING_RULE}
    )
    logger = _logger(telemetry.logging_handler)
    elapsed = _spin(logger, count // 2, logging.DEBUG) + _spin(logger, count // 2, logging.INFO)
    telemetry.shutdown()
    return {"calls_per_s": count / elapsed}


def sampled_anchor(endpoint: str, count: int) -> dict:
    provider, handler = _stock_sdk(endpoint.rstrip("/") + "/v1/logs")
    logger = _logger(handler)
    elapsed = _spin(logger, count // 2, logging.DEBUG) + _spin(logger, count // 2, logging.INFO)
    provider.shutdown()
    return {"calls_per_s": count / elapsed}


MODES = {
    "throughput-project": throughput_project,
    "throughput-anchor": throughput_anchor,
    "hot-project": hot_project,
    "hot-anchor": hot_anchor,
    "sampled-project": sampled_project,
    "sampled-anchor": sampled_anchor,
}

if __name__ == "__main__":
    mode, target, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(MODES[mode](target, count)))
