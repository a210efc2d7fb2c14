"""A small MCP tool server that keeps a ledger file: the "existing tool server" the
gating proxy is put in front of, unchanged. One JSON line per refund it issues.

    python tests/mcp/ledger_tool_server.py LEDGER      # serves over stdio

Tools: `lookup_order` (reads), `issue_refund` (acts: appends to the ledger),
`send_notice` (acts; mapped to an action the server executes, so never called).
`build(ledger, state)` gives the same server in-process; `state["delay"]` slows
`issue_refund` down (seconds), for the tests of cancelled calls.
"""

import json
import os
import sys
import time
from pathlib import Path

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

TOOLS = [
    types.Tool(
        name="lookup_order",
        description="Look an order up by id.",
        input_schema={
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name="issue_refund",
        description="Refund (part of) an order and mail the customer.",
        input_schema={
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "amount": {"type": "number"},
                "currency": {"type": "string", "default": "EUR"},
                "email": {"type": "string"},
            },
            "required": ["order_id", "amount"],
        },
        annotations=types.ToolAnnotations(destructive_hint=True),
    ),
    types.Tool(
        name="send_notice",
        description="Tell the customer something.",
        input_schema={
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
        },
    ),
]


def entries(ledger: Path) -> list[dict]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]


def build(ledger: Path, state: dict | None = None) -> Server:
    state = state if state is not None else {}

    async def on_list_tools(ctx, params):
        return types.ListToolsResult(tools=TOOLS)

    async def on_call_tool(ctx, params):
        args = params.arguments or {}
        if params.name == "lookup_order":
            order = {"order_id": args.get("order_id"), "total": 30.0, "status": "delivered"}
            return types.CallToolResult(
                content=[types.TextContent(text=json.dumps(order))], structured_content=order
            )
        if params.name == "issue_refund":
            if state.get("delay"):
                await anyio.sleep(state["delay"])
            entry = {
                "refund_id": f"R-{len(entries(ledger)) + 1}",
                "order_id": args.get("order_id"),
                "amount": args.get("amount"),
                "currency": args.get("currency"),
                "email": args.get("email"),
                "at": time.time(),
                "pid": os.getpid(),
                # The proxy keeps the agent token to itself.
                "saw_token": "LADDER_TOKEN" in os.environ,
            }
            with ledger.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            answer = {"refund_id": entry["refund_id"], "amount": entry["amount"]}
            return types.CallToolResult(
                content=[types.TextContent(text=json.dumps(answer))], structured_content=answer
            )
        if params.name == "send_notice":
            with ledger.open("a") as f:
                f.write(json.dumps({"notice": args}) + "\n")
            return types.CallToolResult(content=[types.TextContent(text="sent")])
        return types.CallToolResult(
            content=[types.TextContent(text=f"no tool {params.name}")], is_error=True
        )

    return Server("ledger-tools", version="1", on_list_tools=on_list_tools,
                  on_call_tool=on_call_tool)  # fmt: skip


async def main(ledger: Path) -> None:
    server = build(ledger)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
