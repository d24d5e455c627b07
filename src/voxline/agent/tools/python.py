"""Tools from a Python module: each public function, its typed signature as the JSON schema.

The module (`tools_module`, e.g. `mycompany.voice_tools`) exports its tools in `__all__`, or
else every public function defined in it is one. The docstring's first paragraph describes the
tool; an `Args:` section (Google style, `name: text`) describes the parameters. Async
functions are awaited (and cancelled with the reply); plain ones run in a thread, where a
timeout or a barge-in stops waiting for them but cannot stop them.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

from voxline.agent.tools.registry import Tool, ToolError, as_text

_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean"}


def tools_from_module(name: str) -> list[Tool]:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"tools module {name!r} cannot be imported: {exc}") from exc
    exported = getattr(module, "__all__", None)
    if exported is not None:
        functions = [getattr(module, n) for n in exported]
    else:
        functions = [f for n, f in vars(module).items()
                     if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == module.__name__]
    return [tool_from_function(f) for f in functions if callable(f)]


def tool_from_function(func: Callable[..., Any]) -> Tool:
    """A Tool for `func`; its parameters must be typed (str, int, float, bool, Literal, list, dict, Optional)."""
    hints = typing.get_type_hints(func)
    doc = inspect.getdoc(func) or ""
    described = _arg_docs(doc)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if pname not in hints:
            raise ValueError(f"tool {func.__name__}: parameter {pname!r} has no type hint")
        schema = _schema(hints[pname], f"{func.__name__}.{pname}")
        if pname in described:
            schema["description"] = described[pname]
        properties[pname] = schema
        if param.default is param.empty:
            required.append(pname)
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    summary = doc.split("\n\n")[0].replace("\n", " ").strip() or func.__name__.replace("_", " ")

    async def run(args: dict[str, Any]) -> str:
        unknown = set(args) - set(properties)
        missing = [r for r in required if r not in args]
        if unknown or missing:
            raise ToolError(f"{func.__name__} takes {sorted(properties)}; missing {missing}, unknown {sorted(unknown)}")
        if inspect.iscoroutinefunction(func):
            return as_text(await func(**args))
        return as_text(await asyncio.to_thread(func, **args))

    return Tool(func.__name__, summary, parameters, run, source="python")


def _schema(hint: Any, where: str) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return _schema(options[0], where)
        return {"anyOf": [_schema(a, where) for a in options]}
    if hint is list or origin is list:
        args = typing.get_args(hint)
        return {"type": "array", **({"items": _schema(args[0], where)} if args else {})}
    if hint is dict or origin is dict:
        return {"type": "object"}
    raise ValueError(f"tool parameter {where}: type {hint!r} has no JSON schema here "
                     "(use str, int, float, bool, Literal, list, dict or Optional of them)")


def _arg_docs(doc: str) -> dict[str, str]:
    """`name: text` lines of a docstring's Args: section."""
    match = re.search(r"^(?:Args|Arguments|Parameters):\s*$(.*?)(?:^\S|\Z)", doc, re.M | re.S)
    if not match:
        return {}
    out: dict[str, str] = {}
    for line in match.group(1).splitlines():
        m = re.match(r"\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out
