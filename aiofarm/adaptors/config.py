"""Configuration layering as openjd-adaptor-runtime does it, minus its side effects.

Layers, later ones overriding earlier ones key by key (top-level keys only, as the
official runtime merges):

- runtime: built-in defaults, ``/etc/openjd/adaptors/runtime/configuration.json``,
  ``~/.openjd/adaptors/runtime/configuration.json``, then ``$RUNTIME_CONFIG_PATH``;
- adaptor ``<Name>``: ``<adaptor module dir>/<Name>.json``,
  ``/etc/openjd/adaptors/<Name>/<Name>.json``, ``~/.openjd/adaptors/<Name>/<Name>.json``,
  then ``$<NAME>_CONFIG_PATH``.

A missing layer is skipped: unlike the official runtime, nothing here creates an empty
default or user file. A ``<Name>.schema.json`` beside the adaptor module (or in
``$ADAPTOR_CONFIG_SCHEMA_PATH``) validates every layer when jsonschema is installed.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # not typing's: a per-task frontend imports this module (mypy reads it as true)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

RUNTIME_DEFAULTS: dict[str, Any] = {"log_level": "INFO", "deactivate_telemetry": False}

#: aiofarm's own runtime keys (read when present; shown by show-config only when set).
STARTUP_TIMEOUT_KEY = "startup_timeout_s"
IDLE_TIMEOUT_KEY = "idle_timeout_s"
DEFAULT_STARTUP_TIMEOUT = 60.0
DEFAULT_IDLE_TIMEOUT = 3600.0


class ConfigError(ValueError):
    """A configuration file is unreadable or invalid; the message names it."""


def _system_root() -> str:
    return "/etc" if os.name == "posix" else os.environ.get("PROGRAMDATA", "C:\\ProgramData")


def _read(path: str, schema: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"cannot decode configuration {path}: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"configuration {path} is not a JSON object")
    level = value.get("log_level")
    if level is not None and level not in LOG_LEVELS:
        raise ConfigError(f"configuration {path}: log_level must be one of {', '.join(LOG_LEVELS)}")
    if schema is not None:
        try:
            import jsonschema  # type: ignore[import-untyped]
        except ImportError:  # validation is best effort without the optional package
            pass
        else:
            try:
                jsonschema.validate(value, schema)
            except jsonschema.ValidationError as exc:
                raise ConfigError(f"configuration {path} is invalid: {exc.message}") from None
    return value


def layer_paths_runtime() -> list[str]:
    paths = [
        os.path.join(_system_root(), "openjd", "adaptors", "runtime", "configuration.json"),
        os.path.expanduser(os.path.join("~", ".openjd", "adaptors", "runtime", "configuration.json")),
    ]
    extra = os.environ.get("RUNTIME_CONFIG_PATH")
    if extra:
        paths.append(extra)
    return paths


def runtime_config() -> dict[str, Any]:
    config = dict(RUNTIME_DEFAULTS)
    for path in layer_paths_runtime():
        layer = _read(path, None)
        if layer:
            config.update(layer)
    return config


def layer_paths_adaptor(name: str, module_dir: str | None) -> list[str]:
    paths = []
    if module_dir:
        paths.append(os.path.join(module_dir, f"{name}.json"))
    paths.append(os.path.join(_system_root(), "openjd", "adaptors", name, f"{name}.json"))
    paths.append(os.path.expanduser(os.path.join("~", ".openjd", "adaptors", name, f"{name}.json")))
    extra = os.environ.get(f"{name.upper()}_CONFIG_PATH")
    if extra:
        paths.append(extra)
    return paths


def adaptor_config(name: str, module_dir: str | None) -> dict[str, Any]:
    schema = None
    schema_dir = os.environ.get("ADAPTOR_CONFIG_SCHEMA_PATH") or module_dir
    if schema_dir:
        schema_path = os.path.join(schema_dir, f"{name}.schema.json")
        if os.path.isfile(schema_path):
            try:
                with open(schema_path, encoding="utf-8") as f:
                    schema = json.load(f)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read configuration schema {schema_path}: {exc}") from None
    config: dict[str, Any] = {"log_level": "INFO"}
    for path in layer_paths_adaptor(name, module_dir):
        layer = _read(path, schema)
        if layer:
            config.update(layer)
    return config


def seconds(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"configuration key {key} must be a positive number of seconds")
    return float(value)
