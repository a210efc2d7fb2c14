"""The MCP gating proxy: an existing MCP agent on the Autonomy Ladder, unchanged.

    python -m ladder_mcp --config ladder-mcp.toml -- UPSTREAM_CMD …     (stdio)
    python -m ladder_mcp --config ladder-mcp.toml --http 8765 -- UPSTREAM_CMD …
    python -m ladder_mcp init -- UPSTREAM_CMD … > ladder-mcp.toml

Built on the official `mcp` SDK and the project's own `ladder_client`; never Django or
the server's code. See docs/mcp.md.
"""
