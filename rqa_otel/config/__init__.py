"""Settings: their shape (model), schema, loading from every layer, hot
reload, change notification and the ConfigVault.

    settings = load_settings("settings.yaml")   # frozen Settings, validated

    live = telemetry.live_settings       # or LiveSettings.from_layers(...)
    live.current.logging.level           # the snapshot in force: a plain read
    live.on_change("errors.order_rejected", lambda key, old, new: ...)
    live.subscribe(lambda event_type, config: ...)
    live.reload()                        # also: config.watch, SIGHUP
"""

from rqa_otel.config.live import CHANGED, FAILED, UNCHANGED, LiveSettings, ReloadResult
from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import Settings, SettingsError
from rqa_otel.config.permissions import UnsafePermissions
from rqa_otel.config.vault import ConfigVault, VaultError

__all__ = [
    "CHANGED",
    "FAILED",
    "UNCHANGED",
    "ConfigVault",
    "LiveSettings",
    "ReloadResult",
    "Settings",
    "SettingsError",
    "UnsafePermissions",
    "VaultError",
    "load_settings",
]
