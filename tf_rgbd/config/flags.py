"""absl flags generated from the config dataclasses (never re-declared by hand).

A program defines its flags from a default config instance and builds its config back from
the parsed flags, as TF Model Garden's ``--config_file`` / ``--params_override`` do::

    CONFIG_FLAGS = config_flags.define_config_flags(DepthTrainingConfig(),
                                                    required=("data_dir", "model_dir"))

    def main(argv):
        config = CONFIG_FLAGS.config()          # after absl parsed the command line

Every leaf field of the (nested) dataclass becomes one flag named like the field (names must
be unique across the nesting); its default is the default instance's value and its help the
field's ``metadata["help"]`` or, failing that, the field's entry in the class docstring's
``Attributes:`` section. Field metadata ``choices`` makes an enum flag; ``flag=False`` keeps a
field off the command line (values filled by the program, e.g. ``num_classes``).

Two flags come with every config:

* ``--config_file=PATH``: a JSON or YAML file of the config (nested as in the run's
  ``config.json``; partial files are merged over the defaults). ``config.json`` of a run
  re-runs it exactly.
* ``--override=KEY=VALUE`` (repeatable): ``KEY`` a field name or a dotted path
  (``run.batch_size``); the value is parsed as the field's type (``a,b`` for tuples, ``none``
  for an empty optional).

Precedence, lowest first: the defaults (or a program's preset of them, e.g. ``--quick``),
``--config_file``, flags given on the command line, ``--override``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from typing import Any, Iterable, Mapping, Optional, Sequence

from absl import flags

from tf_rgbd import config as config_lib

CONFIG_FILE_FLAG = "config_file"
OVERRIDE_FLAG = "override"


@dataclasses.dataclass(frozen=True)
class LeafField:
    """One flag: where its value lives in the nested config and how to parse it."""

    name: str
    path: tuple[str, ...]
    type: Any
    default: Any
    help: str
    choices: Optional[tuple] = None


def _docstring_help(config_cls: type) -> dict[str, str]:
    """Field name -> help text from the ``Attributes:`` section of a class docstring.

    Entries are ``name: text`` (continuation lines indented deeper); ``a / b: text`` and
    ``a, b: text`` give the same text to several fields.
    """
    doc = config_cls.__doc__ or ""
    match = re.search(r"^\s*Attributes:\s*$", doc, re.M)
    if not match:
        return {}
    helps: dict[str, str] = {}
    current: list[str] = []
    text: list[str] = []
    entry_indent = None

    def flush():
        if current:
            joined = " ".join(" ".join(text).split())
            for name in current:
                helps[name] = joined

    for line in doc[match.end():].splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        entry = re.match(r"^\s*([A-Za-z_][\w]*(?:\s*[/,]\s*[A-Za-z_][\w]*)*)\s*:\s*(.*)$", line)
        if entry and (entry_indent is None or indent <= entry_indent):
            flush()
            entry_indent = indent
            current = [name.strip() for name in re.split(r"[/,]", entry.group(1))]
            text = [entry.group(2)]
        elif entry_indent is not None and indent > entry_indent:
            text.append(line.strip())
        else:
            break
    flush()
    return helps


def leaf_fields(config: Any, prefix: tuple[str, ...] = ()) -> dict[str, LeafField]:
    """Every flag-bearing leaf field of a (nested) config instance, by flag name."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{config!r} is not a dataclass instance")
    hints = typing.get_type_hints(type(config))
    helps = _docstring_help(type(config))
    leaves: dict[str, LeafField] = {}
    for field in dataclasses.fields(config):
        if not field.metadata.get("flag", True):
            continue
        value = getattr(config, field.name)
        field_type = hints[field.name]
        if dataclasses.is_dataclass(field_type):
            nested = leaf_fields(value, prefix + (field.name,))
            clash = sorted(set(nested) & set(leaves))
            if clash:
                raise ValueError(f"{type(config).__name__}: flag names {clash} appear twice in "
                                 "the nested config; rename one of the fields")
            leaves.update(nested)
            continue
        if field.name in leaves:
            raise ValueError(f"{type(config).__name__}: flag name {field.name!r} appears twice "
                             "in the nested config; rename one of the fields")
        help_text = field.metadata.get("help") or helps.get(field.name) or ""
        choices = field.metadata.get("choices")
        leaves[field.name] = LeafField(field.name, prefix + (field.name,), field_type, value,
                                       help_text, tuple(choices) if choices else None)
    return leaves


