"""InfluxDB write throughput, one measurement per process:
`python bench/influx_bench.py MODE URL POINTS [RUN]`.

Both modes start from the same SDK data: ``MetricsData`` batches of 50,000
data points (25 instruments x 2,000 series, the SDK's default cardinality
limit), one batch per collection, timestamps one second apart, the same
attribute objects from one collection to the next as the SDK hands them.

- project: rqa-otel's InfluxDB metric exporter (InfluxEncoder ->
  Delivery -> InfluxV2Transport: gzip, /api/v2/write through influxdb-client)
- anchor: influxdb-client's own batching WriteApi fed with ``Point`` objects
  built from the same data points (batch_size 5,000)

- ceiling: the server alone (payloads encoded and gzipped before the clock
  starts): the most any one-request-at-a-time client could reach

Prints {"points_per_s", "points", "written", "from_ns", "to_ns"}. A first
collection is written before the clock starts (the project builds its
per-series caches there, as a long run does once); the clock stops when
the last write has been answered (the anchor: when ``close()`` has flushed
its batches). Run number RUN writes its timestamps RUN x 100 s after the
first run's, so that bench/run.py can count what the server stored of each
run (``written`` points between ``from_ns`` and ``to_ns``).
"""

from __future__ import annotations

import gc
import json
import sys
import time

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

SERIES = 2_000
START_NS = 1_704_067_200_000_000_000
RESOURCE = Resource({"service.name": "bench", "rqa.strategy": "bench", "host.name": "bench-host"})
SCOPE = InstrumentationScope("rqa_otel", "0.1.0")
ATTRIBUTES = [
    {"rqa.strategy": "bench", "rqa.stock": f"{n:06d}.SZ", "rqa.trade.side": "buy" if n % 2 else "sell"}
    for n in range(SERIES)
]
# 15 counters and 10 gauges: one collection of a strategy trading 2,000 symbols.
INSTRUMENTS = tuple((f"bench.counter.{n}", True) for n in range(15)) + tuple((f"bench.gauge.{n}", False) for n in range(10))
PER_BATCH = SERIES * len(INSTRUMENTS)


def batches(points: int, start_ns: int = START_NS) -> list[MetricsData]:
    result = []
    for collection in range(max(1, points // PER_BATCH)):
        ts = start_ns + collection * 1_000_000_000
        metrics = []
        for name, monotonic in INSTRUMENTS:
            data_points = [
                NumberDataPoint(attributes, START_NS, ts, collection * 7 + n if monotonic else 1000.5 + n, None)
                for n, attributes in enumerate(ATTRIBUTES)
            ]
            data = (
                Sum(data_points, AggregationTemporality.CUMULATIVE, True)
                if monotonic else Gauge(data_points)
            )
            metrics.append(Metric(name, "", "", data))
        result.append(MetricsData([ResourceMetrics(RESOURCE, [ScopeMetrics(SCOPE, metrics, "")], "")]))
    return result


def project(url: str, data: list[MetricsData]) -> float:
    from rqa_otel.export.delivery import Delivery
    from rqa_otel.export.influx.exporter import InfluxV2Transport, sdk_exporter

    transport = InfluxV2Transport(url, org="bench", bucket="bench")
    exporter = sdk_exporter("metrics", transport, sender=Delivery("metrics", transport, budget_s=30.0))
    exporter.export(data[0])  # untimed: the first collection builds the per-series caches, as in any long run
    started = time.perf_counter()
    for batch in data[1:]:
        exporter.export(batch)
    elapsed = time.perf_counter() - started
    exporter.shutdown()
    return elapsed


def anchor(url: str, data: list[MetricsData]) -> float:
    from influxdb_client import InfluxDBClient, WriteOptions

    client = InfluxDBClient(url=url, token="", org="bench")
    options = WriteOptions(batch_size=5_000, flush_interval=1_000)
    warm_up = client.write_api(write_options=options)
    _write_points(warm_up, data[0])
    warm_up.close()  # untimed first collection, as for the project; close() waits for it
    started = time.perf_counter()
    write_api = client.write_api(write_options=options)
    for batch in data[1:]:
        _write_points(write_api, batch)
    write_api.close()
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


def _write_points(write_api, batch: MetricsData) -> None:
    """One collection as influxdb-client Point objects (the same tags and fields)."""
    from influxdb_client import Point

    scope_metrics = batch.resource_metrics[0].scope_metrics[0]
    resource_tags = dict(RESOURCE.attributes)
    points = []
    for metric in scope_metrics.metrics:
        field = "counter" if isinstance(metric.data, Sum) else "gauge"
        for data_point in metric.data.data_points:
            point = Point(metric.name).tag("otel.library.name", SCOPE.name).tag("otel.library.version", SCOPE.version)
            for key, value in resource_tags.items():
                point.tag(key, value)
            for key, value in data_point.attributes.items():
                point.tag(key, value)
            point.field("start_time_unix_nano", data_point.start_time_unix_nano).field(field, data_point.value)
            points.append(point.time(data_point.time_unix_nano))
    write_api.write(bucket="bench", org="bench", record=points)


def ceiling(url: str, data: list[MetricsData]) -> float:
    """The server alone: the project's payloads encoded and gzipped before
    the clock starts, then posted one after another with bare urllib3. No
    client sending one request at a time can beat this."""
    import urllib3

    from rqa_otel.export.influx.exporter import InfluxEncoder, gzip_body

    encoder = InfluxEncoder()
    bodies = [gzip_body(payload.body) for batch in data[1:] for payload in encoder.metrics(batch)]
    pool = urllib3.PoolManager(headers={"Content-Encoding": "gzip"})
    started = time.perf_counter()
    for body in bodies:
        pool.request("POST", f"{url}/api/v2/write?org=bench&bucket=bench&precision=ns", body=body)
    return time.perf_counter() - started


if __name__ == "__main__":
    mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start_ns = START_NS + (int(sys.argv[4]) if len(sys.argv) > 4 else 0) * 100_000_000_000
    data = batches(count + PER_BATCH, start_ns)  # the first collection is written untimed
    # A real process holds one collection at a time; these are all built up
    # front, so keep the collector from scanning them again and again.
    gc.collect()
    gc.freeze()
    total = (len(data) - 1) * PER_BATCH
    elapsed = {"project": project, "anchor": anchor, "ceiling": ceiling}[mode](url, data)
    written = len(data) * PER_BATCH if mode != "ceiling" else total  # the ceiling posts no warm-up
    last_ns = data[-1].resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0].time_unix_nano
    print(json.dumps({"points_per_s": total / elapsed, "points": total, "written": written, "from_ns": start_ns, "to_ns": last_ns}))
