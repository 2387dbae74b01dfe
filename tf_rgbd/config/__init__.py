"""Experiment configs: frozen dataclasses that print, save next to a run, and reload.

Each area keeps its dataclasses in its own module (``tf_rgbd.config.<area>``); this module holds
the machinery they share (dict round trips, JSON files, field helpers). Programs generate their
flags from the configs and fill configs from them in ``main()`` (:mod:`tf_rgbd.config.flags`);
the library never reads flags.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Mapping, Sequence, Type, TypeVar

from tf_rgbd import io_utils

ConfigT = TypeVar("ConfigT")


def choice(default: Any, choices: Sequence[Any], help: str = "") -> Any:  # noqa: A002
    """A dataclass field whose flag is an enum of ``choices``."""
    return dataclasses.field(default=default,
                             metadata={"choices": tuple(choices), "help": help})


def no_flag(default: Any) -> Any:
    """A dataclass field that gets no flag (the program fills it)."""
    return dataclasses.field(default=default, metadata={"flag": False})


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (possibly nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=io_utils.json_default))


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
