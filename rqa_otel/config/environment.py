"""The environment-variable layers: standard ``OTEL_*`` variables where one
applies to a setting, and ``RQA_*`` variables (the dotted key in upper case,
``__`` for each dot, values parsed as TOML by dynaconf)."""

from __future__ import annotations

import os
from typing import Any, Mapping

from rqa_otel.config.model import ENV_PREFIX, SettingsError
from rqa_otel.config.schema import SCHEMA, SECTIONS, parse_key_value_list


def rqa_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """RQA_* variables as a tree, parsed by dynaconf (TOML-typed values,
    ``__`` nesting)."""
    if environ is not os.environ:
        # dynaconf reads os.environ itself; for any other mapping, only what
        # that mapping holds counts.
        return _nest({k: v for k, v in environ.items() if k.upper().startswith(f"{ENV_PREFIX}_")})
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


def _nest(variables: Mapping[str, str]) -> dict[str, Any]:
    # Imported here for the same reason as Dynaconf above.
    from dynaconf.utils.parse_conf import parse_conf_data

    tree: dict[str, Any] = {}
    for name, text in variables.items():
        parts = name[len(ENV_PREFIX) + 1 :].lower().split("__")
        if parts == ["settings_file"]:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
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


def otel_environment(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """The standard OTEL_* variables that apply, as {setting: (value, variable)}."""
    found: dict[str, tuple[Any, str]] = {}
    for key, (_, variable) in SCHEMA.items():
        if variable and environ.get(variable, "").strip():
            found[key] = (environ[variable].strip(), variable)
    if "export.metric_interval_s" in found:  # the variable is in milliseconds
        text, variable = found["export.metric_interval_s"]
        try:
            found["export.metric_interval_s"] = (float(text) / 1000.0, variable)
        except ValueError:
            pass  # left as text: the parser reports it with the variable's name
    # The specification gives OTEL_SERVICE_NAME precedence over a service.name
    # inside OTEL_RESOURCE_ATTRIBUTES; the latter still counts when alone.
    if "resource_attributes" in found:
        try:
            attributes = parse_key_value_list(found["resource_attributes"][0])
        except ValueError:
            return found
        promoted = {
            "service.name": "service.name",
            "service.instance.id": "service.instance_id",
            "deployment.environment.name": "service.environment",
            "deployment.environment": "service.environment",
        }
        for attribute, key in promoted.items():
            if attribute in attributes and key not in found:
                found[key] = (attributes[attribute], "OTEL_RESOURCE_ATTRIBUTES")
    if _boolean_or_false(environ.get("OTEL_SDK_DISABLED", "")):
        for signal in ("traces", "metrics", "logs"):
            found[f"export.{signal}"] = ("none", "OTEL_SDK_DISABLED")
    return found


def _boolean_or_false(text: str) -> bool:
    return text.strip().lower() == "true"
