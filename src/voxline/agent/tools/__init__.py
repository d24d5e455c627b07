"""Tools the agent may call while it answers: Python functions, HTTP webhooks, MCP servers, built-ins.

`load_tools(settings)` builds the one registry an agent process shares between its sessions.
"""

from voxline.agent.tools.loader import load_tools
from voxline.agent.tools.registry import Tool, ToolError, ToolRegistry, ToolResult

__all__ = ["Tool", "ToolError", "ToolRegistry", "ToolResult", "load_tools"]
