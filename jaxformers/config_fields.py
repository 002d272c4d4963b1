"""Frozen dataclasses <-> ConfigDicts: the typed reading behind `jaxformers/config.py`.

`from_mapping` builds a (nested) frozen dataclass from a mapping and rejects unknown keys and wrong
types in one line naming the dotted field; `default_config_dict` turns a dataclass's defaults into a
ConfigDict, so every field can be set from the command line.
"""

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import ml_collections
from ml_collections.config_dict import placeholder

from jaxformers.errors import UserError


class ConfigError(UserError, ValueError):
    """A config field is unknown, of the wrong type or inconsistent with another."""


def need(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)


def _check_type(path: str, value: Any, annotation: Any) -> Any:
    """Coerce ints to floats where a float is expected; otherwise demand the annotated type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(path, value, option)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        choices = typing.get_args(annotation)
        need(value in choices, f"{path}={value!r}; expected one of {list(choices)}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool):
        ok = isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(
                f"{path}={value!r} has type {type(value).__name__}; expected {annotation.__name__}"
            )
    return value


def from_mapping(cls, values: Mapping[str, Any], path: str = "model"):
    """Build the (nested) frozen dataclass `cls` from a mapping, rejecting unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in dict(values).items():
        if key not in fields:
            raise ConfigError(f"unknown config key {path}.{key}; valid keys: {sorted(fields)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping) and not hasattr(value, "items"):
                raise ConfigError(f"{path}.{key} must be a mapping of {hint.__name__} fields")
            kwargs[key] = from_mapping(hint, dict(value.items()), f"{path}.{key}")
        else:
            kwargs[key] = _check_type(f"{path}.{key}", value, hint)
    return cls(**kwargs)


def default_config_dict(cls):
    """Every field of `cls` with its default, as a ConfigDict, so that any model field can be set
    from the command line (`--config.model.mlp_dim=512`) even when the config file does not name
    it. Fields that default to None become typed placeholders; nested options recurse."""
    hints = typing.get_type_hints(cls)
    out = ml_collections.ConfigDict()
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            out[field.name] = default_config_dict(hint)
            continue
        default = field.default
        if default is None:
            options = [o for o in typing.get_args(hint) if o is not type(None)] or [object]
            default = placeholder(typing.get_origin(options[0]) or options[0])
        out[field.name] = default
    return out
