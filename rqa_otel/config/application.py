"""The application's own settings: every top-level key of the settings files
that rqa-otel does not own.

    # settings.yaml
    logging: {level: INFO}              # rqa-otel's (schema.SECTIONS)
    data: {source: tushare, retries: 3} # the application's
    universe: [600519.SH, 000001.SZ]

    live.current.app.data.source        # "tushare": a plain attribute read
    live.current.app["universe"]        # ("600519.SH", "000001.SZ")
    live.on_change("data.source", lambda key, old, new: ...)

They are layered like rqa-otel's settings (the same files, in the same
order), with a variable prefix of their own (``RQA_APP__DATA__SOURCE``,
values typed as TOML, as for ``RQA_*``), decrypted by the same ConfigVault
(``ENC[...]``), optionally validated by the user (a callable, or dynaconf
``Validator``\\s), and frozen into one ``AppConfig`` that a reload swaps
together with the rest: a reader never sees half of a reload, and a reload
that fails validation keeps the last good snapshot.

Keys in files keep their case; keys from variables are lower case (a
variable's name has no case worth keeping).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterator, Mapping

from rqa_otel.config.aliases import DEPRECATED_SECTIONS
from rqa_otel.config.environment import rqa_variable
from rqa_otel.config.model import ENV_PREFIX, SettingsError
from rqa_otel.config.schema import SCHEMA, SECTIONS

APP_PREFIX = f"{ENV_PREFIX}_APP"
"""``RQA_APP__<KEY>__<SUBKEY>=value`` sets the application key ``key.subkey``."""

_log = logging.getLogger("rqa_otel.config")
_OWN = SECTIONS | frozenset(DEPRECATED_SECTIONS)
_warned_close: set[str] = set()


def is_application_key(top_level_key: Any) -> bool:
    return str(top_level_key).lower() not in _OWN


def split_tree(tree: Mapping[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One file's tree as (rqa-otel's part, the application's part). A
    top-level application key that looks like a misspelt section of ours is
    kept but warned about once: it used to be an error."""
    own, app = {}, {}
    for key, value in tree.items():
        if is_application_key(key):
            app[key] = value
            import difflib  # here: only a file with application keys needs it

            close = difflib.get_close_matches(str(key).lower(), sorted(SECTIONS), n=1, cutoff=0.85)
            if close and str(key) not in _warned_close:
                _warned_close.add(str(key))
                _log.warning(
                    "%s: top-level key %r is taken as an application setting; did you mean rqa-otel's section %r?",
                    source, key, close[0],
                )
        else:
            own[key] = value
    return own, app


def app_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``RQA_APP__*`` variables as (tree, {dotted key: variable}). A variable
    that names one of rqa-otel's own settings is refused, naming both."""
    prefix = APP_PREFIX + "__"
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    errors = []
    for name, text in sorted(environ.items()):
        if not name.upper().startswith(prefix):
            continue
        parts = name[len(prefix):].lower().split("__")
        if not all(parts):
            errors.append(f"environment variable {name}: empty key between '__' separators")
            continue
        dotted = ".".join(parts)
        if not is_application_key(parts[0]):
            own = dotted if dotted in SCHEMA else parts[0]
            errors.append(
                f"environment variable {name} sets application key {dotted!r}, which shadows rqa-otel's "
                f"{'setting' if own in SCHEMA else 'section'} {own!r} (set that with {rqa_variable(own)}); "
                f"application keys must lie outside {', '.join(sorted(SECTIONS))}"
            )
            continue
        node = tree
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        # Imported here, for a variable to parse: dynaconf costs ~0.1 s to
        # import (see environment.py).
        from dynaconf.utils.parse_conf import parse_conf_data

        node[parts[-1]] = parse_conf_data(text, tomlfy=True)
        sources[dotted] = f"environment variable {name}"
    if errors:
        raise SettingsError("invalid application settings:\n  " + "\n  ".join(errors))
    return tree, sources


