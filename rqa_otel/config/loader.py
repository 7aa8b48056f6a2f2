"""Loading the settings: every layer read, merged, validated, decrypted and
frozen into a ``Settings``.

Layers, lowest first (docs/settings.md):

1. packaged defaults (``rqa_otel/default_settings.yaml``);
2. the settings file: ``setup(settings_file=…)`` or ``RQA_SETTINGS_FILE``
   (``settings.yaml``), then its siblings ``settings.{env}.yaml``,
   ``settings.local.yaml`` and ``.secrets.yaml``;
3. standard ``OTEL_*`` variables, where one applies (``OTEL_SERVICE_NAME``…);
4. ``RQA_*`` variables, nested with ``__`` (``RQA_EXPORT__TRACES=otlp``);
5. arguments to ``setup()``.

Files are read through one descriptor each, permission-checked on that
descriptor (rqa_otel.config.permissions), parsed (YAML by dynaconf's own
parser; the packaged defaults from their build-time JSON copy,
rqa_otel.config.packaged_defaults) and merged key by key; the ``RQA_*``
variables are read as dynaconf reads them (rqa_otel.config.environment). ``ENC[...]`` values are decrypted by the
ConfigVault. The result is validated against ``SCHEMA``
(rqa_otel.config.schema) and frozen into dataclasses
(rqa_otel.config.model), so a bad value fails at once, naming the setting,
where it came from and what is allowed.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from rqa_otel.config import application
from rqa_otel.config.aliases import rename_in_flat, rename_in_tree
from rqa_otel.config.environment import is_foreign_variable, otel_environment, rqa_environment, rqa_variable
from rqa_otel.config.model import (
    DEFAULTS_FILE,
    DEFAULTS_TREE_FILE,
    OTLP_SIGNAL_FIELDS,
    SETTINGS_FILE_VARIABLE,
    AgentSettings,
    BreakerSettings,
    ConfigSettings,
    ErrorSettings,
    ExportSettings,
    InfluxSettings,
    LimitSettings,
    LoggingSettings,
    OpsSettings,
    OtlpSettings,
    RegistrySettings,
    ResourceSettings,
    RetrySettings,
    RotationSettings,
    ScrubSettings,
    SdkSettings,
    ServiceSettings,
    Settings,
    SettingsError,
    SpanBatchSettings,
    SpoolSettings,
)
from rqa_otel.config.permissions import UnsafePermissions, read_checked
from rqa_otel.config.schema import MAP_KEYS, SCHEMA, SECTIONS
from rqa_otel.config.vault import KEY_FILE_VARIABLE, ConfigVault, VaultError, decrypt_values


@dataclass(frozen=True)
class Loaded:
    """One load of every layer: the settings and what the hot reload needs."""

    settings: Settings
    watched: tuple[Path, ...]
    """Every file whose content counts, present or not (a settings.local.yaml
    created later is a change): the watcher watches their directories."""
    fingerprint: str
    """SHA-256 over the bytes of those files: equal means nothing changed."""
    plaintexts: tuple[str, ...]
    """Every value the vault decrypted (for the log scrubber)."""
    directories: tuple[Path, ...] = ()
    """Directories whose every .yaml/.yml file counts (``config_dir``): a
    file added there is a change."""


def load_settings(
    settings_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers, validate, decrypt, and return frozen settings.

    ``overrides`` may be nested (``{"export": {"traces": "none"}}``) or dotted
    (``{"export.traces": "none"}``). Raises SettingsError listing every bad
    setting.
    """
    return load_layers(settings_file, overrides, environ).settings


def layer_files(settings_file: Path, environment: str) -> list[tuple[Path, bool]]:
    """The files above the packaged defaults, lowest first, as (path, holds
    secrets): ``settings.yaml``, ``settings.{env}.yaml``,
    ``settings.local.yaml``, ``.secrets.yaml`` (the siblings of the settings
    file, with its name and extension)."""
    stem, suffix = settings_file.stem, settings_file.suffix
    directory = settings_file.parent
    return [
        (settings_file, False),
        (directory / f"{stem}.{environment}{suffix}", False),
        (directory / f"{stem}.local{suffix}", False),
        (directory / f".secrets{suffix}", True),
    ]


_ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def load_layers(
    settings_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    vault: Any = None,
    config_dir: str | os.PathLike[str] | None = None,
    app_validators: Any = None,
) -> Loaded:
    """``load_settings`` with what a reload needs; ``vault`` (a ConfigVault)
    defaults to the one the environment configures, loaded only when a
    value is encrypted. ``config_dir``: a directory instead of a settings
    file (its ``settings.yaml`` if any, then every other .yaml/.yml in it by
    name, then the usual siblings). ``app_validators``: the user's check of
    the application's settings (rqa_otel.config.application.validate)."""
    environ = os.environ if environ is None else environ
    overrides = _flatten(dict(overrides or {}))
    rename_in_flat(overrides, dict.fromkeys(overrides, "setup() argument"))
    if settings_file is None:
        settings_file = environ.get(SETTINGS_FILE_VARIABLE) or None
    digest = hashlib.sha256()
    layers: list[tuple[str, dict[str, Any]]] = [("packaged defaults", _packaged_defaults())]
    app_layers: list[tuple[str, dict[str, Any]]] = []
    watched: list[Path] = []
    secret_sources: set[str] = set()  # values from these are never shown in messages

    def read(path: Path, secret: bool) -> None:
        try:
            data = read_checked(path, secret=secret)
        except FileNotFoundError:
            _digest(digest, path, None)
            return
        except UnsafePermissions:
            raise  # a SettingsError already, and the more precise one
        except OSError as exc:
            raise SettingsError(f"cannot read settings file {str(path)!r}: {exc}") from None
        _digest(digest, path, data)
        source = f"settings file {str(path)!r}"
        if secret:
            secret_sources.add(source)
        own, app = application.split_tree(rename_in_tree(parse_file(path, data, secret), source), source)
        layers.append((source, own))
        app_layers.append((source, app))

    directories: list[Path] = []
    if config_dir is not None:
        directory = Path(config_dir)
        if not directory.is_dir():
            raise SettingsError(f"config_dir {str(directory)!r} does not exist or is not a directory")
        directories.append(directory)
        settings_file = next(
            (directory / name for name in ("settings.yaml", "settings.yml") if (directory / name).is_file()),
            directory / "settings.yaml",
        )
        read(settings_file, secret=False)
        watched.append(settings_file)
        for name in application.yaml_files(directory):
            watched.append(directory / name)
            read(directory / name, secret=False)
        environment = _environment(overrides, environ, layers)
        for candidate, secret in layer_files(settings_file, environment)[1:]:
            watched.append(candidate)
            read(candidate, secret)
    elif settings_file is not None:
        path = Path(settings_file)
        if not path.is_file():
            raise SettingsError(f"settings file {str(path)!r} does not exist or is not a file")
        read(path, secret=False)
        environment = _environment(overrides, environ, layers)
        for candidate, secret in layer_files(path, environment):
            watched.append(candidate)
            if candidate != path:
                read(candidate, secret)
    key_file = environ.get(KEY_FILE_VARIABLE, "").strip()
    if key_file:
        watched.append(Path(key_file))
        _digest(digest, Path(key_file), _read_or_none(Path(key_file)))
    for directory in directories:
        _digest_listing(digest, directory)

    sources = {key: "packaged defaults" for key in SCHEMA}
    merged: dict[str, Any] = {}
    for source, tree in layers:
        _merge(merged, tree, source, sources)
    flat = _flatten(merged)
    rqa = _flatten(rqa_environment(environ))
    rqa_sources = {key: f"environment variable {rqa_variable(key)}" for key in rqa}
    rename_in_flat(rqa, rqa_sources)
    flat.update(rqa)
    sources.update(rqa_sources)
    for key, (value, variable) in otel_environment(environ).items():
        if key not in rqa:
            flat[key] = value
            sources[key] = f"environment variable {variable}"
    for key, value in overrides.items():
        flat[key] = value
        sources[key] = "setup() argument"

    plaintexts: tuple[str, ...] = ()
    secret_keys: frozenset[str] = frozenset()
    errors: list[str] = []
    if any(_has_envelope(value) for value in flat.values()):
        try:
            vault = vault if vault is not None else ConfigVault.from_environment(environ)
        except VaultError as exc:
            raise SettingsError(f"invalid rqa-otel settings: encrypted values cannot be read: {exc}") from None
        flat, secret_keys, plaintexts, errors = decrypt_values(flat, vault, lambda key: sources.get(key, "environment"))

    app_tree, app_sources, app_plaintexts = _application(app_layers, environ, vault, errors, app_validators)
    plaintexts += app_plaintexts

    values = {}
    for key, value in flat.items():
        if key not in SCHEMA and is_foreign_variable(key, sources.get(key, "")):
            continue
        if key not in SCHEMA:
            errors.append(_unknown(key, sources.get(key, "environment")))
            continue
        parse, _ = SCHEMA[key]
        try:
            values[key] = parse(value)
        except ValueError as exc:
            shown = "[REDACTED]" if key in secret_keys or sources[key] in secret_sources else repr(value)
            errors.append(f"setting {key} = {shown} (from {sources[key]}): {exc}")
    for key in SCHEMA:
        if key not in flat:
            errors.append(f"required setting {key} is missing (a file above the defaults emptied its section?)")
    errors += _influxdb_errors(values)
    if errors:
        raise SettingsError("invalid rqa-otel settings:\n  " + "\n  ".join(errors))
    settings = _freeze(values, {**app_sources, **sources}, secret_keys, app_tree)
    return Loaded(settings, tuple(watched), digest.hexdigest(), plaintexts, tuple(directories))


