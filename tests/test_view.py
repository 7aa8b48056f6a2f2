"""rqa-otel view in a real browser: Debian's chromium, headless, driven by
selenium through chromium-driver (/usr/bin/chromedriver: nothing is
downloaded). Every page of a demo run and of a backtrader run, checked
against the journal and the files; the live update; the report opened from
disk. Screenshots go to test-artifacts/view/ (git-ignored) for a look."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otlp_files import spans
from rqa_otel import names
from rqa_otel.view import ViewServer, write_report

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("RQA_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")) / "view"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)):
        reason = "chromium and chromium-driver not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,2000", "--no-proxy-server"):
        options.add_argument(argument)
    # An explicit driver path: selenium-manager (which downloads drivers) never runs.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def text(driver, css_id: str) -> str:
    """An element's rendered text, read in one script call: a live page may
    swap its <main> between a find and a read (no stale element then)."""
    value = driver.execute_script("var e = document.getElementById(arguments[0]); return e ? e.innerText : null", css_id)
    assert value is not None, f"no element #{css_id} on {driver.current_url}"
    return value.strip()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    completed = subprocess.run(
        [sys.executable, "-m", "rqa_otel.cli", "demo", "--output", str(directory), "--json", "--quiet",
         "--http-port", "off"], capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return directory, json.loads(completed.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def backtrader_run(tmp_path_factory):
    pytest.importorskip("backtrader")
    from test_backtrader import SCRIPT

    work = tmp_path_factory.mktemp("backtrader")
    (work / "strategy.py").write_text(SCRIPT)
    telemetry = work / "telemetry"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RQA_", "OTEL_"))}
    env["RQA_EXPORT__DIRECTORY"] = str(telemetry)
    completed = subprocess.run([str(BIN / "rqa-otel"), "run", "--", sys.executable, str(work / "strategy.py"), str(work)],
                               capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return telemetry, json.loads(completed.stdout.splitlines()[-1])


def journal_facts(directory: Path, run_id: str) -> dict:
    journal = sqlite3.connect(directory / "trades.db")
    trades = journal.execute("SELECT count(*) FROM trade_rows WHERE run_id = ?", (run_id,)).fetchone()[0]
    final = journal.execute("SELECT value FROM portfolio WHERE run_id = ? ORDER BY time_ns DESC, id DESC LIMIT 1",
                            (run_id,)).fetchone()[0]
    return {"trades": trades, "final_value": final}


def file_alerts(directory: Path, run_id: str) -> tuple[list[dict], list[dict]]:
    """The run's alert spans (in its trace) and every quota breach episode."""
    all_spans = list(spans(directory / "traces.jsonl"))
    [run] = [s for s in all_spans if s["name"] == names.BACKTEST_SPAN
             and any(a["key"] == names.RUN_ID and a["value"]["stringValue"] == run_id for a in s["attributes"])]
    alert_names = [{a["key"]: a["value"] for a in s["attributes"]} for s in all_spans]
    in_run = [a for s, a in zip(all_spans, alert_names) if s["traceId"] == run["traceId"] and names.ALERT_NAME in a]
    breaches = [a for a in alert_names if a.get(names.ALERT_NAME, {}).get("stringValue") == names.QUOTA_BREACH_ALERT]
    return in_run, breaches


def check_run_page(driver, url: str, directory: Path, run_id: str, strategy: str, label: str) -> None:
    facts = journal_facts(directory, run_id)
    in_run, _ = file_alerts(directory, run_id)
    driver.get(url)
    rows = driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert len(rows) == 1 and strategy in rows[0].text
    assert f"{facts['trades']:,}" in rows[0].text
    screenshot(driver, f"{label}-runs")
    rows[0].find_element(By.TAG_NAME, "a").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "summary"))
    assert run_id in driver.find_element(By.TAG_NAME, "h1").text
    assert text(driver, "strategy") == strategy
    assert text(driver, "trade-count") == f"{facts['trades']:,}"
    assert text(driver, "final-value") == f"{facts['final_value']:,.2f}"
    assert text(driver, "alert-count") == str(len(in_run))
    blotter = driver.find_elements(By.CSS_SELECTOR, "#blotter tbody tr")
    assert len(blotter) == min(50, facts["trades"])
    # The charts are there, with one mark per trade (all fit under the 500 cap).
    assert driver.find_elements(By.CSS_SELECTOR, "#equity path.series-value")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#equity path[class^=mark-]")) == facts["trades"]
    alert_bars = driver.find_elements(By.CSS_SELECTOR, ".waterfall g.span-alert")
    assert len(alert_bars) == len(in_run)
    screenshot(driver, f"{label}-run")


