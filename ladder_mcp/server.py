"""The proxy as an MCP server: the low-level `mcp.server.Server`, whose lifespan hands
every handler the `Gate` (the upstream `mcp.Client` and the gateway's SDK client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import ListenHandler

from ladder_mcp.gate import Gate

NAME = "ladder-mcp"


class _Server(Server):
    """Advertises `tools.listChanged` to handshake-era (2025-11-25) clients: the tools
    change with the workflows' rungs. 2026-07-28 clients learn it on `subscriptions/listen`."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


def build_server(gate: Gate) -> Server:
    @asynccontextmanager
    async def lifespan(_server: Server) -> AsyncIterator[Gate]:
        # The gate (upstream client, gateway client) is opened by whoever runs the server
        # (ladder_mcp.cli, or a test), before serving: its start-up checks must fail
        # before any client connects.
        yield gate

    async def on_list_tools(
        ctx: ServerRequestContext[Gate], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=ctx.lifespan_context.list_tools(ctx.session))

    async def on_call_tool(
        ctx: ServerRequestContext[Gate], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        async def progress(waited: float, message: str) -> None:
            await ctx.session.report_progress(waited, None, message)

        return await ctx.lifespan_context.call_tool(params.name, params.arguments, progress)

    return _Server(
        NAME,
        version="1",
        instructions=(
            "Tools that act are gated by the Autonomy Ladder: a call may wait for a person's "
            "approval. 'NOT DONE YET' means call again with the same arguments; 'NOT DONE' "
            "means it was not carried out, with the reason."
        ),
        lifespan=lifespan,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
        on_subscriptions_listen=ListenHandler(gate.bus),
    )