def _application(
    app_layers, environ, vault, errors: list[str], validators
) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
    """The application's settings merged from its layers (files, then
    ``RQA_APP__*``), decrypted and checked by the user's validators, as
    (tree, {dotted key: source}, decrypted plaintexts). Their problems
    join ``errors``."""
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    plaintexts: tuple[str, ...] = ()
    for source, layer in app_layers:
        application.merge(tree, layer)
        sources.update(dict.fromkeys(application.flatten(layer), source))
    try:
        env_tree, env_sources = application.app_environment(environ)
    except SettingsError as exc:
        errors.append(str(exc))
        env_tree, env_sources = {}, {}
    application.merge(tree, env_tree)
    sources.update(env_sources)
    if _has_envelope(tree):
        try:
            vault = vault if vault is not None else ConfigVault.from_environment(environ)
        except VaultError as exc:
            errors.append(f"application settings: encrypted values cannot be read: {exc}")
            return {}, {}, ()
        where = lambda key: next((s for k, s in sources.items() if k == key or k.startswith(key + ".")), "environment")
        tree, _, plaintexts, problems = decrypt_values(tree, vault, where)
        errors += problems
    if not errors:
        errors += application.validate(tree, validators)
    return tree, sources, plaintexts


def _digest_listing(digest, directory: Path) -> None:
    """A config_dir's .yaml/.yml names: a file added or removed is a change."""
    try:
        names = application.yaml_files(directory)
    except OSError:
        names = ["\0unreadable"]
    digest.update(f"{directory}\0listing\0{'/'.join(names)}\0".encode())


def _unknown(key: str, source: str) -> str:
    """An unknown key names what is known where it lies: inside one of
    rqa-otel's sections it may be an application key in the wrong place."""
    top = key.split(".")[0]
    own = [k for k in SCHEMA if k == top or k.startswith(top + ".")]
    if not own:
        return f"unknown setting {key!r} (from {source}); known settings: {', '.join(SCHEMA)}"
    return (
        f"unknown setting {key!r} (from {source}): {top!r} is rqa-otel's, whose settings are {', '.join(own)}; "
        f"an application setting needs a top-level key of its own (not one of {', '.join(sorted(SECTIONS))})"
    )


