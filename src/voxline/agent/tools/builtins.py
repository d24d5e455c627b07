"""The tools every agent has unless switched off: the time, and ending the call."""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voxline.agent.tools.registry import Tool, ToolError

BUILTIN_NAMES = ("time", "end_call")


async def _time(args: dict[str, Any]) -> str:
    zone = args.get("timezone")
    try:
        tz = ZoneInfo(zone) if isinstance(zone, str) and zone else None
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"unknown time zone {zone!r}; use an IANA name such as Europe/Paris") from exc
    now = datetime.datetime.now(tz).astimezone(tz)
    return now.strftime("%A %d %B %Y, %H:%M %Z").strip()


async def _end_call(args: dict[str, Any]) -> str:
    return "The call ends once your reply has been heard: say a short goodbye now."


def builtin_tools(names: tuple[str, ...] | list[str]) -> list[Tool]:
    tools = {
        "time": Tool("get_time", "The current date and time (the server's zone unless one is given).",
                     {"type": "object", "properties": {"timezone": {
                         "type": "string", "description": "IANA time zone, e.g. Europe/London"}}, "required": []},
                     _time, source="builtin"),
        "end_call": Tool("end_call", "Hang up: end the phone call when the caller says goodbye or asks to end it.",
                         {"type": "object", "properties": {}, "required": []}, _end_call,
                         source="builtin", ends_call=True),
    }
    unknown = [n for n in names if n not in tools]
    if unknown:
        raise ValueError(f"unknown built-in tools {unknown} (expected some of {list(tools)})")
    return [tools[n] for n in names]
