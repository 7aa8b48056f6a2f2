"""rqa-otel view / report / export on the command line, and the view's bad
input: corrupt and unfinished JSONL lines, a journal being written, a taken
port, a non-loopback address, an unknown run."""

from __future__ import annotations

import csv
import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rqa_otel.trading.journal import TradeJournal
from rqa_otel.view import ViewServer
from rqa_otel.view.files import TelemetryFiles

CLI = [sys.executable, "-m", "rqa_otel.cli"]
DAY_NS = 86_400 * 10**9
START_NS = 1_704_067_200 * 10**9  # 2024-01-01


def cli(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *arguments], capture_output=True, text=True, timeout=timeout)


def write_run(directory: Path, run_id: str = "run-a", trades: int = 120) -> TradeJournal:
    journal = TradeJournal(directory / "trades.db")
    for i in range(trades):
        journal.append_trade((run_id, "s1", "600000.SH" if i % 2 else "000001.SZ", "buy" if i % 3 else "sell",
                              10.0 + i % 5, 100.0, START_NS + i * DAY_NS))
    for i, value in enumerate((1_000_000.0, 1_050_000.0, 945_000.0, 1_100_000.0)):
        journal.append_snapshot((run_id, "s1", value, value / 2, json.dumps({"600000.SH": i}), START_NS + i * 30 * DAY_NS))
    assert journal.flush()
    return journal


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_export_writes_every_trade_and_the_equity_series(tmp_path):
    write_run(tmp_path).close()
    completed = cli("export", "run-a", "--format", "csv", "-o", str(tmp_path / "out"), "--dir", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    with open(tmp_path / "out" / "trades.csv") as f:
        trades = list(csv.DictReader(f))
    with open(tmp_path / "out" / "equity.csv") as f:
        equity = list(csv.DictReader(f))
    assert len(trades) == 120 and trades[0]["time"].startswith("2024-01-01") and trades[0]["side"] == "sell"
    assert [float(row["value"]) for row in equity] == [1_000_000.0, 1_050_000.0, 945_000.0, 1_100_000.0]
    assert float(equity[2]["drawdown"]) == pytest.approx(0.1)  # 945,000 is 10 % below the 1,050,000 peak


def test_export_and_report_name_what_is_wrong_in_one_line(tmp_path):
    write_run(tmp_path).close()
    for arguments, expected in (
        (("export", "nope", "--dir", str(tmp_path)), "run id 'nope' not found"),
        (("export", "run-a", "--format", "xlsx", "--dir", str(tmp_path)), "format 'xlsx': expected one of csv, parquet"),
        (("report", "run-a", "-o", "x.html", "--dir", str(tmp_path / "missing")), "does not exist"),
        (("report", "nope", "-o", str(tmp_path / "x.html"), "--dir", str(tmp_path)), "run id 'nope' not found"),
    ):
        completed = cli(*arguments)
        assert completed.returncode != 0 and completed.stderr.count("\n") == 1, completed.stderr
        assert expected in completed.stderr and "Traceback" not in completed.stderr
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        completed = cli("export", "run-a", "--format", "parquet", "--dir", str(tmp_path), "-o", str(tmp_path / "p"))
        assert completed.returncode != 0 and "needs pyarrow" in completed.stderr
        assert not (tmp_path / "p" / "trades.parquet").exists()


def test_report_cli_writes_the_file(tmp_path):
    write_run(tmp_path).close()
    completed = cli("report", "run-", "-o", str(tmp_path / "r.html"), "--dir", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    html = (tmp_path / "r.html").read_text()
    assert 'id="trade-count">120<' in html and 'id="final-value">1,100,000.00<' in html
    assert 'id="max-drawdown">10.00%<' in html


@pytest.mark.parametrize("block", [1 << 20, 7], ids=["lines-within-a-block", "lines-over-many-blocks"])
def test_corrupt_and_unfinished_lines_are_skipped_counted_and_shown(tmp_path, monkeypatch, block):
    from rqa_otel.view import files as view_files

    monkeypatch.setattr(view_files, "READ_BLOCK", block)
    good = {"resourceLogs": [{"scopeLogs": [{"scope": {"name": "x"}, "logRecords": [
        {"timeUnixNano": "1", "severityText": "INFO", "body": {"stringValue": "hello"}, "traceId": "ab" * 16}]}]}]}
    with open(tmp_path / "logs.jsonl", "w") as f:
        f.write(json.dumps(good) + "\n")
        f.write('{"resourceLogs": [{"scopeLo\n')  # a line cut short by a crash
        f.write("not json at all\n")
        f.write(json.dumps(good) + "\n")
        f.write('{"resourceLogs": [')  # a write in progress: no newline yet
    files = TelemetryFiles(str(tmp_path))
    files.refresh()
    state = files.files["logs.jsonl"]
    assert (state.lines, state.corrupt, state.pending) == (4, 2, len('{"resourceLogs": ['))
    assert files.trace_logs["ab" * 16].records == 2
    found, more = files.search_logs("ab" * 16, lambda record: True, 0, 10)  # through the offsets kept
    assert [record.body for record in found] == ["hello", "hello"] and not more
    # The rest of the unfinished line arrives: it is read, once.
    with open(tmp_path / "logs.jsonl", "a") as f:
        f.write('{"scopeLogs": []}]}\n')
    files.refresh()
    assert (state.lines, state.corrupt, state.pending) == (5, 2, 0)

    server = ViewServer(str(tmp_path)).start()
    try:
        assert server.wait_until_read()
        status, html = get(server.url + "/pipeline")
        assert status == 200
        row = html[html.index("logs.jsonl"):].split("</tr>")[0]
        assert "<td class=n>5</td>" in row and ">2</span>" in row
    finally:
        server.close()


def test_reads_a_journal_while_a_backtest_writes_it(tmp_path):
    journal = write_run(tmp_path, trades=10)
    server = ViewServer(str(tmp_path)).start()
    try:
        assert 'id="trade-count">10<' in get(server.url + "/run/run-a")[1]
        for i in range(10, 30):  # the writer keeps its connection and commits under the reader
            journal.append_trade(("run-a", "s1", "600000.SH", "buy", 10.0, 100.0, START_NS + i * DAY_NS))
        assert journal.flush()
        assert 'id="trade-count">30<' in get(server.url + "/run/run-a")[1]
        assert journal.failed_commits == 0
        # Pages 2 and 3 of the blotter, and a bad filter named in the page.
        status, html = get(server.url + "/run/run-a?trades=1&side=buy")
        assert status == 200 and "page 2 of" in html
        # A time range (simulated time, UTC dates): trades of days 10..19 of the run.
        status, html = get(server.url + "/run/run-a?from=2024-01-11&to=2024-01-21")
        assert status == 200 and 'id="trade-page">10 trade(s); page 1 of 1<' in html
        assert html.count("<td>2024-01-1") + html.count("<td>2024-01-2") == 10
        status, html = get(server.url + "/run/run-a?side=short")
        assert status == 400 and "side &#x27;short&#x27;: expected buy or sell" in html
        status, html = get(server.url + "/run/run-a?from=yesterday")
        assert status == 400 and "from &#x27;yesterday&#x27;: expected a date" in html
        status, html = get(server.url + "/run/nope")
        assert status == 404 and "not found" in html
    finally:
        server.close()
        journal.close()


def test_a_taken_port_is_one_line_and_a_non_zero_exit(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = cli("view", str(tmp_path), "--port", str(port))
    assert completed.returncode == 1
    assert completed.stderr == (f"rqa-otel: view: port {port} on 127.0.0.1 is in use; choose another with --port "
                                "(0: any free port)\n")


def test_binding_beyond_loopback_needs_host_and_warns(tmp_path):
    process = subprocess.Popen([*CLI, "view", str(tmp_path), "--port", "0", "--host", "0.0.0.0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        warning = process.stderr.readline()
        assert "bound to 0.0.0.0" in warning and "no authentication" in warning
        serving = process.stdout.readline()
        assert serving.startswith("rqa-otel view: serving")
        port = serving.split("http://0.0.0.0:")[1].split()[0]
        assert get(f"http://127.0.0.1:{port}/api/version")[0] == 200
    finally:
        process.terminate()
        process.wait(10)
    # Without --host the view is on loopback only.
    server = ViewServer(str(tmp_path))
    try:
        assert server.httpd.server_address[0] == "127.0.0.1"
    finally:
        server.httpd.server_close()


def test_runs_page_filters_by_strategy(tmp_path):
    write_run(tmp_path, "run-a").close()
    other = TradeJournal(tmp_path / "trades.db")
    other.append_trade(("run-b", "s2", "600000.SH", "buy", 10.0, 100.0, START_NS))
    other.append_snapshot(("run-b", "s2", 1.0, 1.0, "{}", START_NS))
    assert other.flush()
    other.close()
    server = ViewServer(str(tmp_path)).start()
    try:
        html = get(server.url + "/")[1]
        assert 'id="run-count">2 run(s)<' in html
        html = get(server.url + "/?strategy=s2")[1]
        assert 'id="run-count">1 run(s)<' in html and "/run/run-b" in html and "/run/run-a" not in html
    finally:
        server.close()


def test_portfolio_history_by_run(file_telemetry, tmp_path):
    from rqa_otel.trading.monitor import BacktestMonitor

    monitor = BacktestMonitor(file_telemetry(), journal_path=tmp_path / "j.db")
    runs = []
    for offset in (0, 1):
        with monitor.run("s", {"k": offset}) as run_id:
            runs.append(run_id)
            for day in range(3):
                monitor.record_portfolio(1000.0 + 10 * day + offset, 500.0, {"600000.SH": day}, "s",
                                         timestamp=START_NS + day * DAY_NS)
    history = monitor.get_portfolio_history(run_id=runs[1])
    assert [(s.run_id, s.value) for s in history] == [(runs[1], 1001.0), (runs[1], 1011.0), (runs[1], 1021.0)]
    assert history[2].positions == {"600000.SH": 2.0} and history[0].timestamp.year == 2024
    assert len(monitor.get_portfolio_history(strategy="s", start=START_NS + DAY_NS, limit=3)) == 3
    with pytest.raises(ValueError, match="limit -1: expected an integer >= 0"):
        monitor.get_portfolio_history(limit=-1)
    monitor.close()


def test_a_rotated_log_file_is_read_from_its_start_and_searched_there(tmp_path):
    def line(body: str) -> str:
        return json.dumps({"resourceLogs": [{"scopeLogs": [{"scope": {"name": "x"}, "logRecords": [
            {"timeUnixNano": "1", "severityText": "INFO", "body": {"stringValue": body}, "traceId": "cd" * 16}]}]}]}) + "\n"

    (tmp_path / "logs.jsonl").write_text(line("old one") + line("old two"))
    files = TelemetryFiles(str(tmp_path))
    files.refresh()
    (tmp_path / "logs.jsonl").rename(tmp_path / "logs.jsonl.1")  # what the rotating file exporter does
    (tmp_path / "logs.jsonl").write_text(line("new"))
    files.refresh()
    assert files.files["logs.jsonl"].restarts == 1 and files.trace_logs["cd" * 16].records == 3
    found, more = files.search_logs("cd" * 16, lambda record: True, 0, 10)
    assert [record.body for record in found] == ["new"] and not more


def test_the_runs_page_keeps_up_with_snapshots_added_since(tmp_path):
    journal = write_run(tmp_path)
    server = ViewServer(str(tmp_path)).start()
    try:
        row = get(server.url + "/")[1].split('href="/run/run-a"')[1].split("</tr>")[0]
        assert "+10.00%" in row and "10.00%" in row and "120" in row  # return; drawdown 945k from 1,050k
        journal.append_snapshot(("run-a", "s1", 840_000.0, 0.0, "{}", START_NS + 200 * DAY_NS))
        assert journal.flush()
        row = get(server.url + "/")[1].split('href="/run/run-a"')[1].split("</tr>")[0]
        assert "-16.00%" in row and "23.64%" in row  # 840k: 16 % below the start, 23.64 % below the 1.1M peak
        # The same figures as the run page's, which reads the run's snapshots in time order.
        page = get(server.url + "/run/run-a")[1]
        assert 'id="return">-16.00%<' in page and 'id="max-drawdown">23.64%<' in page
    finally:
        server.close()
        journal.close()


def test_resources_page_puts_gpu_memory_against_its_quota(tmp_path):
    """GPU memory as the gauges write it (bytes; NVML is not on this machine,
    so the metrics line is written here in the file exporter's format)."""

    def attribute(key, value):
        return {"key": key, "value": {"stringValue": value}}

    def point(value, *attributes):
        return {"timeUnixNano": str(START_NS), "asInt" if isinstance(value, int) else "asDouble": value,
                "attributes": list(attributes)}

    metrics = [
        {"name": "rqa.strategy.gpu.memory.usage", "unit": "By", "sum": {"dataPoints": [
            point(str(2 * 2**30), attribute("rqa.strategy", "gpu_strat"))], "aggregationTemporality": 2}},
        {"name": "rqa.strategy.memory.usage", "unit": "By", "gauge": {"dataPoints": [
            point(str(300 * 2**20), attribute("rqa.strategy", "gpu_strat"))]}},
        {"name": "rqa.strategy.quota.limit", "unit": "1", "gauge": {"dataPoints": [
            point(1024.0, attribute("rqa.strategy", "gpu_strat"), attribute("rqa.quota.resource", "gpu_memory")),
            point(512.0, attribute("rqa.strategy", "gpu_strat"), attribute("rqa.quota.resource", "memory"))]}},
    ]
    request = {"resourceMetrics": [{"resource": {"attributes": [attribute("service.name", "x")]},
                                    "scopeMetrics": [{"scope": {"name": "rqa"}, "metrics": metrics}]}]}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(request) + "\n")
    server = ViewServer(str(tmp_path)).start()
    try:
        assert server.wait_until_read()
        html = get(server.url + "/resources")[1]
        table = html.split('id="usage-gpu_strat"')[1].split("</table>")[0]
        gpu = table.split("<td>gpu_memory</td>")[1].split("</tr>")[0]
        memory = table.split("<td>memory</td>")[1].split("</tr>")[0]
        assert "2,048.0 MiB" in gpu and "1,024.0" in gpu and "over quota" in gpu
        assert "300.0 MiB" in memory and "512.0" in memory and "over quota" not in memory
    finally:
        server.close()


def test_export_parquet_when_pyarrow_is_installed(tmp_path):
    parquet = pytest.importorskip("pyarrow.parquet", reason="pyarrow not installed: --format parquet says so (tested above)")
    write_run(tmp_path).close()
    completed = cli("export", "run-a", "--format", "parquet", "-o", str(tmp_path / "out"), "--dir", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    trades = parquet.read_table(tmp_path / "out" / "trades.parquet").to_pydict()
    equity = parquet.read_table(tmp_path / "out" / "equity.parquet").to_pydict()
    assert len(trades["price"]) == 120 and trades["side"][0] == "sell" and trades["time_ns"][1] == START_NS + DAY_NS
    assert equity["value"] == [1_000_000.0, 1_050_000.0, 945_000.0, 1_100_000.0]


def test_a_journal_that_is_not_sqlite_is_named_not_a_traceback(tmp_path):
    (tmp_path / "trades.db").write_bytes(b"this is not a database" * 100)
    server = ViewServer(str(tmp_path)).start()
    try:
        status, html = get(server.url + "/")
        assert status == 500 and "trades.db: file is not a database" in html
    finally:
        server.close()
    completed = cli("export", "x", "--dir", str(tmp_path))
    assert completed.returncode != 0 and completed.stderr.count("\n") == 1
    assert "the trade journal in" in completed.stderr and "file is not a database" in completed.stderr