def _influxdb_errors(values: Mapping[str, Any]) -> list[str]:
    """The influxdb exporter needs a URL, and a bucket (v2) or a db (v1)."""
    users = [f"export.{signal}" for signal in ("traces", "metrics", "logs") if values.get(f"export.{signal}") == "influxdb"]
    if not users:
        return []
    needed = ["export.influxdb.url"]
    needed.append("export.influxdb.db" if values.get("export.influxdb.v1_compatibility") else "export.influxdb.bucket")
    return [
        f"setting {key} is empty, but {', '.join(users)} = influxdb needs it"
        + (" (or set export.influxdb.v1_compatibility for InfluxDB 1.x)" if key.endswith("bucket") else "")
        for key in needed
        if not values.get(key)
    ]


def content_fingerprint(paths, directories=()) -> str | None:
    """SHA-256 over the files' bytes as ``load_layers`` computes it (None
    when one cannot be read now): the watcher's cheap "did anything change".
    ``directories``: a config_dir, whose list of .yaml/.yml files counts too."""
    digest = hashlib.sha256()
    try:
        for path in paths:
            _digest(digest, path, _read_or_none(path))
        for directory in directories:
            _digest_listing(digest, Path(directory))
    except OSError:
        return None
    return digest.hexdigest()


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # missing, a directory, unreadable: reading it for real says which
        return None


def _digest(digest, path: Path, data: bytes | None) -> None:
    if data is None:
        digest.update(f"{path}\0absent\0".encode())
    else:
        digest.update(f"{path}\0{len(data)}\0".encode() + data)


@functools.lru_cache(maxsize=1)
def _packaged_defaults_cached() -> dict[str, Any]:
    # The YAML's tree as generated at build time: no YAML parser at start
    # (rqa_otel/config/packaged_defaults.py). The YAML itself when that copy
    # is missing or was made from another YAML (edited since, or merged
    # without regenerating it): slower, never wrong.
    source = DEFAULTS_FILE.read_bytes()
    try:
        generated = json.loads(DEFAULTS_TREE_FILE.read_bytes())
    except (OSError, ValueError):
        generated = None
    if isinstance(generated, dict) and generated.get("yaml_sha256") == yaml_digest(source):
        return generated["defaults"]
    return parse_file(DEFAULTS_FILE, source)


def yaml_digest(data: bytes) -> str:
    """What default_settings.json records of the YAML it was made from."""
    return hashlib.sha256(data).hexdigest()


def _packaged_defaults() -> dict[str, Any]:
    """Parsed once per process (it is part of the installed package)."""
    return copy.deepcopy(_packaged_defaults_cached())


