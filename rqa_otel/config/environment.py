"""The environment-variable layers: standard ``OTEL_*`` variables where one
applies to a setting, and ``RQA_*`` variables (the dotted key in upper case,
``__`` for each dot, values parsed as TOML by dynaconf)."""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Mapping

from rqa_otel.config.model import ENV_PREFIX, SettingsError
from rqa_otel.config.schema import MAP_KEYS, SCHEMA, SECTIONS, SECURITY_KEYS, parse_key_value_list

_log = logging.getLogger("rqa_otel.config")


def rqa_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """RQA_* variables as a tree, parsed by dynaconf (TOML-typed values,
    ``__`` nesting)."""
    if environ is not os.environ:
        # dynaconf reads os.environ itself; for any other mapping, only what
        # that mapping holds counts.
        return _nest({k: v for k, v in environ.items() if k.upper().startswith(f"{ENV_PREFIX}_")})
    plain = _plain_tree(environ)
    if plain is not None:
        return plain  # what dynaconf would make of these variables, without its import
    return dynaconf_tree()


def dynaconf_tree() -> dict[str, Any]:
    """The RQA_* variables of os.environ as dynaconf reads them."""
    # Imported here: dynaconf costs ~0.1 s to import and `import rqa_otel`
    # alone does not need it.
    from dynaconf import Dynaconf

    options = dict(envvar_prefix=ENV_PREFIX, environments=False, load_dotenv=False, settings_files=[])
    try:
        loaded = Dynaconf(**options).as_dict()
    except Exception as exc:  # dynaconf raises parser-specific errors
        raise SettingsError(f"cannot read the {ENV_PREFIX}_* environment variables: {exc}") from exc
    internal = {name.upper() for name in options} | {"SETTINGS_FILE"}
    return {key.lower(): value for key, value in loaded.items() if key.upper() not in internal}


_PLAIN_NAME = re.compile(rf"{ENV_PREFIX}_[A-Z0-9_]+\Z")
_DYNACONF_OPTIONS = frozenset({"ENVVAR_PREFIX", "ENVIRONMENTS", "LOAD_DOTENV", "SETTINGS_FILES", "SETTINGS_FILE"})


def _plain_tree(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The tree Dynaconf(envvar_prefix=RQA) gives for the usual variables,
    built without importing dynaconf (~0.1 s of every start-up): upper-case
    names with plain values, parsed as dynaconf parses them (TOML, with
    True/False spelt as Python does; text that is no TOML stays text).
    None, and dynaconf reads them, for anything else: one of dynaconf's own
    variables, a value with one of its @converters, a setting whose keys
    keep their case, two variables for one key. A test holds this equal to
    dynaconf's tree."""
    tree: dict[str, Any] = {}
    for name, text in environ.items():
        upper = name.upper()
        if upper.startswith("DYNACONF_") or upper.endswith("_FOR_DYNACONF"):
            return None
        if not upper.startswith(f"{ENV_PREFIX}_") or name == f"{ENV_PREFIX}_SETTINGS_FILE":
            continue  # the settings file is the loader's to read; dynaconf neither reads it nor returns it
        if not _PLAIN_NAME.match(name) or text.lstrip().startswith("@"):
            return None
        # As dynaconf: the top-level key in lower case, nested ones as spelt.
        parts = name[len(ENV_PREFIX) + 1 :].split("__")
        parts[0] = parts[0].lower()
        dotted = ".".join(parts).lower()
        if not all(parts) or parts[0].upper() in _DYNACONF_OPTIONS:
            return None
        if any(key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + ".") for key in MAP_KEYS):
            return None
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                return None
        if parts[-1] in node:
            return None
        node[parts[-1]] = _toml_value(text)
    return tree


_TOML_VALUE_STARTS = frozenset("\"'tf[{0123456789+-in")
"""The characters a TOML value can start with (tomllib's parse_value);
an empty text is none of them."""


def _toml_value(text: str) -> Any:
    """dynaconf's parse_conf_data(boolean_fix(text), tomlfy=True) for text without @converters."""
    if text and text.strip() in ("True", "False"):
        text = text.lower()
    if text.lstrip(" \t")[:1] not in _TOML_VALUE_STARTS:
        # No TOML value starts so (a path, a name): tomllib would refuse it
        # and the text stays text; its import is spared (~10 ms of a start).
        return text
    import tomllib

    try:
        return tomllib.loads(f"key={text}")["key"]
    except (tomllib.TOMLDecodeError, KeyError):
        return text