def test_every_page_of_a_demo_run(browser, demo_run):
    directory, summary = demo_run
    assert summary["view_command"] == f"rqa-otel view {directory}"  # the demo says how to look at it
    server = ViewServer(str(directory)).start()
    assert server.wait_until_read()
    try:
        check_run_page(browser, server.url + "/", directory, summary["run_id"], "dual_ma_demo", "demo")
        assert text(browser, "trade-count") == str(summary["trades"])
        assert text(browser, "final-value") == f"{summary['final_value']:,.2f}"
        # The run's retries (rqa.retry events) and its signals, counted from the logs.
        assert text(browser, "retry-count").startswith(f"{summary['orders_rejected']} retry")
        stocks = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#signals tbody tr")]
        assert stocks == sorted(["600519.SH", "000001.SZ", "300750.SZ"])

        # The blotter filtered by symbol and side, through the form.
        journal = sqlite3.connect(directory / "trades.db")
        expected = journal.execute("SELECT count(*) FROM trade_rows WHERE symbol = '600519.SH' AND action = 'sell'").fetchone()[0]
        form = browser.find_element(By.ID, "trade-filters")
        form.find_element(By.NAME, "symbol").send_keys("600519.SH")
        form.find_element(By.NAME, "side").send_keys("sell")
        form.submit()
        WebDriverWait(browser, 10).until(lambda d: "symbol=600519.SH" in d.current_url)
        rows = browser.find_elements(By.CSS_SELECTOR, "#blotter tbody tr")
        assert len(rows) == expected > 0 and all("600519.SH" in r.text and "sell" in r.text for r in rows)

        # Log search by signal and stock.
        browser.get(f"{server.url}/run/{summary['run_id']}?stock=000001.SZ&signal=BUY")
        logs = browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
        assert logs and all("000001.SZ" in r.text and "BUY" in r.text for r in logs)
        # The run's logs, 50 a page: the next page follows on.
        browser.get(f"{server.url}/run/{summary['run_id']}")
        first = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")]
        browser.find_element(By.ID, "logs-next").click()
        WebDriverWait(browser, 10).until(lambda d: text(d, "log-page").startswith("page 2"))
        second = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")]
        assert len(first) == 50 and second and not set(first) & set(second)

        _, breaches = file_alerts(directory, summary["run_id"])
        browser.get(server.url + "/resources")
        assert browser.find_element(By.CSS_SELECTOR, "h2.strategy").text == "dual_ma_demo"
        assert browser.find_element(By.CSS_SELECTOR, ".episode-count").text == str(len(breaches)) == "1"
        assert "over quota" in text(browser, "usage-dual_ma_demo")
        screenshot(browser, "demo-resources")

        browser.get(server.url + "/pipeline")
        # The demo tightened its sampling rule live: one reload, and suppressed records.
        assert text(browser, "reload-count") == "1 reload(s)"
        suppressed = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#pipeline-metrics tbody tr")
                      if names.LOG_RECORDS_SUPPRESSED_COUNTER in r.text]
        assert suppressed and not suppressed[0].endswith(" 0")
        screenshot(browser, "demo-pipeline")
    finally:
        server.close()


