"""Deprecated path, kept for code written against it (docs/influxdb.md once
showed it): the InfluxDB exporters live in ``rqa_otel.export.influx.exporter``."""

from rqa_otel.export.influx.exporter import (
    InfluxEncoder,
    InfluxSchema,
    InfluxV1Transport,
    InfluxV2Transport,
    influx_schema,
    influx_transport,
    sdk_exporter,
)

__all__ = [
    "InfluxEncoder",
    "InfluxSchema",
    "InfluxV1Transport",
    "InfluxV2Transport",
    "influx_schema",
    "influx_transport",
    "sdk_exporter",
]
