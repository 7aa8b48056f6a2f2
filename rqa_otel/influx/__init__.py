"""Deprecated path, kept for code written against it: InfluxDB export lives
in ``rqa_otel.export.influx`` (the ``otel2influx`` conversion and the
in-process exporters); ``rqa_otel.influx.exporter`` still re-exports the
exporters that docs/influxdb.md shows."""
