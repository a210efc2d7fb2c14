"""A stand-in for an MCP agent (Claude Desktop, Claude Code): it launches the command a
client's config would, lists the tools and calls them, printing what the agent would see.

    LADDER_TOKEN=lat_… .venv/bin/python examples/mcp_agent.py ladder-mcp.toml \\
        -- .venv/bin/python tests/mcp/ledger_tool_server.py /tmp/ledger.jsonl

It calls `lookup_order` and then `issue_refund` for order A-1 (12.50 EUR, mail
ana@example.com); decide the run in the browser meanwhile. docs/mcp.md, step 4.
"""

import os
import sys

import anyio
from mcp import Client, StdioServerParameters


async def main(config: str, upstream: list[str]) -> None:
    proxy = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ladder_mcp", "--config", config, "--", *upstream],
        env=dict(os.environ),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    async with Client(proxy) as client:
        print(f"protocol {client.protocol_version}")
        tools = (await client.list_tools()).tools
        print("tools:", ", ".join(t.name for t in tools))
        order = await client.call_tool("lookup_order", {"order_id": "A-1"})
        print("lookup_order →", order.content[0].text)

        async def progress(done, total, message):
            print(f"  … {message} ({done:.0f} s)")

        result = await client.call_tool(
            "issue_refund",
            {"order_id": "A-1", "amount": 12.5, "email": "ana@example.com"},
            progress_callback=progress,
        )
        print("issue_refund →", "ERROR" if result.is_error else "ok", result.content[0].text)
        print("_meta:", (result.meta or {}).get("ladder"))


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.exit(__doc__)
    anyio.run(main, os.path.abspath(args[0]), args[2:])
