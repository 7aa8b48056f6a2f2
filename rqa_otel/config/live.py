"""LiveSettings: one complete, valid settings snapshot, swapped atomically.

A reload builds a new ``Settings`` from every layer, validates and decrypts
it, diffs it against the current one and swaps it in with one reference
assignment. A reader takes ``live.current`` once and reads from that
snapshot: it never sees a half-loaded or unvalidated state, and a read costs
what a plain attribute access costs. A reload that fails (malformed YAML, a
bad value, an undecryptable secret, an unsafe secrets file) leaves the
current snapshot in force, raises an alert and is counted.

Change notification, as the RQA2025 design has it:

- ``subscribe(callback)``: ``callback(event_type, config)`` after every reload
  that changed something (``"changed"``) or failed (``"failed"``, with the
  config still in force);
- ``on_change(key, callback)``: ``callback(key, old, new)`` when a setting,
  or any setting under a section (``"errors.order_rejected"``), changed;
  a section's old and new values are mappings of its dotted keys.

Callbacks run in the reloading thread after the swap, outside the reload
lock, in reload order; one that raises is logged and stops neither the
others nor later reloads. Changed settings that no ``on_change``
subscription applies are reported as needing a restart.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from rqa_otel import names
from rqa_otel.config.loader import Loaded, content_fingerprint, load_layers
from rqa_otel.config.model import Settings

_log = logging.getLogger("rqa_otel.config")

CHANGED, UNCHANGED, FAILED = names.CONFIG_RELOAD_OUTCOMES

Callback = Callable[[str, Settings], Any]
KeyCallback = Callable[[str, Any, Any], Any]


@dataclass(frozen=True)
class ReloadResult:
    outcome: str
    """``changed``, ``unchanged`` or ``failed``."""
    changed: tuple[str, ...] = ()
    """Dotted keys whose value changed (never their values)."""
    restart_required: tuple[str, ...] = ()
    """Changed keys that nothing applies live: they take effect at the next start."""
    error: str | None = None


class LiveSettings:
    """The settings in force, reloadable. ``current`` is the snapshot."""

    def __init__(self, loader: Callable[[], Loaded]) -> None:
        self._loader = loader
        loaded = loader()  # a bad initial configuration raises SettingsError at once
        self.current: Settings = loaded.settings
        self._loaded = loaded
        self._seen: str | None = loaded.fingerprint  # the content last loaded or found bad
        self._reload_lock = threading.Lock()
        self._notify_lock = threading.RLock()
        self._callbacks: tuple[Callback, ...] = ()
        self._key_callbacks: tuple[tuple[str, KeyCallback], ...] = ()
        self._telemetry = None
        self._instruments = None
        self.reloads = {CHANGED: 0, UNCHANGED: 0, FAILED: 0}
        self.last_reload_successful = True
        self.last_error: str | None = None
        """Why the latest reload failed (None after one that did not)."""
        self._watcher = None
        self._closed = False

    @classmethod
    def from_layers(
        cls,
        settings_file: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        vault: Any = None,
        *,
        config_dir: str | os.PathLike[str] | None = None,
        app_validators: Any = None,
    ) -> "LiveSettings":
        """Settings from the documented layers, reloadable from the same
        sources (``environ`` None: the process environment at each reload).
        ``config_dir``: every .yaml/.yml in that directory instead of one
        settings file; ``app_validators``: the user's check of the
        application's settings (rqa_otel.config.application)."""
        overrides = dict(overrides or {})
        return cls(lambda: load_layers(settings_file, overrides, environ, vault, config_dir, app_validators))

    @classmethod
    def fixed(cls, settings: Settings) -> "LiveSettings":
        """Settings built elsewhere: a reload finds them unchanged."""
        return cls(lambda: Loaded(settings, (), "", ()))

    # --- reading --------------------------------------------------------------

    @property
    def secret_values(self) -> tuple[str, ...]:
        """The values decrypted for the settings in force: the pipeline
        registers them with its scrubber before it builds anything that
        leaves the process (the resource is built once, at setup)."""
        return tuple(self._loaded.plaintexts)

    def get(self, key: str) -> Any:
        """One value (or section) by dotted key from the current snapshot."""
        return self.current.get(key)

    @property
    def watched_files(self) -> tuple:
        return self._loaded.watched

    @property
    def watched_directories(self) -> tuple:
        """Directories where any .yaml/.yml file counts (a config_dir)."""
        return self._loaded.directories

    @property
    def fingerprint(self) -> str:
        return self._loaded.fingerprint

    # --- subscribing ----------------------------------------------------------

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """``callback(event_type, config)`` after each reload that changed
        something or failed. Returns a function that unsubscribes."""
        return self._add("_callbacks", callback)

    def on_change(self, key: str, callback: KeyCallback) -> Callable[[], None]:
        """``callback(key, old, new)`` when ``key`` (a setting or a section)
        changed. Subscribing also marks those settings as applied live.
        Returns a function that unsubscribes."""
        self.current.get(key)  # KeyError now for a typo, not silence later
        return self._add("_key_callbacks", (key, callback))

    def _add(self, registry: str, entry: Any) -> Callable[[], None]:
        # Copy on write: a notification in progress iterates its own tuple.
        with self._notify_lock:
            setattr(self, registry, getattr(self, registry) + (entry,))

        def unsubscribe() -> None:
            with self._notify_lock:
                setattr(self, registry, tuple(e for e in getattr(self, registry) if e is not entry))

        return unsubscribe

    # --- reloading ------------------------------------------------------------

    def reload(self, trigger: str = "explicit") -> ReloadResult:
        """Load every layer again and swap the result in if it is valid.
        Never raises for bad input: the result (and the alert) says why."""
        result = self._reload(trigger, watched=False)
        assert result is not None
        return result

    def reload_watched(self, trigger: str, if_changed: bool = True) -> ReloadResult | None:
        """A reload the watcher or SIGHUP asked for: like ``reload_if_changed``
        (``if_changed``) or ``reload``, but none is applied once ``close()``
        has returned (None then)."""
        if if_changed:
            now = content_fingerprint(self._loaded.watched, self._loaded.directories)
            if now == self._seen or self._closed:
                return None
            self._seen = now
        return self._reload(trigger, watched=True)

    def _reload(self, trigger: str, watched: bool) -> ReloadResult | None:
        self._reload_lock.acquire()
        try:
            if watched and self._closed:
                return None
            old = self.current
            try:
                loaded = self._loader()
            except Exception as exc:  # SettingsError mostly; anything else is just as fatal to this reload
                result = ReloadResult(FAILED, error=str(exc) or type(exc).__name__)
            else:
                self._register_secrets(loaded.plaintexts)  # before any log can show them
                changed = _diff(old, loaded.settings)
                if changed:
                    self.current = loaded.settings  # the swap: one reference assignment
                self._loaded = loaded
                self._seen = loaded.fingerprint
                # The application reads its own settings when it needs them:
                # only rqa-otel's can need a restart.
                own = [k for k in changed if k in old.values or k in loaded.settings.values]
                result = ReloadResult(
                    CHANGED if changed else UNCHANGED, changed, tuple(k for k in own if not self._applied(k))
                )
            new = self.current
            self.reloads[result.outcome] += 1
            self.last_reload_successful = result.outcome != FAILED
            self.last_error = result.error
            # Handed over before the reload lock is released, so that
            # notifications go out in reload order.
            self._notify_lock.acquire()
        finally:
            self._reload_lock.release()
        try:
            self._report(result, trigger)
            if result.outcome != UNCHANGED:
                self._notify(result, old, new)
        finally:
            self._notify_lock.release()
        return result

    def reload_if_changed(self, trigger: str) -> ReloadResult | None:
        """Reload unless every file has the same content as at the last load
        (None then): editors and Kubernetes raise many events per save."""
        now = content_fingerprint(self._loaded.watched, self._loaded.directories)
        if now == self._seen:
            return None
        # A bad file is reported once, not again at every poll until fixed.
        self._seen = now
        return self.reload(trigger)

    def _applied(self, key: str) -> bool:
        return any(key == sub or key.startswith(sub + ".") for sub, _ in self._key_callbacks)

    # --- reporting ------------------------------------------------------------

    def attach(self, telemetry) -> None:
        """Report reloads through this telemetry handle: a span per reload,
        counters, the last-reload gauge, alerts; register decrypted values
        with its scrubber."""
        from opentelemetry.metrics import Observation

        self._telemetry = telemetry
        self._register_secrets(self._loaded.plaintexts)
        counter = telemetry.meter.create_counter(
            names.CONFIG_RELOADS_COUNTER, unit="{reload}", description="Settings reloads, by outcome."
        )
        telemetry.meter.create_observable_gauge(
            names.CONFIG_LAST_RELOAD_SUCCESSFUL_GAUGE,
            callbacks=[lambda options: [Observation(1 if self.last_reload_successful else 0)]],
            unit="", description="1 if the latest settings reload succeeded, 0 if it failed.",
        )
        self._instruments = counter

    def _register_secrets(self, plaintexts) -> None:
        if self._telemetry is not None:
            for value in plaintexts:
                self._telemetry.register_secret(value)

    def _report(self, result: ReloadResult, trigger: str) -> None:
        if result.outcome == FAILED:
            _log.warning("settings reload (%s) failed; the previous settings stay in force: %s", trigger, result.error)
        elif result.outcome == CHANGED:
            _log.info("settings reloaded (%s): %s changed", trigger, ", ".join(result.changed))
            if result.restart_required:
                _log.warning(
                    "settings %s changed but take effect only after a restart", ", ".join(result.restart_required)
                )
        telemetry = self._telemetry
        if telemetry is None:
            return
        try:
            attributes = {
                names.CONFIG_RELOAD_OUTCOME: result.outcome,
                names.CONFIG_RELOAD_TRIGGER: trigger,
                names.CONFIG_CHANGED_KEYS: list(result.changed),
                names.CONFIG_RESTART_REQUIRED: list(result.restart_required),
            }
            with telemetry.tracer.start_as_current_span(names.CONFIG_RELOAD_SPAN, attributes=attributes):
                if result.outcome == FAILED:
                    telemetry.alert(
                        names.CONFIG_RELOAD_FAILED_ALERT, "critical",
                        message=f"settings reload failed, previous settings stay in force: {result.error}",
                    )
            self._instruments.add(1, {names.CONFIG_RELOAD_OUTCOME: result.outcome})
        except Exception:  # telemetry never breaks a reload
            _log.warning("could not report a settings reload", exc_info=True)

    def _notify(self, result: ReloadResult, old: Settings, new: Settings) -> None:
        event = CHANGED if result.outcome == CHANGED else FAILED
        for callback in self._callbacks:
            try:
                callback(event, new)
            except Exception:
                _log.warning("settings callback %r raised", callback, exc_info=True)
        if result.outcome != CHANGED:
            return
        for key, callback in self._key_callbacks:
            if any(k == key or k.startswith(key + ".") for k in result.changed):
                try:
                    callback(key, old.get(key), new.get(key))
                except Exception:
                    _log.warning("settings callback %r for %s raised", callback, key, exc_info=True)

    # --- watching -------------------------------------------------------------

    def watch(self, debounce_s: float | None = None, poll_interval_s: float | None = None):
        """Start reloading on file changes (rqa_otel.config.watch); idempotent."""
        # watchdog and its observer thread load only for a watched process.
        from rqa_otel.config.watch import SettingsWatcher

        if self._watcher is None:
            config = self.current.config
            self._watcher = SettingsWatcher(
                self,
                config.debounce_s if debounce_s is None else debounce_s,
                config.poll_interval_s if poll_interval_s is None else poll_interval_s,
            )
            self._watcher.start()
        return self._watcher

    def request_reload(self, trigger: str) -> None:
        """Ask for a full reload soon, from any thread or a signal handler."""
        if self._watcher is not None:
            self._watcher.poke(force=trigger)
        else:
            threading.Thread(
                target=self.reload_watched, args=(trigger, False), name="rqa-config-reload", daemon=True
            ).start()

    def install_sighup(self) -> bool:
        """Reload on SIGHUP. Python lets only the main thread install signal
        handlers: from any other thread this logs why and returns False. A
        handler that was there already is still called."""
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
            _log.info("not reloading settings on SIGHUP: setup() did not run in the main thread")
            return False
        previous = signal.getsignal(signal.SIGHUP)

        def on_sighup(signum, frame):
            self.request_reload("sighup")  # only sets a flag: no lock is taken in a signal handler
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGHUP, on_sighup)
        return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop watching. A reload the watcher or SIGHUP started is waited
        for (its notifications included, at most ``timeout_s`` each step);
        none is applied after this returns. The watcher's threads are told
        to stop, not waited for."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        # A reload holds the reload lock until it holds the notify lock: once
        # both were free after _closed is set, no watched reload is in flight.
        if self._reload_lock.acquire(timeout=timeout_s):
            self._closed = True
            self._reload_lock.release()
        else:
            self._closed = True
        if self._notify_lock.acquire(timeout=timeout_s):
            self._notify_lock.release()


def _diff(old: Settings, new: Settings) -> tuple[str, ...]:
    keys = old.values.keys() | new.values.keys()
    changed = {k for k in keys if old.values.get(k) != new.values.get(k)}
    missing = object()  # an application key may come or go; its value may be None
    app_keys = old.app_values.keys() | new.app_values.keys()
    changed.update(k for k in app_keys if old.app_values.get(k, missing) != new.app_values.get(k, missing))
    return tuple(sorted(changed))
