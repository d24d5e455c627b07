"""Tools that are HTTP endpoints, declared in a YAML or JSON file (`tools_webhooks`).

    tools:
      - name: get_weather
        description: Today's weather in a city.
        url: https://example.com/weather        # POST the arguments as JSON (default)
        method: GET                             # or: the arguments as the query string
        headers: {Authorization: "Bearer ${WEATHER_TOKEN}"}   # ${VAR}: from the environment
        timeout_s: 3                            # optional; else tool_timeout_s
        parameters:                             # JSON schema of the arguments
          type: object
          properties: {city: {type: string}}
          required: [city]

The response body (text, or JSON given to the model as it is) is the result; a status >= 400
is an error the model hears about.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import aiohttp

from voxline.agent.tools.registry import MAX_RESULT_CHARS, Tool, ToolError

MAX_FILE_BYTES = 1_000_000
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def read_declarations(path: str) -> list[dict[str, Any]]:
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"webhook tools file {path} does not exist")
    if file.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"webhook tools file {path} is over {MAX_FILE_BYTES} bytes")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml  # type: ignore[import-untyped]

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml's and json's errors, one message
        raise ValueError(f"webhook tools file {path} is not valid {file.suffix[1:] or 'YAML'}: {exc}") from exc
    entries = data.get("tools") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"webhook tools file {path}: expected a list of tools under 'tools'")
    return entries


class Webhooks:
    """The webhook tools of one file, sharing one HTTP session."""

    def __init__(self, path: str, timeout_s: float) -> None:
        self.entries = read_declarations(path)
        self.path = path
        self.timeout_s = timeout_s
        self.session: aiohttp.ClientSession | None = None

    def tools(self) -> list[Tool]:
        return [self._tool(i, e) for i, e in enumerate(self.entries)]

    def _tool(self, index: int, entry: dict[str, Any]) -> Tool:
        where = f"{self.path}: tool {index + 1}"
        name, url = entry.get("name"), entry.get("url")
        if not isinstance(name, str) or not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"{where} needs a 'name' and an http(s) 'url'")
        method = str(entry.get("method", "POST")).upper()
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise ValueError(f"{where}: method {method!r} is not an HTTP method")
        parameters = entry.get("parameters") or {"type": "object", "properties": {}}
        headers = entry.get("headers") or {}
        if not isinstance(parameters, dict) or not isinstance(headers, dict):
            raise ValueError(f"{where}: 'parameters' and 'headers' must be mappings")
        timeout = float(entry.get("timeout_s") or self.timeout_s)
        expanded = {str(k): _ENV.sub(lambda m: os.environ.get(m.group(1), ""), str(v)) for k, v in headers.items()}

        async def run(args: dict[str, Any]) -> str:
            return await self._call(method, url, expanded, args, timeout)

        return Tool(name, str(entry.get("description") or name), parameters, run, source="webhook")

    async def _call(self, method: str, url: str, headers: dict[str, str], args: dict[str, Any], limit_s: float) -> str:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in args.items()} if method == "GET" else None
        body = None if method == "GET" else args
        try:
            async with self.session.request(method, url, params=query, json=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=limit_s)) as resp:
                raw = await resp.content.read(MAX_RESULT_CHARS * 4)
                text = raw.decode("utf-8", "replace")
                if resp.status >= 400:
                    raise ToolError(f"the service answered HTTP {resp.status}: {text[:300]}")
                return text
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ToolError(f"the service could not be reached ({type(exc).__name__}: {exc})") from exc

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
