"""Tools a Realtime session can use: argument checks and MCP servers (``parley.tools.mcp``)."""
