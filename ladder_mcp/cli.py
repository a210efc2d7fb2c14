"""`python -m ladder_mcp`: run the gating proxy, or write a suggested mapping file."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.server.stdio import stdio_server

from ladder_mcp.config import ConfigError, load
from ladder_mcp.gate import Gate, StartupError
from ladder_mcp.server import build_server

log = logging.getLogger("ladder_mcp")

USAGE = """\
python -m ladder_mcp --config ladder-mcp.toml [--http PORT] -- UPSTREAM_CMD [ARG …]
python -m ladder_mcp --config ladder-mcp.toml [--http PORT] --upstream-url URL
python -m ladder_mcp init -- UPSTREAM_CMD [ARG …]      (prints a suggested ladder-mcp.toml)
"""


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def suggest(tools: list[types.Tool]) -> str:
    """A mapping file from the upstream's tools. Annotations only seed the guess: a tool
    is "read" when it says it is read-only, else "act"; a person must check each."""
    lines = [
        "# ladder-mcp mapping: written by `python -m ladder_mcp init`; check every entry.",
        "# Annotations are the server's hints, never trusted: `kind` is your decision.",
        "# Unmapped tools are hidden from the agent. Token: $LADDER_TOKEN.",
        "",
        "[gateway]",
        'url = "http://127.0.0.1:8000"  # or $LADDER_URL',
        "hold_seconds = 45",
        "",
    ]
    for tool in tools:
        read_only = bool(tool.annotations and tool.annotations.read_only_hint)
        lines += ["[[tools]]", f"name = {_toml(tool.name)}"]
        if tool.description:
            lines.append(f"# {tool.description.splitlines()[0][:100]}")
        if read_only:
            lines.append('kind = "read"  # the server says read-only')
        else:
            lines += [
                'kind = "act"',
                'workflow = "CHANGE-ME"  # the workflow slug this action belongs to',
                f"action = {_toml(tool.name.replace('_', '.'))}  # its action type's name",
                f"summary = {_toml(tool.name + ' {' + '} {'.join(_props(tool)) + '}')}"
                if _props(tool)
                else f"summary = {_toml(tool.name)}",
            ]
        lines.append("")
    return "\n".join(lines)


def _props(tool: types.Tool) -> list[str]:
    return list((tool.input_schema or {}).get("properties") or {})[:3]


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _init(upstream: list[str]) -> str:
    server = StdioServerParameters(command=upstream[0], args=upstream[1:])
    async with Client(server, mode="legacy") as client:
        return suggest((await client.list_tools()).tools)


async def _serve(config: Any, upstream: list[str] | str, http_port: int | None) -> None:
    async with Gate(config, upstream=upstream) as gate:
        server = build_server(gate)
        names = ", ".join(gate.visible_names()) or "none"
        rungs = ", ".join(f"{k} L{v}" for k, v in sorted(gate.rungs.items()))
        print(f"ladder-mcp: ready ({rungs}); tools shown: {names}", file=sys.stderr, flush=True)
        if http_port is None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
            return
        import uvicorn

        app = server.streamable_http_app(host="127.0.0.1")
        uv = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=http_port, log_level="warning")
        )
        print(f"ladder-mcp: serving http://127.0.0.1:{http_port}/mcp", file=sys.stderr, flush=True)
        await uv.serve()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="ladder-mcp: %(message)s")
    own, upstream = _split(argv)
    if own[:1] == ["init"]:
        if not upstream:
            print("usage: " + USAGE, file=sys.stderr)
            return 2
        sys.stdout.write(anyio.run(_init, upstream))
        return 0
    parser = argparse.ArgumentParser(prog="python -m ladder_mcp", usage=USAGE)
    parser.add_argument("--config", required=True, help="the mapping file (TOML)")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP")
    parser.add_argument("--upstream-url", help="an upstream MCP server over HTTP")
    args = parser.parse_args(own)
    if bool(upstream) == bool(args.upstream_url):
        print(
            "ladder-mcp: give the upstream either after `--` (a command) or as "
            "--upstream-url, not both",
            file=sys.stderr,
        )
        return 2
    try:
        config = load(args.config)
        anyio.run(_serve, config, args.upstream_url or upstream, args.http)
    except (ConfigError, StartupError) as exc:
        print(f"ladder-mcp: cannot start: {exc}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:
        known = group.subgroup((ConfigError, StartupError))
        if known is None:
            raise
        print(f"ladder-mcp: cannot start: {known.exceptions[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
