"""Typed dataclass configs built from plain dicts, refusing unknown keys and wrong types by name.

A leaf module (style.md habit 8): every room may import it, it imports nothing of ours but errors.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from .errors import UserError

T = TypeVar("T")


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Return value converted to tp where that is lossless (int -> float, list -> tuple), else raise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            try:
                return _check_type(value, arm, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(f"{where} must be {' or '.join(_arm_name(a) for a in typing.get_args(tp))}, "
                        f"got {value!r}.")
    if tp is type(None):
        if value is None:
            return None
        raise UserError(f"{where} must be None, got {value!r}.")
    if typing.get_origin(tp) is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise UserError(f"{where} must be one of {list(typing.get_args(tp))}, got {value!r}.")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where} must be a list, got {value!r}.")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping, got {value!r}.")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping of options, got {value!r}.")
        return from_dict(tp, value, where=where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where} must be a number, got {value!r}.")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where} must be an integer, got {value!r}.")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {value!r}.")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where} must be a string, got {value!r}.")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        try:
            return tp(value)  # enums from their value
        except (TypeError, ValueError):
            raise UserError(f"{where} must be {_type_name(tp)}, got {value!r}.") from None
    return value


def _arm_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return {float: "a number", int: "an integer", bool: "true/false", str: "a string"}.get(tp, _type_name(tp))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str | None = None) -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise UserError naming the key."""
    data = dict(data or {})
    where = where or cls.__name__
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(
            f"Unknown option {where}.{unknown[0]}; known options are: {', '.join(sorted(names))}."
        )
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"Invalid {where}: {e}.") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """The plain-value dict of a (nested) dataclass config, suitable for JSON and YAML."""
    out = dataclasses.asdict(obj)

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if hasattr(v, "value") and not isinstance(v, (int, float, str, bool)):
            return v.value  # enums
        return v

    return plain(out)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Apply one `--set a.b.c=value` override to a nested dict, creating levels as needed."""
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f"Cannot set {key}: {p} is not a group of options.")
    node[parts[-1]] = value
