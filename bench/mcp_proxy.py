"""The MCP gating proxy's own overhead on a read tool: median added milliseconds per call.

    .venv/bin/python bench/mcp_proxy.py [--calls 400] [--rounds 4] [--json]

Two MCP clients, each over stdio, call `lookup_order` of tests/mcp/ledger_tool_server.py
with a distinct order id per call: one talks to the tool server directly, the other to
`python -m ladder_mcp --config … -- python tests/mcp/ledger_tool_server.py …`. The blocks
alternate (direct, proxy, direct, proxy …) so that the VM's drift falls on both. A read tool
never reaches the gateway (it is only remembered for the next proposal), and the mapping
maps no act tool, so no gateway needs to run: what is measured is the proxy alone, one
more stdio hop and its handling (the MCP server, the gate, the upstream `mcp.Client`).
"""

# ruff: noqa: E402 - the imports below must come after the sys.path fix
from __future__ import annotations

import os
import sys

# bench/ also holds queue.py, named like the standard library's `queue`: take this folder
# off the import path before anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
SERVER = str(ROOT / "tests" / "mcp" / "ledger_tool_server.py")
CONFIG = """
[gateway]
url = "http://127.0.0.1:9"   # never contacted: no act tool is mapped
[[tools]]
name = "lookup_order"
kind = "read"
"""


async def timed_calls(client: Client, start: int, count: int) -> list[float]:
    times = []
    for i in range(start, start + count):
        began = time.perf_counter()
        result = await client.call_tool("lookup_order", {"order_id": f"B-{i}"})
        times.append((time.perf_counter() - began) * 1000)
        assert not result.is_error and result.structured_content["order_id"] == f"B-{i}"
    return times


async def main(calls: int, rounds: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
    config = tmp / "ladder-mcp.toml"
    config.write_text(CONFIG)
    ledger = str(tmp / "ledger.jsonl")
    env = {**os.environ, "LADDER_TOKEN": "lat_bench-unused"}
    direct = StdioServerParameters(command=sys.executable, args=[SERVER, ledger], env=env)
    proxied = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ladder_mcp", "--config", str(config), "--", sys.executable, SERVER, ledger],
        env=env,
        cwd=str(ROOT),
    )
    samples: dict[str, list[float]] = {"direct": [], "proxy": []}
    async with Client(direct, mode="legacy") as d, Client(proxied, mode="legacy") as p:
        await timed_calls(d, 0, 30)  # warm both
        await timed_calls(p, 0, 30)
        n = 0
        for _ in range(rounds):
            for name, client in (("direct", d), ("proxy", p)):
                samples[name] += await timed_calls(client, n, calls)
                n += calls
    med = {k: statistics.median(v) for k, v in samples.items()}
    p95 = {k: statistics.quantiles(v, n=20)[18] for k, v in samples.items()}
    return {
        "calls_each": len(samples["direct"]),
        "median_ms": med,
        "p95_ms": p95,
        "added_median_ms": med["proxy"] - med["direct"],
        "added_p95_ms": p95["proxy"] - p95["direct"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per block")
    parser.add_argument("--rounds", type=int, default=4, help="blocks per side")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = anyio.run(main, args.calls, args.rounds)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"| read tool over stdio ({out['calls_each']} calls each) | median | p95 |")
        print("|---|---|---|")
        for k in ("direct", "proxy"):
            print(f"| {k} | {out['median_ms'][k]:.3f} ms | {out['p95_ms'][k]:.3f} ms |")
        print(f"| added by the proxy | {out['added_median_ms']:.3f} ms | "
              f"{out['added_p95_ms']:.3f} ms |")  # fmt: skip