def test_every_page_of_a_backtrader_run(browser, backtrader_run):
    directory, result = backtrader_run
    journal = sqlite3.connect(directory / "trades.db")
    [run_id] = [row[0] for row in journal.execute("SELECT run_id FROM runs")]
    server = ViewServer(str(directory)).start()
    assert server.wait_until_read()
    try:
        check_run_page(browser, server.url + "/", directory, run_id, "Crossover", "backtrader")
        # The view's final value is backtrader's own broker value.
        assert text(browser, "final-value") == f"{result['value']:,.2f}"
        assert text(browser, "trade-count") == str(len(result["fills"]))
        assert "slow=20" in text(browser, "parameters")
        # Log search by level and text: the one order the broker refused (Margin) is the run's one WARN record.
        browser.get(f"{server.url}/run/{run_id}?level=WARN")
        rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")]
        assert len(rows) == 1 and " WARN " in f" {rows[0]} "
        browser.get(f"{server.url}/run/{run_id}?text=margin")
        assert [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")] == rows
        for path in ("/resources", "/pipeline"):
            browser.get(server.url + path)
            assert "Internal error" not in browser.page_source
        assert text(browser, "files").count("0") >= 1  # the files table is there
        screenshot(browser, "backtrader-pipeline")
    finally:
        server.close()


def test_the_run_page_updates_live_without_a_reload(browser, tmp_path):
    from rqa_otel.trading.journal import TradeJournal

    # No telemetry yet: the page says where it is expected and how to produce it.
    server = ViewServer(str(tmp_path)).start()
    try:
        browser.get(server.url + "/")
        assert str(tmp_path) in text(browser, "no-data") and "rqa-otel demo" in text(browser, "no-data")
        screenshot(browser, "no-data")

        journal = TradeJournal(tmp_path / "trades.db")  # a backtest writing, in WAL mode
        day = 1_704_067_200 * 10**9
        for i in range(3):
            journal.append_trade(("live-run", "live", "600000.SH", "buy", 10.0 + i, 100.0, day + i * 86_400 * 10**9))
        journal.append_snapshot(("live-run", "live", 1_000_000.0, 997_000.0, "{}", day))
        assert journal.flush()
        # The no-data page turns into the runs page by itself.
        WebDriverWait(browser, 3).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#runs tbody tr"))
        browser.get(server.url + "/run/live-run")
        assert text(browser, "trade-count") == "3"
        browser.execute_script("window.notReloaded = true")
        for i in range(3, 8):
            journal.append_trade(("live-run", "live", "600000.SH", "sell", 10.0 + i, 100.0, day + i * 86_400 * 10**9))
        journal.append_snapshot(("live-run", "live", 1_010_000.0, 1_010_000.0, "{}", day + 8 * 86_400 * 10**9))
        assert journal.flush()
        written = time.monotonic()
        WebDriverWait(browser, 2.0, poll_frequency=0.05).until(
            lambda d: d.execute_script("var e = document.getElementById('trade-count'); return e && e.innerText") == "8")
        assert time.monotonic() - written < 2.0
        assert text(browser, "final-value") == "1,010,000.00"
        assert browser.execute_script("return window.notReloaded") is True
        assert text(browser, "state").startswith("running")
        # The run span arrives in traces.jsonl when the run ends: the page says finished, still without a reload.
        span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": names.BACKTEST_SPAN, "kind": 1,
                "startTimeUnixNano": "1", "endTimeUnixNano": "2", "attributes": [
                    {"key": names.RUN_ID, "value": {"stringValue": "live-run"}},
                    {"key": names.STRATEGY, "value": {"stringValue": "live"}}]}
        with open(tmp_path / "traces.jsonl", "w") as out:
            out.write(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}) + "\n")
        written = time.monotonic()
        WebDriverWait(browser, 2.0, poll_frequency=0.05).until(
            lambda d: d.execute_script("var e = document.getElementById('state'); return e && e.innerText") == "finished")
        assert time.monotonic() - written < 2.0
        assert browser.execute_script("return window.notReloaded") is True
        screenshot(browser, "live-run")
        journal.close()
    finally:
        server.close()


def test_the_report_is_one_file_that_shows_the_run_offline(browser, demo_run, tmp_path):
    directory, summary = demo_run
    output = tmp_path / "run.html"
    write_report(str(directory), summary["run_id"][:8], str(output))
    html = output.read_text()
    # Nothing is fetched when it is opened: no script, no stylesheet or image by URL.
    for needle in ("<script", "src=", "<link", "http://", "https://", "url("):
        assert needle not in html
    browser.get(output.as_uri())
    assert text(browser, "trade-count") == str(summary["trades"])
    assert text(browser, "final-value") == f"{summary['final_value']:,.2f}"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#blotter tbody tr")) == summary["trades"]
    screenshot(browser, "demo-report")
