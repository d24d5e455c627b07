"""Build the registry from the settings: built-ins, a Python module, a webhooks file, MCP servers."""

from __future__ import annotations

import logging

from voxline.agent.tools.builtins import builtin_tools
from voxline.agent.tools.registry import ToolRegistry
from voxline.config import Settings

log = logging.getLogger(__name__)


async def load_tools(settings: Settings) -> ToolRegistry:
    """Every configured tool, connected (MCP) and checked; a bad declaration raises ValueError."""
    registry = ToolRegistry(timeout_s=settings.tool_timeout_s, filler_after_s=settings.tool_filler_after_s,
                            filler_text=settings.tool_filler_text, max_rounds=settings.tool_max_rounds)
    try:
        for tool in builtin_tools(settings.tools_builtin):
            registry.add(tool)
        if settings.tools_module:
            from voxline.agent.tools.python import tools_from_module

            for tool in tools_from_module(settings.tools_module):
                registry.add(tool)
        if settings.tools_webhooks:
            from voxline.agent.tools.webhook import Webhooks

            hooks = Webhooks(settings.tools_webhooks, settings.tool_timeout_s)
            registry.closers.append(hooks.close)
            for tool in hooks.tools():
                registry.add(tool)
        for target in settings.tools_mcp:
            from voxline.agent.tools.mcp import McpServer

            server = McpServer(target)
            registry.closers.append(server.close)
            for tool in await server.connect():
                registry.add(tool)
    except BaseException:
        await registry.close()
        raise
    log.info("tools ready: %s", ", ".join(f"{t.name} ({t.source})" for t in registry.tools.values()) or "none")
    return registry
