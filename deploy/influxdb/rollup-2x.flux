// Rollups for InfluxDB 2.x: the tasks' form of the continuous queries of
// retention-1x.iql (docs/capacity.md). docker-compose.yml's influxdb-init
// creates the bucket rqa_rollup_5m (2 years), maps it for InfluxQL as
// rqa/rollup_5m (what grafana/dashboards/long-range.json reads) and creates
// this task; by hand:
//   influx bucket create --name rqa_rollup_5m --retention 730d
//   influx task create --file deploy/influxdb/rollup-2x.flux
// Raw points keep the bucket rqa's retention (INFLUXDB_RETENTION, 30d).
// Every 5 minutes the last 15 are recomputed, so late points (a spool
// replaying after an outage) are counted; `to` overwrites the same points.

option task = {name: "rqa_rollup_5m", every: 5m, offset: 30s}

raw = from(bucket: "rqa") |> range(start: -15m)

// Counters are written as increments (the series budget): their sum.
raw
    |> filter(fn: (r) => r._measurement =~ /^rqa\.(trades|trade\.volume|trade\.notional|trading_errors|alerts|quota\.breaches|log\.records\.dropped|log\.records\.suppressed|export\.spool\.dropped|export\.spool\.replayed|config\.reloads)$/ and r._field == "gauge")
    |> aggregateWindow(every: 5m, fn: sum, createEmpty: false)
    |> to(bucket: "rqa_rollup_5m")

// Histograms: the increments of count and sum.
raw
    |> filter(fn: (r) => r._measurement == "rqa.trade.notional_per_trade" and (r._field == "count" or r._field == "sum"))
    |> aggregateWindow(every: 5m, fn: sum, createEmpty: false)
    |> to(bucket: "rqa_rollup_5m")

// State gauges: the last value of each 5 minutes.
raw
    |> filter(fn: (r) => r._measurement =~ /^rqa\.(portfolio\.(value|cash|positions|drawdown|return)|circuit_breaker\.state|config\.last_reload_successful|strategy\.quota\.(state|limit))$/ and r._field == "gauge")
    |> aggregateWindow(every: 5m, fn: last, createEmpty: false)
    |> to(bucket: "rqa_rollup_5m")

// Usage gauges: the peak of each 5 minutes.
raw
    |> filter(fn: (r) => r._measurement =~ /^rqa\.(strategy\.(cpu\.usage|memory\.usage|gpu\.memory\.usage|quota\.utilization|quota\.usage|process\.count)|export\.spool\.size)$/ and r._field == "gauge")
    |> aggregateWindow(every: 5m, fn: max, createEmpty: false)
    |> to(bucket: "rqa_rollup_5m")
