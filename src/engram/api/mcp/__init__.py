"""Engram over the Model Context Protocol (SPEC §12): the same tools over stdio and Streamable HTTP.

    tools.py    the tool table: arguments (schema + validation), descriptions, operation, rendering
    engines.py  what the tools call: EngramService in-process, or a running server over REST
    server.py   the low-level MCP server over that table; where the space comes from; tool errors
    endpoint.py /mcp on the REST application: the route, and loading http.py on the first POST
    http.py     /mcp's MCP app (stateless Streamable HTTP, space per request), with the SDK
    stdio.py    `engram mcp`: stdio, bound to one space; in-process or through a running server
"""
