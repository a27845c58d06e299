"""Hydra structured configs: each CLI's dataclass is the schema of its yaml.

A CLI registers its dataclass once in hydra's ConfigStore (:func:`register`); its yaml lists that
schema first in ``defaults`` and keeps only what differs from the dataclass defaults. Hydra then
merges yaml and ``key=value`` overrides *into* the dataclass, so an unknown key or a value of the
wrong type is refused by hydra naming the key, and no default is written twice.
:func:`load` composes and returns the typed object (``OmegaConf.to_object``: the dataclasses'
own ``__post_init__`` checks run). :func:`describe` prints a config with the comments of the
dataclass fields, for ``--help``.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import json
import tokenize
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from drope.configs import config_dir

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key that hydra or a dataclass refused (the message names the key)."""


def _writable(node: DictConfig) -> DictConfig:
    """Frozen dataclasses become read-only nodes; hydra must still merge yaml and overrides into them."""
    OmegaConf.set_readonly(node, None)
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _writable(child)
    return node


def register(name: str, schema: type, group: str | None = None) -> str:
    """Store ``schema`` (a dataclass) in hydra's ConfigStore as ``name`` (in ``group``); idempotent."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=name, group=group, node=_writable(OmegaConf.structured(schema)))
    return name


def _message(e: BaseException) -> str:
    """Hydra wraps OmegaConf's error (which names ``full_key``) in its own; keep both lines."""
    parts = [str(e).strip()]
    cause = e.__cause__ or e.__context__
    if cause is not None and str(cause).strip() not in parts[0]:
        parts.append(str(cause).strip())
    return "\n".join(parts)


def compose(group: str, config_name: str, overrides: list[str]) -> DictConfig:
    """The yaml ``configs/<group>/<config_name>.yaml`` (``group=""``: the root) with ``overrides``;
    a bad key or value raises :class:`ConfigError` naming it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(config_dir(group)), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except Exception as e:  # hydra's override/merge/validation errors; their text names the key
        if isinstance(e, FileNotFoundError):
            raise
        raise ConfigError(_message(e)) from e


def to_object(cfg: DictConfig, cls: type[T]) -> T:
    """The typed config; a dataclass ``__post_init__`` or conversion error becomes :class:`ConfigError`."""
    try:
        obj = OmegaConf.to_object(cfg)
    except Exception as e:  # OmegaConf validation (names full_key) or a dataclass check
        raise ConfigError(_message(e)) from e
    _restore_tuples(obj)
    if not isinstance(obj, cls):
        raise ConfigError(f"config composed to {type(obj).__name__}, not {cls.__name__}: is the schema "
                          "listed first in the yaml's defaults?")
    return obj


def _restore_tuples(obj: Any) -> None:
    """OmegaConf returns tuple-typed fields as lists; give them back their declared type, so a typed
    config equals the dataclass built in code (and stays hashable where the dataclass is)."""
    if not dataclasses.is_dataclass(obj):
        return
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, list) and typing.get_origin(hints.get(f.name)) is tuple:
            object.__setattr__(obj, f.name, tuple(v))  # also on frozen dataclasses: the object is ours, new
        else:
            _restore_tuples(v)


def from_dict(d: dict, cls: type[T], where: str = "config") -> T:
    """A recorded config (e.g. from a metrics.json) merged into the schema ``cls`` and typed."""
    try:
        merged = OmegaConf.merge(_writable(OmegaConf.structured(cls)), d)
    except Exception as e:  # OmegaConf names the full key
        raise ConfigError(f"{where}: {_message(e)}") from e
    return to_object(merged, cls)


def as_dict(obj: Any) -> dict:
    """A typed config as plain JSON-able data (tuples become lists), e.g. for metrics.json."""
    return OmegaConf.to_container(OmegaConf.structured(obj), resolve=True)


# ---- --help: the config with the dataclass fields' comments ---------------------------------------------
@lru_cache(maxsize=None)
def field_comments(cls: type) -> dict[str, str]:
    """``{field: trailing comment}`` read from the dataclass source (``name: type = default  # why``)."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__[1:]):  # inherited fields keep their comments
        if dataclasses.is_dataclass(base):
            out.update(field_comments(base))
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return out
    names = {f.name for f in dataclasses.fields(cls)}
    first: dict[int, str] = {}  # line -> the field a class-body line starts with
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        row, col = tok.start
        if tok.type == tokenize.NAME and col == 4 and tok.string in names:
            first.setdefault(row, tok.string)
        elif tok.type == tokenize.COMMENT and row in first:
            out[first[row]] = tok.string.lstrip("#").strip()
    return out


def describe(obj: Any, indent: int = 0) -> str:
    """A typed config as yaml, each field with its comment from the dataclass source."""
    lines = []
    comments = field_comments(type(obj))
    pad = "  " * indent
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        note = f"  # {comments[f.name]}" if f.name in comments else ""
        if dataclasses.is_dataclass(v):
            lines.append(f"{pad}{f.name}:{note}")
            lines.append(describe(v, indent + 1))
        else:
            if isinstance(v, (list, tuple, dict)):  # flow style (json is valid yaml), one line per key
                value = json.dumps(list(v) if isinstance(v, tuple) else v)
            else:
                value = OmegaConf.to_yaml({"v": v}).strip()[3:]
            lines.append(f"{pad}{f.name}: {value}{note}")
    return "\n".join(lines)


def yaml_files(group: str) -> list[Path]:
    return sorted(config_dir(group).glob("*.yaml"))
