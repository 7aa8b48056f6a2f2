"""InfluxDB export: the Collector influxdb exporter's conversion
(``otel2influx``: OTel data to line protocol, the same schema), the
in-process exporters and transports (``exporter``) and the SDK bridge
(``sdk_points``)."""
