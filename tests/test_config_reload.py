"""Hot reload: real files saved the ways editors and Kubernetes save them,
a real watchdog observer, real signals; telemetry to the embedded files."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest
from cryptography.fernet import Fernet

import rqa_otel
from rqa_otel import names
from rqa_otel.config import CHANGED, FAILED, UNCHANGED, ConfigVault, LiveSettings
from rqa_otel.trading.errors import OrderRejected, TradingErrorHandler
from config_saves import SAVES, in_place_save, rename_save, write
from otlp_files import attributes, items

GENEROUS_S = 5.0


def wait_for(condition, timeout=GENEROUS_S):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("style", ["rename", "inplace", "symlink"])
def test_each_save_style_triggers_exactly_one_reload(tmp_path, style):
    path = tmp_path / "settings.yaml"
    if style == "symlink":
        SAVES[style](tmp_path, "strategy: before\n", "gen1")
    else:
        write(path, "strategy: before\n")
    live = LiveSettings.from_layers(path, environ={})
    seen = []
    live.subscribe(lambda event_type, config: seen.append((event_type, config.strategy)))
    live.watch(poll_interval_s=60)  # the poll must not be what finds it
    try:
        time.sleep(0.1)
        SAVES[style](tmp_path, "strategy: after\n", "gen2")
        assert wait_for(lambda: seen), f"no reload after a {style} save"
        time.sleep(0.5)  # the debounced burst and any late events are over
        assert seen == [(CHANGED, "after")]
        assert live.current.strategy == "after"
        # Touching the file without changing it is no change.
        os.utime(path)
        time.sleep(0.3)
        assert live.reloads[CHANGED] == 1 and live.reloads[FAILED] == 0
    finally:
        live.close()


def test_the_poll_backstop_finds_changes_without_events(tmp_path):
    path = write(tmp_path / "settings.yaml", "strategy: before\n")
    live = LiveSettings.from_layers(path, environ={})
    watcher = live.watch(poll_interval_s=0.2)
    watcher._observer.unschedule_all()  # as on a file system that raises no events
    try:
        in_place_save(path, "strategy: after\n")
        assert wait_for(lambda: live.current.strategy == "after")
    finally:
        live.close()


def test_sighup_reloads_and_is_installed_only_from_the_main_thread(tmp_path):
    path = write(tmp_path / "settings.yaml", "strategy: before\n")
    live = LiveSettings.from_layers(path, environ={})
    previous = signal.getsignal(signal.SIGHUP)
    try:
        from_thread = []
        thread = threading.Thread(target=lambda: from_thread.append(live.install_sighup()))
        thread.start()
        thread.join()
        assert from_thread == [False]
        assert live.install_sighup()
        write(path, "strategy: after\n")
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_for(lambda: live.current.strategy == "after")
    finally:
        signal.signal(signal.SIGHUP, previous)
        live.close()


def test_key_subscriptions_get_old_and_new_and_a_failing_callback_stops_nothing(tmp_path):
    path = write(tmp_path / "settings.yaml", "errors:\n  order_rejected:\n    max_tries: 3\n")
    live = LiveSettings.from_layers(path, environ={})
    calls = []

    def broken(event_type, config):
        raise RuntimeError("a subscriber's bug")

    live.subscribe(broken)
    live.subscribe(lambda event_type, config: calls.append(("all", event_type)))
    live.on_change("errors.order_rejected.max_tries", lambda key, old, new: calls.append((key, old, new)))
    live.on_change("errors.order_rejected", lambda key, old, new: calls.append((key, old["errors.order_rejected.max_tries"], new["errors.order_rejected.max_tries"])))
    live.on_change("logging.level", lambda key, old, new: calls.append((key, old, new)))
    # A callback may itself reload: callbacks run outside the reload lock.
    live.subscribe(lambda event_type, config: calls.append(("nested", live.reload().outcome)))

    write(path, "errors:\n  order_rejected:\n    max_tries: 7\n")
    result = live.reload()
    assert result.outcome == CHANGED and result.changed == ("errors.order_rejected.max_tries",)
    assert result.restart_required == ()  # a subscription applies it
    assert calls == [
        ("all", CHANGED),
        ("nested", UNCHANGED),
        ("errors.order_rejected.max_tries", 3, 7),
        ("errors.order_rejected", 3, 7),
    ]
    assert live.current.errors.order_rejected.max_tries == 7
    with pytest.raises(KeyError):
        live.on_change("errors.order_rejectd", lambda *args: None)


@pytest.mark.parametrize(
    "bad",
    ["strategy: [unclosed\n", "logging:\n  queue_size: lots\n", "logging:\n", "strategy: ENC[v1:fernet:00000000:gAAAA]\n"],
    ids=["malformed_yaml", "type_error", "missing_required", "undecryptable"],
)
def test_bad_input_keeps_the_previous_settings_and_raises_an_alert(tmp_path, bad, monkeypatch):
    monkeypatch.setenv("RQA_VAULT_KEYS", Fernet.generate_key().decode())
    path = write(tmp_path / "settings.yaml", f"strategy: good\nexport:\n  directory: {tmp_path}\n")
    telemetry = rqa_otel.setup(path, set_global=False)
    try:
        before = telemetry.settings
        write(path, bad)
        result = telemetry.live_settings.reload()
        assert result.outcome == FAILED and result.error
        assert telemetry.settings is before
        telemetry.force_flush()
        spans = list(items(tmp_path / "traces.jsonl", "resourceSpans", "scopeSpans", "spans"))
        reload_span = next(s for s in spans if s["name"] == names.CONFIG_RELOAD_SPAN)
        assert attributes(reload_span)[names.CONFIG_RELOAD_OUTCOME] == FAILED
        alert = next(s for s in spans if s["name"] == names.ALERT_SPAN)
        assert attributes(alert)[names.ALERT_NAME] == names.CONFIG_RELOAD_FAILED_ALERT
        assert metric_value(tmp_path, names.CONFIG_LAST_RELOAD_SUCCESSFUL_GAUGE) == 0
    finally:
        telemetry.shutdown()


def metric_value(directory, name):
    points = [
        point
        for metric in items(directory / "metrics.jsonl", "resourceMetrics", "scopeMetrics", "metrics")
        if metric["name"] == name
        for kind in ("gauge", "sum")
        for point in metric.get(kind, {}).get("dataPoints", [])
    ]
    point = points[-1]
    return int(point.get("asInt", point.get("asDouble", 0)))


def test_a_reload_span_names_changed_keys_but_never_secret_values(tmp_path, monkeypatch):
    key = Fernet.generate_key()
    monkeypatch.setenv("RQA_VAULT_KEYS", key.decode())
    vault = ConfigVault((key,))
    path = write(tmp_path / "settings.yaml", f"export:\n  directory: {tmp_path}\nlogging:\n  level: INFO\n")
    telemetry = rqa_otel.setup(path, set_global=False)
    try:
        handler = TradingErrorHandler(telemetry)
        assert handler.policy_for(OrderRejected()).max_tries == 3
        write(path, f"export:\n  directory: {tmp_path}\n  otlp:\n    headers:\n      api-key: {vault.encrypt('tok-secret-9')}\n"
                    "logging:\n  level: DEBUG\nerrors:\n  order_rejected:\n    max_tries: 6\n")
        result = telemetry.live_settings.reload()
        assert result.outcome == CHANGED
        # Applied live: the handler's level and the retry policy.
        assert telemetry.logging_handler.level == logging.DEBUG
        assert handler.policy_for(OrderRejected()).max_tries == 6
        # This handle exports to files: no OTLP exporter takes the headers live.
        assert result.restart_required == ("export.otlp.headers",)
        telemetry.force_flush()
        text = (tmp_path / "traces.jsonl").read_text()
        span = next(s for s in items(tmp_path / "traces.jsonl", "resourceSpans", "scopeSpans", "spans")
                    if s["name"] == names.CONFIG_RELOAD_SPAN)
        changed = [v["stringValue"] for v in attributes(span)[names.CONFIG_CHANGED_KEYS]["values"]]
        assert changed == ["errors.order_rejected.max_tries", "export.otlp.headers", "logging.level"]
        assert "tok-secret-9" not in text and "tok-secret-9" not in (tmp_path / "metrics.jsonl").read_text()
        assert metric_value(tmp_path, names.CONFIG_LAST_RELOAD_SUCCESSFUL_GAUGE) == 1
    finally:
        telemetry.shutdown()


def test_readers_never_see_a_torn_or_invalid_snapshot_during_1000_reloads(tmp_path):
    """8 threads read while 1,000 reloads of good and bad files run."""
    path = write(tmp_path / "settings.yaml", "strategy: s0\nservice:\n  name: s0\n")
    live = LiveSettings.from_layers(path, environ={})
    stop = threading.Event()
    errors, reads = [], [0] * 8

    def reader(index):
        try:
            while not stop.is_set():
                snapshot = live.current
                # Each good file sets both to the same value: a mix is a torn read.
                if snapshot.strategy != snapshot.service.name or not snapshot.strategy.startswith("s"):
                    errors.append(("torn", snapshot.strategy, snapshot.service.name))
                reads[index] += 1
                if reads[index] % 64 == 0:
                    time.sleep(0)  # let the reloading thread have the GIL now and then, as real readers do
        except Exception as exc:  # any exception at all is an error
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    bad = ["strategy: [x\n", "service:\n  name: 5\n  environment: [1]\n", "service:\n", "strategy: ENC[v1:fernet:00000000:gAAAA]\n"]
    outcomes = {CHANGED: 0, UNCHANGED: 0, FAILED: 0}
    try:
        for number in range(1, 1001):
            text = f"strategy: s{number}\nservice:\n  name: s{number}\n" if number % 2 else bad[number // 2 % 4]
            write(path, text)
            outcomes[live.reload().outcome] += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert outcomes == {CHANGED: 500, UNCHANGED: 0, FAILED: 500}
    assert live.current.strategy == "s999"
    assert all(reads)


def test_a_bad_save_is_reported_once_and_the_fix_is_picked_up(tmp_path):
    path = write(tmp_path / "settings.yaml", "strategy: good\n")
    live = LiveSettings.from_layers(path, environ={})
    seen = []
    live.subscribe(lambda event_type, config: seen.append((event_type, config.strategy)))
    live.watch(poll_interval_s=0.1)  # many polls while the file is bad
    try:
        # Rename-saves: an in-place rewrite passes through an empty file, which
        # a poll on a loaded machine may catch (a valid, different config).
        rename_save(path, "strategy: [broken\n")
        assert wait_for(lambda: seen)
        time.sleep(0.5)
        assert seen == [(FAILED, "good")]
        rename_save(path, "strategy: fixed\n")
        assert wait_for(lambda: len(seen) == 2)
        assert seen[1] == (CHANGED, "fixed") and live.last_reload_successful
    finally:
        live.close()


def test_a_new_otlp_endpoint_applies_live_to_traces_metrics_and_logs(tmp_path, start_backend):
    """Two real OTLP receivers (rotel): a reload moves every signal from the first to the second."""
    from backends import Rotel

    first, second = start_backend(Rotel()), start_backend(Rotel())

    def settings_for(endpoint):
        return (f"export:\n  traces: otlp\n  metrics: otlp\n  logs: otlp\n  metric_interval_s: 60\n"
                f"  otlp:\n    endpoint: {endpoint}\n    protocol: grpc\n")

    path = write(tmp_path / "settings.yaml", settings_for(first.grpc_endpoint))
    telemetry = rqa_otel.setup(path, set_global=False)
    try:
        counter = telemetry.meter.create_counter("rqa.test.orders")
        with telemetry.tracer.start_as_current_span("before-reload"):
            telemetry.get_logger("rqa.test").warning("logged before the reload")
        counter.add(1)
        assert telemetry.force_flush()
        first.wait_for_span("before-reload")
        first.wait_for_log("logged before the reload")

        write(path, settings_for(second.grpc_endpoint))
        result = telemetry.live_settings.reload()
        assert result.changed == ("export.otlp.endpoint",) and result.restart_required == ()
        with telemetry.tracer.start_as_current_span("after-reload"):
            telemetry.get_logger("rqa.test").warning("logged after the reload")
        counter.add(1)
        assert telemetry.force_flush()
        second.wait_for_span("after-reload")
        second.wait_for_log("logged after the reload")
        assert second.wait_for_metric("rqa.test.orders")
        assert not first.spans("after-reload") and not first.logs("logged after the reload")
        assert not second.spans("before-reload")
        destinations = {counts.destination for counts in telemetry.export_counts()}
        assert all(second.grpc_endpoint in destination for destination in destinations)
    finally:
        telemetry.shutdown()


def test_no_reload_is_applied_after_close_returns_and_close_waits_for_none_of_the_watcher_threads(tmp_path):
    """close() no longer joins the watcher's threads (a short program's exit
    waited on them); what it guarantees instead: a reload in flight finishes,
    notifications included, before close() returns, and none applies after."""
    path = write(tmp_path / "settings.yaml", "strategy: before\n")
    live = LiveSettings.from_layers(path, environ={})
    loading, release = threading.Event(), threading.Event()
    load = live._loader

    def slow_load():
        loading.set()
        assert release.wait(GENEROUS_S)
        return load()

    notified = []
    live.subscribe(lambda event_type, config: (time.sleep(0.2), notified.append(config.strategy)))
    watcher = live.watch(debounce_s=0.01, poll_interval_s=0.05)
    live._loader = slow_load
    rename_save(path, "strategy: during\n")
    assert loading.wait(GENEROUS_S), "the watcher did not start a reload"
    closer = threading.Thread(target=live.close)
    closer.start()
    time.sleep(0.1)
    assert closer.is_alive(), "close() returned while a reload was in flight"
    release.set()
    closer.join(GENEROUS_S)
    assert not closer.is_alive()
    assert live.current.strategy == "during" and notified == ["during"]  # finished before close() returned

    # After close(): neither a save (the poll would find it within 0.05 s),
    # nor a SIGHUP-style request, nor a watcher thread still winding down applies one.
    live._loader = load
    rename_save(path, "strategy: after\n")
    live.request_reload("sighup")
    assert live.reload_watched("poll") is None
    time.sleep(0.4)
    assert live.current.strategy == "during" and notified == ["during"]
    assert not watcher._pending, "watchdog still delivered events after close()"  # its emitters stopped at once
    assert wait_for(lambda: not watcher._thread.is_alive() and not watcher._observer.is_alive())
    # An explicit reload still works: the program asked for it.
    assert live.reload().outcome == CHANGED and live.current.strategy == "after"