def _nest(variables: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, text in variables.items():
        parts = name[len(ENV_PREFIX) + 1 :].lower().split("__")
        if parts == ["settings_file"]:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        # Imported here, for a variable to parse, for the same reason as Dynaconf above.
        from dynaconf.utils.parse_conf import parse_conf_data

        node[parts[-1]] = parse_conf_data(text, tomlfy=True)
    return tree


def is_foreign_variable(key: str, source: str) -> bool:
    """An RQA_* variable outside our sections belongs to another RQA2025
    layer (RQA_HOME, say) and is none of our business; one inside a section
    of ours (RQA_EXPORT__TRACSE) is a typo worth an error."""
    return source.startswith("environment variable") and key.split(".")[0] not in SECTIONS


def rqa_variable(key: str) -> str:
    """The RQA_* variable that sets a dotted key."""
    return f"{ENV_PREFIX}_" + key.replace(".", "__").upper()


MILLISECOND_VARIABLES = frozenset(
    {
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        *(f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT" for signal in ("TRACES", "METRICS", "LOGS")),
        "OTEL_METRIC_EXPORT_INTERVAL",
        "OTEL_METRIC_EXPORT_TIMEOUT",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_EXPORT_TIMEOUT",
        "OTEL_BLRP_SCHEDULE_DELAY",
        "OTEL_BLRP_EXPORT_TIMEOUT",
    }
)
"""Standard variables in milliseconds; their settings are in seconds."""

_EXPORTER_KEYS = ("export.traces", "export.metrics", "export.logs")


def otel_environment(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """The standard OTEL_* variables that apply, as {setting: (value, variable)}.

    As the specification asks, an invalid or unknown value of a standard
    variable is not fatal: one WARNING names the variable, the value and
    what is accepted, and the setting keeps its value from the layers below
    (settings files, packaged defaults). Certificate and key paths are the
    exception (``SECURITY_KEYS``): a bad one fails setup(), since a TLS
    setting must never quietly fall back to something weaker.
    """
    found: dict[str, tuple[Any, str]] = {}
    for key, (parse, variable) in SCHEMA.items():
        if not variable or not environ.get(variable, "").strip():
            continue
        text = environ[variable].strip()
        value: Any = text
        if key in _EXPORTER_KEYS:
            value = _known_exporters(key, parse, variable, text)
            if value is None:
                continue
        elif key.endswith(".insecure") and text.lower() not in ("true", "false"):
            # The specification's booleans: only "true" is true; anything
            # else but "false" warns and counts as false (not set).
            _warn_invalid(key, variable, text, "expected true or false (anything else counts as false)")
            continue
        elif variable in MILLISECOND_VARIABLES:
            try:
                value = float(text) / 1000.0
            except ValueError:
                _warn_invalid(key, variable, text, "expected a positive number of milliseconds")
                continue
        if key not in SECURITY_KEYS:
            try:
                parse(value)
            except ValueError as exc:
                accepted = str(exc).replace("seconds", "milliseconds") if variable in MILLISECOND_VARIABLES else str(exc)
                _warn_invalid(key, variable, text, accepted)
                continue
        found[key] = (value, variable)
    # The specification gives OTEL_SERVICE_NAME precedence over a service.name
    # inside OTEL_RESOURCE_ATTRIBUTES; the latter still counts when alone.
    if "resource_attributes" in found:
        attributes = parse_key_value_list(found["resource_attributes"][0])  # valid: checked above
        promoted = {
            "service.name": "service.name",
            "service.instance.id": "service.instance_id",
            "deployment.environment.name": "service.environment",
            "deployment.environment": "service.environment",
        }
        for attribute, key in promoted.items():
            if attribute in attributes and key not in found:
                found[key] = (attributes[attribute], "OTEL_RESOURCE_ATTRIBUTES")
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower()
    if disabled == "true":
        for signal in ("traces", "metrics", "logs"):
            found[f"export.{signal}"] = ("none", "OTEL_SDK_DISABLED")
    elif disabled not in ("", "false"):
        _warn_invalid("the SDK", "OTEL_SDK_DISABLED", environ["OTEL_SDK_DISABLED"], "expected true or false")
    return found


def _known_exporters(key: str, parse: Callable[[Any], Any], variable: str, text: str) -> str | None:
    """The exporters of a comma-separated OTEL_*_EXPORTER list that this SDK
    has; a warning names the others (None when none is left)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = []
    for name in names:
        try:
            parse(name)
            known.append(name)
        except ValueError as exc:
            unknown_reason = str(exc)
    if len(known) < len(names):
        _warn_invalid(
            key, variable, text,
            unknown_reason + ("; the known ones are used" if known else ""),
        )
    return ",".join(known) or None


def _warn_invalid(key: str, variable: str, value: str, accepted: str) -> None:
    what = key if key.startswith("the ") else f"setting {key}"
    _log.warning(
        "ignoring %s=%s: %s; %s keeps its value from the settings files or packaged defaults",
        variable, _shown(variable, value), accepted, what,
    )


def _shown(variable: str, value: str) -> str:
    """The value as a message may show it: headers carry API keys, and an
    endpoint may carry ``user:password@``; neither is repeated."""
    if variable.endswith("_HEADERS"):
        return "[REDACTED] (headers are not shown)"
    if variable.endswith("_ENDPOINT") and "@" in value:
        scheme, sep, rest = value.partition("://")
        return repr(f"{scheme}{sep}[REDACTED]@{rest.rpartition('@')[2]}" if sep else f"[REDACTED]@{value.rpartition('@')[2]}")
    return repr(value)
