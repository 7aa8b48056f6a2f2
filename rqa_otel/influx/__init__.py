"""InfluxDB export: OTLP to line protocol as the Collector's ``influxdb`` exporter writes it."""
