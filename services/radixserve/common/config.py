"""Frozen-dataclass configs filled from flags and ``RADIXSERVE_*`` environment variables.

Each field of a service's config dataclass becomes a flag ``--field-name`` whose default comes from
``RADIXSERVE_FIELD_NAME`` when set, else from the dataclass default. Precedence: flag > env >
default. A field's ``metadata={"help": ...}`` becomes the flag's help text. A field whose type is
itself a dataclass (a core config embedded in a service's) contributes its own fields, flags and
variables under their own names.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
ENV_PREFIX = "RADIXSERVE_"


def _base_type(tp: Any) -> Any:
    """``int | None`` -> ``int``; other types unchanged."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _convert(tp: Any, text: str) -> Any:
    base = _base_type(tp)
    if text == "" and base is not str:
        return None
    if base is bool:
        return _parse_bool(text)
    return base(text)


def _converter(tp: Any) -> Callable[[str], Any]:
    """The flag's ``type=``: a lambda (argparse names it ``<lambda>`` in its errors) bound to
    ``tp``."""
    return lambda s: _convert(tp, s)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _leaf_fields(
    cls: type[DataclassInstance] | DataclassInstance,
) -> list[tuple[dataclasses.Field, Any]]:
    """``(field, type)`` of ``cls``, with embedded dataclasses replaced by their own fields."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[dataclasses.Field, Any]] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        out += _leaf_fields(tp) if dataclasses.is_dataclass(tp) else [(f, tp)]
    return out


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds one flag per field of the dataclass ``cls`` (embedded dataclasses included)."""
    for f, tp in _leaf_fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (env {env_name(f.name)})".strip()
        if _base_type(tp) is bool:
            parser.add_argument(flag, type=_parse_bool, nargs="?", const=True, help=help_text)
        else:
            parser.add_argument(flag, type=_converter(tp), help=help_text)


def config_from_namespace(
    cls: type[T], ns: argparse.Namespace | None = None, **overrides: Any
) -> T:
    """Builds ``cls`` from parsed flags, then the environment, then field defaults."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = config_from_namespace(hints[f.name], ns)
            continue
        flag_value = getattr(ns, f.name, None) if ns is not None else None
        if flag_value is not None:
            values[f.name] = flag_value
        elif env_name(f.name) in os.environ:
            try:
                values[f.name] = _convert(hints[f.name], os.environ[env_name(f.name)])
            except ValueError as exc:
                raise ValueError(f"{env_name(f.name)}: {exc}") from exc
    return cls(**values)


def parse_config(cls: type[T], argv: Sequence[str] | None = None, prog: str | None = None) -> T:
    """Parses ``argv`` into ``cls`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip())
    add_config_arguments(parser, cls)
    return config_from_namespace(cls, parser.parse_args(argv))


def parse_configs(
    classes: Sequence[type], argv: Sequence[str] | None = None, prog: str | None = None
) -> list[Any]:
    """Like :func:`parse_config` for several dataclasses sharing one command line (a service's
    own config and e.g. :class:`~radixserve.common.security.SecurityConfig`)."""
    parser = argparse.ArgumentParser(prog=prog, description=(classes[0].__doc__ or "").strip())
    for cls in classes:
        add_config_arguments(parser, cls)
    ns = parser.parse_args(argv)
    return [config_from_namespace(cls, ns) for cls in classes]