def _has_envelope(value: Any) -> bool:
    if isinstance(value, str):
        return value.lstrip().startswith("ENC[")
    if isinstance(value, Mapping):
        return any(_has_envelope(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_envelope(v) for v in value)
    return False


def _environment(overrides: Mapping[str, Any], environ: Mapping[str, str], layers) -> str:
    """The environment that picks ``settings.{env}.yaml``: service.environment
    from setup(), RQA_SERVICE__ENVIRONMENT, the settings file or the defaults."""
    value = overrides.get("service.environment")
    if value is None:
        value = next((v for k, v in environ.items() if k.upper() == "RQA_SERVICE__ENVIRONMENT"), None)
    if value is None:
        for _, tree in reversed(layers):
            service = tree.get("service")
            if isinstance(service, Mapping) and service.get("environment") is not None:
                value = service["environment"]
                break
    text = str(value).strip()
    if not _ENVIRONMENT_NAME.fullmatch(text):
        raise SettingsError(
            f"setting service.environment = {value!r} cannot name a settings file; expected letters, digits, _ or -"
        )
    return text


def parse_file(path: Path, data: bytes, secret: bool = False) -> dict[str, Any]:
    """One file's tree. YAML through dynaconf's own (vendored) parser.
    ``secret``: a parse error gives the position only, since parsers quote
    the offending line and the line may hold a secret."""
    suffix = path.suffix.lower()
    try:
        text = data.decode("utf-8")
        if suffix in (".yaml", ".yml"):
            # Imported here: dynaconf costs ~0.1 s to import and `import
            # rqa_otel` alone does not need it.
            from dynaconf.vendor.ruamel import yaml

            tree = yaml.load(text, Loader=yaml.SafeLoader)
        elif suffix == ".toml":
            import tomllib  # here: only a TOML settings file needs it

            tree = tomllib.loads(text)
        elif suffix == ".json":
            tree = json.loads(text) if text.strip() else None
        else:
            raise ValueError("unknown format; expected a .yaml, .yml, .toml or .json file")
    except Exception as exc:  # each parser has its own error types
        if secret:
            raise SettingsError(f"cannot read settings file {str(path)!r}: {_position(exc)}") from None
        raise SettingsError(f"cannot read settings file {str(path)!r}: {exc}") from None
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise SettingsError(f"settings file {str(path)!r}: expected a mapping of settings at the top, got {type(tree).__name__}")
    return dict(tree)


def _position(error: Exception) -> str:
    """Where a parser failed, without the text it would quote."""
    mark = getattr(error, "problem_mark", None)  # YAML
    if mark is not None:
        return f"malformed YAML at line {mark.line + 1}, column {mark.column + 1}"
    line = getattr(error, "lineno", None)  # JSON, TOML (3.14+)
    if line is not None:
        return f"malformed at line {line}, column {getattr(error, 'colno', '?')}"
    return f"malformed ({type(error).__name__}; the message is withheld because this file holds secrets)"


def _merge(into: dict[str, Any], tree: Mapping[str, Any], source: str, sources: dict[str, str], prefix: str = "") -> None:
    """Deep merge, key by key: mappings merge, everything else (lists
    included) replaces; a section set to null is an error naming the file."""
    for key, value in tree.items():
        name = str(key).lower() if prefix not in _MAP_PREFIXES else str(key)
        dotted = f"{prefix}{name}"
        current = into.get(name)
        if isinstance(value, Mapping) and dotted not in MAP_KEYS:
            if not isinstance(current, dict):
                current = into[name] = {}
            _merge(current, value, source, sources, dotted + ".")
            continue
        if value is None and isinstance(current, dict) and dotted not in MAP_KEYS:
            raise SettingsError(
                f"section {dotted!r} in {source} is empty (null); expected a mapping of its settings, or remove the line"
            )
        into[name] = dict(value) if isinstance(value, Mapping) else value
        for flat_key in _flatten({name: value}, prefix) if isinstance(value, Mapping) else [dotted]:
            sources[flat_key] = source


_MAP_PREFIXES = {f"{key}." for key in MAP_KEYS}  # inside these, keys keep their case


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{str(key).lower()}"
        if isinstance(value, Mapping) and dotted not in MAP_KEYS:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _freeze(
    values: Mapping[str, Any], sources: Mapping[str, str], secret_keys: frozenset[str] = frozenset(),
    app_tree: Mapping[str, Any] | None = None,
) -> Settings:
    v = values
    return Settings(
        strategy=v["strategy"],
        service=ServiceSettings(
            name=v["service.name"],
            environment=v["service.environment"],
            instance_id=v["service.instance_id"],
        ),
        export=ExportSettings(
            traces=v["export.traces"],
            metrics=v["export.metrics"],
            logs=v["export.logs"],
            directory=v["export.directory"],
            metric_interval_s=v["export.metric_interval_s"],
            shutdown_timeout_s=v["export.shutdown_timeout_s"],
            file_mode=v["export.file_mode"],
            otlp=_otlp(v),
            metric_timeout_s=v["export.metric_timeout_s"],
            span_batch=SpanBatchSettings(
                **{name: v[f"export.span_batch.{name}"] for name in SpanBatchSettings.__dataclass_fields__}
            ),
            prometheus_host=v["export.prometheus.host"],
            prometheus_port=v["export.prometheus.port"],
            spool=SpoolSettings(
                enabled=v["export.spool.enabled"],
                directory=v["export.spool.directory"] or os.path.join(v["export.directory"], "spool"),
                max_bytes=v["export.spool.max_bytes"],
                send_budget_s=v["export.spool.send_budget_s"],
            ),
            influxdb=InfluxSettings(
                **{name: v[f"export.influxdb.{name}"] for name in InfluxSettings.__dataclass_fields__}
            ),
        ),
        logging=LoggingSettings(
            capture=v["logging.capture"],
            level=v["logging.level"],
            queue_size=v["logging.queue_size"],
            max_wait_s=v["logging.max_wait_s"],
            batch_size=v["logging.batch_size"],
            flush_interval_s=v["logging.flush_interval_s"],
            console=v["logging.console"],
            file=v["logging.file"],
            file_format=v["logging.file_format"],
            sampling_rules=v["logging.sampling.rules"],
            summary_interval_s=v["logging.sampling.summary_interval_s"],
            code_attributes=v["logging.code_attributes"],
            export_timeout_s=v["logging.export_timeout_s"],
        ),
        rotation=RotationSettings(
            max_bytes=v["rotation.max_bytes"], backup_count=v["rotation.backup_count"], compress=v["rotation.compress"]
        ),
        scrub=ScrubSettings(patterns=v["scrub.patterns"], allowlist=v["scrub.allowlist"]),
        errors=ErrorSettings(
            **{
                kind: RetrySettings(
                    v[f"errors.{kind}.max_tries"], v[f"errors.{kind}.base_delay_s"], v[f"errors.{kind}.max_delay_s"]
                )
                for kind in ("order_rejected", "broker_connection", "data_load")
            },
            breaker=BreakerSettings(v["errors.breaker.failure_threshold"], v["errors.breaker.open_s"]),
        ),
        ops=OpsSettings(http_port=v["ops.http_port"], http_host=v["ops.http_host"]),
        resources=ResourceSettings(
            enabled=v["resources.enabled"], host=v["resources.host"], gpu=v["resources.gpu"], interval_s=v["resources.interval_s"]
        ),
        registry=RegistrySettings(enabled=v["registry.enabled"], dir=v["registry.dir"]),
        agent=AgentSettings(
            http_port=v["agent.http_port"], smoothing=v["agent.smoothing"], warn_ratio=v["agent.warn_ratio"],
            restart_backoff_max_s=v["agent.restart_backoff_max_s"],
        ),
        quotas=dict(v["quotas"]),
        resource_attributes=dict(v["resource_attributes"]),
        config=ConfigSettings(
            watch=v["config.watch"], debounce_s=v["config.debounce_s"],
            poll_interval_s=v["config.poll_interval_s"], sighup=v["config.sighup"],
        ),
        sdk=SdkSettings(
            traces_sampler=v["sdk.traces_sampler"],
            traces_sampler_arg=v["sdk.traces_sampler_arg"],
            propagators=v["sdk.propagators"],
            log_level=v["sdk.log_level"],
            metrics_exemplar_filter=v["sdk.metrics_exemplar_filter"],
            limits=LimitSettings(**{name: v[f"sdk.limits.{name}"] for name in LimitSettings.__dataclass_fields__}),
        ),
        sources=dict(sources),
        secret_keys=secret_keys,
        values=dict(values),
        app=application.AppConfig(app_tree) if app_tree else application.EMPTY,
        app_values=application.flatten(app_tree or {}),
    )


def _otlp(v: Mapping[str, Any]) -> OtlpSettings:
    """``export.otlp`` with its per-signal overrides (resolved per signal
    by ``OtlpSettings.for_signal``)."""
    fields = OTLP_SIGNAL_FIELDS
    generic = {name: v[f"export.otlp.{name}"] for name in fields}
    generic["headers"] = dict(generic["headers"])
    signals = {
        signal: {name: v[f"export.otlp.{signal}.{name}"] for name in fields if v[f"export.otlp.{signal}.{name}"] is not None}
        for signal in ("traces", "metrics", "logs")
    }
    return OtlpSettings(**generic, signals=signals, temporality=v["export.otlp.metrics_temporality"])
