"""InfluxDB export: the Collector influxdb exporter's conversion (``otel2influx``),
the in-process exporters and transports (``exporter``, ``sdk_points``), and the
``rqa-otel lp`` and ``rqa-otel replay`` commands."""
