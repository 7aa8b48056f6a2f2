"""rqa-otel view's first page, one measurement per process:
`python bench/view_bench.py MODE DIR`.

- generate: a telemetry directory written directly in bulk (no telemetry
  pipeline, seconds instead of minutes): a journal of 1,000,000 trades of
  one run (50 symbols, 100,000 portfolio snapshots) through trades.db's own
  schema, 1,000,000 signal log records of that run in logs.jsonl (batches
  of 500 a line, the file exporter's layout), and its run span with 200
  alert spans in traces.jsonl
- project: a fresh ViewServer on DIR; the time of GET /run/<id> (the first
  page: summary, equity, drawdown, cash and positions charts, the first page
  of trades, signals, trace, alerts and the first page of logs), then the
  process's peak RSS once the background reader has read every file
- anchor: json.loads line by line over the same logs.jsonl
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import sys
import time
import urllib.request

RUN_ID = "bench0000run0000000000000000000a"
TRACE_ID = "c98ab7d3b1868a3623f6b99fa9de0f6a"
SPAN_ID = "01e598e9e50fdbd2"
TRADES = 1_000_000
RECORDS = 1_000_000
SNAPSHOTS = 100_000
PER_LINE = 500
START_NS = 1_704_067_200 * 10**9
SYMBOLS = [f"{n:06d}.SZ" for n in range(50)]


def generate(directory: str) -> dict:
    from rqa_otel.trading.journal import SCHEMA

    os.makedirs(directory, exist_ok=True)
    started = time.perf_counter()
    db = sqlite3.connect(os.path.join(directory, "trades.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    with db:
        db.execute("INSERT INTO runs (id, run_id) VALUES (1, ?)", (RUN_ID,))
        series = [(i + 1, "bench", symbol, action) for i, (symbol, action) in
                  enumerate((s, a) for s in SYMBOLS for a in ("buy", "sell"))]
        db.executemany("INSERT INTO series (id, strategy, symbol, action) VALUES (?, ?, ?, ?)", series)
        bar_ns = 60 * 10**9
        db.executemany(
            "INSERT INTO trades (run, series, price, quantity, time_ns) VALUES (1, ?, ?, 100, ?)",
            ((i % 100 + 1, 10.0 + i % 7, START_NS + (i // 10) * bar_ns) for i in range(TRADES)),
        )
        db.executemany(
            "INSERT INTO portfolio (run_id, strategy, value, cash, positions, time_ns) VALUES (?, 'bench', ?, ?, ?, ?)",
            ((RUN_ID, 1e6 + (i % 977) * 100.0, 5e5, '{"000001.SZ": 100.0}', START_NS + i * bar_ns)
             for i in range(SNAPSHOTS)),
        )
    db.close()
    record = ('{"timeUnixNano":"%d","observedTimeUnixNano":"%d","severityNumber":9,"severityText":"INFO",'
              '"body":{"stringValue":"%s %s close=%.2f"},"attributes":[{"key":"rqa.strategy","value":{"stringValue":"bench"}},'
              '{"key":"rqa.stock","value":{"stringValue":"%s"}},{"key":"rqa.signal","value":{"stringValue":"%s"}}],'
              '"flags":1,"traceId":"' + TRACE_ID + '","spanId":"' + SPAN_ID + '"}')
    head = ('{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"bench"}}]},'
            '"scopeLogs":[{"scope":{"name":"rqa.bench.signals"},"logRecords":[')
    signals = ("BUY", "SELL", "HOLD")
    with open(os.path.join(directory, "logs.jsonl"), "w") as out:
        for first in range(0, RECORDS, PER_LINE):
            records = ",".join(
                record % (START_NS + n, START_NS + n, signals[n % 3], SYMBOLS[n % 50], 10.0 + n % 7,
                          SYMBOLS[n % 50], signals[n % 3])
                for n in range(first, first + PER_LINE)
            )
            out.write(head + records + "]}]}]}\n")

    def attribute(key, value):
        return {"key": key, "value": {"stringValue": value}}

    spans = [{"traceId": TRACE_ID, "spanId": SPAN_ID, "name": "rqa.backtest", "kind": 1,
              "startTimeUnixNano": str(START_NS), "endTimeUnixNano": str(START_NS + 10**10),
              "attributes": [attribute("rqa.run.id", RUN_ID), attribute("rqa.strategy", "bench")]}]
    spans += [{"traceId": TRACE_ID, "spanId": f"{i + 1:016x}", "parentSpanId": SPAN_ID, "name": "rqa.alert", "kind": 1,
               "startTimeUnixNano": str(START_NS + i * 10**7), "endTimeUnixNano": str(START_NS + i * 10**7 + 10**5),
               "attributes": [attribute("alert.name", "order_rejected"), attribute("alert.severity", "warning")]}
              for i in range(200)]
    with open(os.path.join(directory, "traces.jsonl"), "w") as out:
        out.write(json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {}, "spans": spans}]}]}) + "\n")
    return {"generate_s": time.perf_counter() - started,
            "logs_mb": os.path.getsize(os.path.join(directory, "logs.jsonl")) / 2**20}


def project(directory: str) -> dict:
    from rqa_otel.view import ViewServer

    server = ViewServer(directory).start()
    # The user opens the run page at once: the run's spans have been read,
    # the million log records are being read in the background meanwhile.
    assert server.wait_until_read(("traces.jsonl",))
    started = time.perf_counter()
    with urllib.request.urlopen(f"{server.url}/run/{RUN_ID}") as response:
        html = response.read().decode()
    first_page_s = time.perf_counter() - started
    assert 'id="trade-count">1,000,000<' in html, "the first page lacks the run's trade count"
    assert html.count("<tr>") >= 50
    assert server.wait_until_read(timeout_s=600)
    indexed_s = time.perf_counter() - started
    with urllib.request.urlopen(f"{server.url}/run/{RUN_ID}") as response:
        html = response.read().decode()
    assert "<td class=n>20,000</td>" in html, "signals per stock (20,000 records each) once every record is read"
    server.close()
    return {"first_page_s": first_page_s, "all_logs_read_s": indexed_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def anchor(directory: str) -> dict:
    started = time.perf_counter()
    records = 0
    with open(os.path.join(directory, "logs.jsonl"), "rb") as lines:
        for line in lines:
            request = json.loads(line)
            records += len(request["resourceLogs"][0]["scopeLogs"][0]["logRecords"])
    assert records == RECORDS
    return {"anchor_s": time.perf_counter() - started}


if __name__ == "__main__":
    mode, directory = sys.argv[1], sys.argv[2]
    print(json.dumps({"generate": generate, "project": project, "anchor": anchor}[mode](directory)))
