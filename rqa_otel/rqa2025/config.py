"""ConfigManager: the design's configuration manager, over LiveSettings.

    manager = ConfigManager("config/", callbacks=[on_change])
    manager.start_watcher()              # any .yaml/.yml in config/ counts, new files too
    manager["data"]["source"]            # a plain mapping, rqa-otel's sections and the application's
    manager.get("logging.level")
    manager.add_callback(lambda event_type, new_config: ...)   # ("config_changed", dict)
    manager.stop_watcher()

What it adds to the design: every reload is validated (rqa-otel's schema,
and ``validators``, a callable or dynaconf Validators for the application's
keys) and swapped whole; a reload that fails keeps the last good
configuration, logs why and calls no callback. A callback that raises is
isolated: counted in ``callback_errors``, logged once (the first time that
callback fails), and the other callbacks are still called.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from rqa_otel import names
from rqa_otel.config import CHANGED, LiveSettings, ReloadResult, Settings, SettingsError
from rqa_otel.config.application import to_plain
from rqa_otel.telemetry import current

_log = logging.getLogger("rqa_otel.config")

CONFIG_CHANGED = "config_changed"
"""The design's event type: the only one a callback receives."""

ConfigCallback = Callable[[str, dict], Any]


class ConfigManager:
    def __init__(
        self,
        config_dir: str | os.PathLike[str] = "config",
        callbacks: list[ConfigCallback] | None = None,
        *,
        validators: Any = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``config_dir``: its ``settings.yaml`` (if any), then every other
        .yaml/.yml in it by name, then ``settings.{env}.yaml``,
        ``settings.local.yaml`` and ``.secrets.yaml``; ``RQA_*`` and
        ``RQA_APP__*`` variables over them (docs/settings.md). Raises
        SettingsError naming the directory when it does not exist, or naming
        each bad setting."""
        self.config_dir = Path(config_dir)
        if not self.config_dir.is_dir():
            raise SettingsError(f"config_dir {str(self.config_dir)!r} does not exist or is not a directory")
        if callbacks is not None and (not isinstance(callbacks, (list, tuple)) or not all(map(callable, callbacks))):
            raise TypeError(f"callbacks must be a list of callables callback(event_type, new_config), got {callbacks!r}")
        self.callbacks: list[ConfigCallback] = list(callbacks or [])
        self.callback_errors = 0
        """Calls of a callback that raised, since start."""
        self._failed: set[int] = set()  # ids of callbacks whose failure was logged
        self._lock = threading.Lock()
        self.live_settings = LiveSettings.from_layers(
            environ=environ, config_dir=self.config_dir, app_validators=validators
        )
        self._tree: tuple[Settings, dict] | None = None
        self.live_settings.subscribe(self._reloaded)

    # --- reading ------------------------------------------------------------------

    @property
    def config_cache(self) -> dict:
        """The whole configuration as a plain nested dict (a copy): rqa-otel's
        sections and the application's keys."""
        return copy.deepcopy(self._current_tree())

    def get(self, key: str, default: Any = None) -> Any:
        """A value by key or dotted path (``get("data.source")``), or ``default``."""
        node: Any = self._current_tree()
        for part in str(key).split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return copy.deepcopy(node)

    def __getitem__(self, key: str) -> Any:
        tree = self._current_tree()
        if key not in tree:
            raise KeyError(f"{key!r}: no such section or key in {self.config_dir}; there are {', '.join(tree)}")
        return copy.deepcopy(tree[key])

    def __contains__(self, key: object) -> bool:
        return key in self._current_tree()

    @property
    def settings(self) -> Settings:
        """The validated snapshot in force (``settings.app`` is the
        application's part, read with plain attribute access)."""
        return self.live_settings.current

    def _current_tree(self) -> dict:
        settings = self.live_settings.current
        cached = self._tree
        if cached is None or cached[0] is not settings:
            cached = self._tree = (settings, _as_tree(settings))
        return cached[1]

    # --- changing -----------------------------------------------------------------

    def add_callback(self, callback: ConfigCallback) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable as callback(event_type, new_config), got {callback!r}")
        with self._lock:
            self.callbacks = [*self.callbacks, callback]

    def reload(self) -> ReloadResult:
        """Load every file again; when something changed, call the callbacks.
        A bad file never raises here: the result says why, and the last good
        configuration stays."""
        return self.live_settings.reload()

    def start_watcher(self) -> None:
        """Reload when any .yaml/.yml in config_dir is created, changed,
        renamed or removed (debounced; polled as well). Idempotent."""
        self.live_settings.watch()
        _log.info("config watcher started on %s", self.config_dir)

    def stop_watcher(self) -> None:
        self.live_settings.close()

    def _reloaded(self, event_type: str, settings: Settings) -> None:
        if event_type != CHANGED:
            # The design notifies changes only. LiveSettings logged why; the
            # process's telemetry, if set up, gets the alert.
            telemetry = current()
            if telemetry is not None:
                try:
                    telemetry.alert(names.CONFIG_RELOAD_FAILED_ALERT, "critical", message=(
                        f"config_dir {self.config_dir}: reload failed, the last good configuration stays in force: "
                        f"{self.live_settings.last_error}"))
                except Exception:  # telemetry never breaks a reload
                    _log.warning("could not report a failed config reload", exc_info=True)
            return
        tree = self._current_tree()
        for callback in list(self.callbacks):
            try:
                callback(CONFIG_CHANGED, copy.deepcopy(tree))
            except Exception:
                with self._lock:
                    self.callback_errors += 1
                    first = id(callback) not in self._failed
                    self._failed.add(id(callback))
                if first:
                    _log.error("config change callback %r raised (logged once; later failures are only counted)",
                               callback, exc_info=True)


def _as_tree(settings: Settings) -> dict:
    """rqa-otel's settings (dotted keys) nested, plus the application's."""
    tree: dict[str, Any] = {}
    for key, value in settings.values.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _plain(value)
    if settings.app:
        for key, value in to_plain(settings.app).items():
            tree[key] = value
    return tree


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
