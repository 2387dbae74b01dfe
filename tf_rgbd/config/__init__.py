"""Experiment configs: frozen dataclasses that print, save next to a run, and reload.

Each area keeps its dataclasses in its own module (``tf_rgbd.config.<area>``); this module holds
the machinery they share. Programs fill configs from absl flags in ``main()`` with
:func:`from_flag_values`; the library never reads flags.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Mapping, Type, TypeVar

from tf_rgbd import io_utils

ConfigT = TypeVar("ConfigT")


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (possibly nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=io_utils._json_default))


def _coerce(field_type: Any, value: Any) -> Any:
    origin = typing.get_origin(field_type)
    if dataclasses.is_dataclass(field_type) and isinstance(value, Mapping):
        return from_dict(field_type, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for option in typing.get_args(field_type):
            if option is type(None):
                continue
            if dataclasses.is_dataclass(option) and isinstance(value, Mapping):
                return from_dict(option, value)
            if typing.get_origin(option) is tuple and isinstance(value, (list, tuple)):
                return tuple(value)
    return value


def from_dict(config_cls: Type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
    """Builds ``config_cls`` from a dict, rejecting unknown keys (typos must not pass silently)."""
    hints = typing.get_type_hints(config_cls)
    names = {field.name for field in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{config_cls.__name__}: unknown config keys {unknown}; known: {sorted(names)}")
    return config_cls(**{key: _coerce(hints[key], value) for key, value in values.items()})


def save_json(config: Any, path: str) -> None:
    """Writes the config as JSON (atomically), e.g. ``model_dir/config.json``."""
    io_utils.atomic_write_json(path, {"config_class": type(config).__name__, **to_dict(config)})


def load_json(config_cls: Type[ConfigT], path: str) -> ConfigT:
    with open(path, encoding="utf-8") as handle:
        values = json.load(handle)
    values.pop("config_class", None)
    return from_dict(config_cls, values)


def from_flag_values(config_cls: Type[ConfigT], flag_values: Any, **overrides: Any) -> ConfigT:
    """Fills ``config_cls`` from parsed absl flags that share its field names.

    Fields without a flag of the same name keep their defaults; ``overrides`` win over both.
    Comma-separated string flags are split for tuple-typed fields.
    """
    hints = typing.get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config_cls):
        if field.name in overrides:
            values[field.name] = overrides[field.name]
            continue
        if field.name not in flag_values:
            continue
        value = flag_values[field.name].value
        if typing.get_origin(hints[field.name]) is tuple and isinstance(value, str):
            value = tuple(item.strip() for item in value.split(",") if item.strip())
        values[field.name] = _coerce(hints[field.name], value)
    return config_cls(**values)