def _base_type(field_type: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of ``Optional[X]`` / ``X``."""
    origin = typing.get_origin(field_type)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        options = [option for option in typing.get_args(field_type) if option is not type(None)]
        if len(options) == 1:
            return options[0], True
    return field_type, False


def _tuple_item_type(field_type: Any) -> Any:
    args = typing.get_args(field_type)
    return args[0] if args else str


def _is_tuple(field_type: Any) -> bool:
    return typing.get_origin(field_type) is tuple


def define_config_flags(default_config: Any, flag_values: flags.FlagValues = flags.FLAGS,
                        required: Iterable[str] = (), exclude: Iterable[str] = (),
                        with_config_file: bool = True) -> "ConfigFlags":
    """Defines one absl flag per leaf field of ``default_config`` (+ config_file / override).

    Args:
      default_config: the program's default config instance (its values are the defaults).
      flag_values: where to define them (``absl.flags.FLAGS``).
      required: fields that must be given (here or in ``--config_file``); checked by
        :func:`config_from_flags`, which knows about the config file.
      exclude: field names the program does not expose.
      with_config_file: also define ``--config_file`` and ``--override``.

    Returns:
      The :class:`ConfigFlags` that turns the parsed flags back into a config.
    """
    excluded = set(exclude)
    leaves = {name: leaf for name, leaf in leaf_fields(default_config).items()
              if name not in excluded}
    required = set(required)
    unknown = sorted(required - set(leaves))
    if unknown:
        raise ValueError(f"required fields {unknown} are not fields of "
                         f"{type(default_config).__name__}")
    for name, leaf in leaves.items():
        base, optional = _base_type(leaf.type)
        help_text = (leaf.help or f"{name} (undocumented)") + (
            " (required)" if name in required else "")
        default = leaf.default
        if _is_tuple(base):
            flags.DEFINE_list(name, None if default is None else [str(v) for v in default],
                              help_text, flag_values=flag_values)
        elif base is bool:
            flags.DEFINE_boolean(name, default, help_text, flag_values=flag_values)
        elif base is int:
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif base is float:
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        elif leaf.choices:
            flags.DEFINE_enum(name, default, [str(c) for c in leaf.choices], help_text,
                              flag_values=flag_values)
        elif base is str:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)
        else:
            raise TypeError(f"{name}: no flag type for {leaf.type!r}")
        del optional
    if with_config_file and CONFIG_FILE_FLAG not in flag_values:
        flags.DEFINE_string(CONFIG_FILE_FLAG, None,
                            "JSON or YAML file of the whole config (e.g. a run's config.json); "
                            "flags given on the command line and --override win over it.",
                            flag_values=flag_values)
        flags.DEFINE_multi_string(OVERRIDE_FLAG, [],
                                  "KEY=VALUE (repeatable): set a config field by name or "
                                  "dotted path (run.batch_size=32); applied last.",
                                  flag_values=flag_values)
    return ConfigFlags(default_config, flag_values, leaves, frozenset(required))


def parse_value(leaf: LeafField, text: str) -> Any:
    """Parses ``text`` as ``leaf``'s type (``--override`` values)."""
    base, optional = _base_type(leaf.type)
    stripped = text.strip()
    if optional and stripped.lower() in ("none", "null"):
        return None
    if _is_tuple(base):
        item_type = _tuple_item_type(base)
        items = [item.strip() for item in stripped.split(",") if item.strip()]
        return tuple(_parse_scalar(item_type, item, leaf.name) for item in items)
    return _parse_scalar(base, stripped, leaf.name)


def _parse_scalar(value_type: Any, text: str, name: str) -> Any:
    try:
        if value_type is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {text!r}")
        if value_type is int:
            return int(text)
        if value_type is float:
            return float(text)
    except ValueError as error:
        raise ValueError(f"--override {name}={text}: {error}") from error
    return text


def _flag_value(leaf: LeafField, value: Any) -> Any:
    base, _ = _base_type(leaf.type)
    if value is None:
        return None
    if _is_tuple(base):
        item_type = _tuple_item_type(base)
        return tuple(_parse_scalar(item_type, str(item), leaf.name) for item in value)
    return value


def _set_path(tree: dict, path: Sequence[str], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _get_path(tree: Mapping, path: Sequence[str]) -> Any:
    node: Any = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _deep_merge(base: dict, update: Mapping, where: str) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if key not in merged:
            raise ValueError(f"{where}: unknown config key {key!r}; known: {sorted(merged)}")
        if isinstance(merged[key], dict) and isinstance(value, Mapping):
            merged[key] = _deep_merge(merged[key], value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged


def read_config_file(path: str) -> dict:
    """A config file as a nested dict (JSON, or YAML for ``.yaml``/``.yml``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--config_file={path}: no such file")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml  # noqa: PLC0415 (only YAML configs need it)
            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # json.JSONDecodeError, yaml.YAMLError
        raise ValueError(f"--config_file={path}: cannot be parsed ({error})") from error
    if not isinstance(values, dict):
        raise ValueError(f"--config_file={path}: expected a mapping of config fields, got "
                         f"{type(values).__name__}")
    return values


@dataclasses.dataclass(frozen=True)
class ConfigFlags:
    """The flags of one config (from :func:`define_config_flags`)."""

    default_config: Any
    flag_values: flags.FlagValues
    leaves: Mapping[str, LeafField]
    required: frozenset

    def config(self, preset: Optional[Mapping[str, Any]] = None, **program_values: Any) -> Any:
        """The config of the parsed flags; ``program_values`` (by field name) win over all;
        ``preset`` (top-level fields, e.g. a ``--quick`` size preset) replaces the defaults,
        so the file, flags and overrides still win over it."""
        return config_from_flags(self.default_config, self.flag_values, self.required,
                                 preset=preset, **program_values)


def config_from_flags(default_config: Any, flag_values: flags.FlagValues = flags.FLAGS,
                      required: Iterable[str] = (), preset: Optional[Mapping[str, Any]] = None,
                      **program_values: Any) -> Any:
    """The config described by the parsed flags (see the module docstring for precedence).

    Args:
      default_config: the same default instance the flags were defined from.
      flag_values: parsed flags.
      required: fields that must not be empty after everything is applied.
      preset: top-level field values that replace the defaults (lowest precedence after them).
      **program_values: leaf fields the program sets itself (by flag name), applied last.

    Raises:
      ValueError: a required field is still empty, an override names no field, a config file
        has unknown keys, or the config's own validation fails (the message says which).
    """
    leaves = leaf_fields(default_config)
    all_leaves = _all_leaf_paths(default_config)
    tree = config_lib.to_dict(dataclasses.replace(default_config, **(preset or {})))
    config_file = (flag_values[CONFIG_FILE_FLAG].value
                   if CONFIG_FILE_FLAG in flag_values else None)
    if config_file:
        values = read_config_file(config_file)
        saved_class = values.pop("config_class", None)
        if saved_class and saved_class != type(default_config).__name__:
            raise ValueError(f"--config_file={config_file} holds a {saved_class}, this program "
                             f"takes a {type(default_config).__name__}")
        tree = _deep_merge(tree, values, f"--config_file={config_file}")
    for name, leaf in leaves.items():
        # Given on the command line (or assigned in Python): wins over the defaults and the file.
        if name in flag_values and not flag_values[name].using_default_value:
            _set_path(tree, leaf.path, _flag_value(leaf, flag_values[name].value))
    overrides = flag_values[OVERRIDE_FLAG].value if OVERRIDE_FLAG in flag_values else []
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--override={item}: expected KEY=VALUE")
        key, text = item.split("=", 1)
        key = key.strip()
        leaf = leaves.get(key) or all_leaves.get(key)
        if leaf is None:
            raise ValueError(f"--override={item}: {key!r} is not a config field; fields: "
                             f"{sorted(leaves)}")
        _set_path(tree, leaf.path, parse_value(leaf, text))
    for name, value in program_values.items():
        leaf = leaves.get(name) or all_leaves.get(name)
        if leaf is None:
            raise ValueError(f"{name!r} is not a field of {type(default_config).__name__}")
        _set_path(tree, leaf.path, value)
    required = set(required) & set(leaves)
    missing = sorted(name for name in required
                     if _get_path(tree, leaves[name].path) in (None, "", ()))
    if missing:
        raise ValueError("missing required flag(s): "
                         + ", ".join(f"--{name}" for name in missing))
    return config_lib.from_dict(type(default_config), tree)


def _all_leaf_paths(config: Any, prefix: tuple[str, ...] = ()) -> dict[str, LeafField]:
    """Every leaf (flag or not) by dotted path, for ``--override``."""
    hints = typing.get_type_hints(type(config))
    leaves: dict[str, LeafField] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        path = prefix + (field.name,)
        if dataclasses.is_dataclass(hints[field.name]):
            leaves.update(_all_leaf_paths(value, path))
        else:
            leaves[".".join(path)] = LeafField(field.name, path, hints[field.name], value, "")
    return leaves
