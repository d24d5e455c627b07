"""The field types of the bus messages: checked on decode, written as JSON Schema for the OpenAPI document.

Works on any dataclass whose fields are annotated with bool, int, float, str, Any, None,
unions of them, `list[...]` and `dict[str, ...]`: the message dataclasses of `messages`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union

_SPECS: dict[type[Any], tuple[tuple[str, Any, bool], ...]] = {}


def field_specs(cls: type[Any]) -> tuple[tuple[str, Any, bool], ...]:
    """Each field's name, annotated type and whether it is required (computed once per class)."""
    if cls not in _SPECS:
        hints = typing.get_type_hints(cls)
        _SPECS[cls] = tuple((f.name, hints[f.name], f.default is dataclasses.MISSING
                             and f.default_factory is dataclasses.MISSING) for f in dataclasses.fields(cls))
    return _SPECS[cls]


def hint_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of one annotated field type."""
    if hint is Any:
        return {}
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (Union, types.UnionType):
        inner = hint_schema(args[0]) if len(args) == 1 else {"anyOf": [hint_schema(a) for a in args]}
        return {"anyOf": [inner, {"type": "null"}]}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    if typing.get_origin(hint) is dict:
        return {"type": "object", "additionalProperties": hint_schema(args[1])}
    if typing.get_origin(hint) is list:
        return {"type": "array", "items": hint_schema(args[0])}
    raise TypeError(f"no JSON Schema for {hint!r}: extend hint_schema")


def fits(value: Any, hint: Any) -> bool:
    """Whether a decoded JSON value has the field's annotated type (bools are not numbers)."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return any(fits(value, arg) for arg in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is dict:
        return isinstance(value, dict) and all(fits(v, typing.get_args(hint)[1]) for v in value.values())
    if origin is list:
        return isinstance(value, list) and all(fits(v, typing.get_args(hint)[0]) for v in value)
    return False