def merge(into: dict[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge, key by key, case kept: mappings merge, anything else
    (lists included) replaces."""
    for key, value in tree.items():
        current = into.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            merge(current, value)
        else:
            into[key] = merge({}, value) if isinstance(value, Mapping) else value
    return into


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value (for diffs and ``on_change``)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


Validators = Callable[[Mapping[str, Any]], Any] | Any
"""A callable taking the application's settings (a plain dict) and raising
ValueError (or returning a list of messages) when they are bad; or dynaconf
``Validator``\\s (one, or a list)."""


def validate(tree: Mapping[str, Any], validators: Validators | None) -> list[str]:
    """The user's verdict on the application's settings: messages, empty when good."""
    if validators is None:
        return []
    if callable(validators) and not _is_dynaconf_validator(validators):
        try:
            verdict = validators(to_plain(tree))
        except (ValueError, TypeError, KeyError) as exc:
            return [f"application settings rejected by {_name(validators)}: {exc}"]
        if verdict is None or verdict is True:
            return []
        if verdict is False:
            return [f"application settings rejected by {_name(validators)}"]
        return [f"application settings rejected by {_name(validators)}: {message}" for message in verdict]
    items = list(validators) if isinstance(validators, (list, tuple)) else [validators]
    if not all(_is_dynaconf_validator(item) for item in items):
        raise TypeError(
            f"application validators: expected a callable or dynaconf Validators, got {validators!r}"
        )
    # Imported here: only a program that passes Validators pays for dynaconf.
    from dynaconf import Dynaconf
    from dynaconf.validator import ValidationError, ValidatorList

    holder = Dynaconf(envvar_prefix="RQA_APP_VALIDATION_UNUSED", environments=False, load_dotenv=False, settings_files=[])
    holder.update(to_plain(tree))
    try:
        ValidatorList(holder, validators=items).validate_all()
    except ValidationError as exc:
        details = getattr(exc, "details", None) or [(None, str(exc))]
        return [f"application setting invalid: {message}" for _, message in details]
    return []


def _is_dynaconf_validator(value: Any) -> bool:
    return any(cls.__name__ in ("Validator", "CombinedValidator") and cls.__module__.startswith("dynaconf")
               for cls in type(value).__mro__)


def _name(function: Any) -> str:
    return getattr(function, "__qualname__", None) or repr(function)


def to_plain(value: Any) -> Any:
    """Plain dicts and lists (for the user's validator, callbacks, JSON)."""
    if isinstance(value, Mapping):
        return {key: to_plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


class AppConfig(Mapping):
    """The application's settings, frozen: attribute access for keys that
    are identifiers (``app.data.source``), ``[]`` for any key, ``get("a.b")``
    for a dotted path. Mappings inside are AppConfigs, lists are tuples.

    An attribute read is a plain instance-dict lookup (keys are stored as
    instance attributes), so it costs what reading an rqa-otel setting costs.
    """

    def __init__(self, tree: Mapping[str, Any] | None = None) -> None:
        items = {key: _freeze(value) for key, value in (tree or {}).items()}
        object.__setattr__(self, "_items", items)
        for key, value in items.items():
            if isinstance(key, str) and key.isidentifier() and key != "_items" and not hasattr(AppConfig, key):
                object.__setattr__(self, key, value)

    # No __getattr__ on purpose: defining one moves every attribute read of
    # the class to a slower lookup path (64 ns instead of about 20).

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("application settings are read-only; change the files or RQA_APP__* and reload")

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash(tuple(sorted(map(str, self._items))))

    def __repr__(self) -> str:
        return f"AppConfig({', '.join(map(str, self._items))})"

    def get(self, key: str, default: Any = None) -> Any:
        """A value by key, or by dotted path (``get("data.source")``)."""
        if key in self._items:
            return self._items[key]
        node: Any = self
        for part in str(key).split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def __reduce__(self):
        return (AppConfig, (self.to_dict(),))


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return AppConfig(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


EMPTY = AppConfig()


def yaml_files(directory: os.PathLike[str] | str) -> list[str]:
    """Every .yaml/.yml file directly in ``directory`` (not hidden, not a
    ``settings.*`` layer), by name: the files a config_dir adds."""
    names = []
    for entry in os.scandir(directory):
        name = entry.name
        if name.startswith(".") or name.lower().startswith("settings."):
            continue
        if name.lower().endswith((".yaml", ".yml")) and entry.is_file():
            names.append(name)
    return sorted(names)
