"""End to end on real pieces: an MCP client spawns the proxy (`python -m ladder_mcp`) over
stdio — or talks to it over streamable HTTP (`--http`) — the proxy spawns the ledger tool
server, the gateway is gunicorn as deployed on PostgreSQL, and a reviewer decides through
the review forms over HTTP."""

import os
import re
import sys
from pathlib import Path

import anyio
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from mcp import Client, StdioServerParameters

from approvals.roles import role_grant
from ladder_client import LadderClient
from tests.factories import ActionTypeFactory, UserFactory, WorkflowFactory
from tests.traces.live import HOST, ROOT, Gateway, Process, free_port, service_env, wait_for
from tests.traces.test_worker import live  # noqa: F401 (fixture)
from traces.models import Run
from traces.services.tokens import token_create

sys.path.insert(0, str(Path(__file__).parent))
from ledger_tool_server import entries

from tests.reviewing import Reviewer

pytestmark = pytest.mark.django_db(transaction=True)

SERVER = str(ROOT / "tests" / "mcp" / "ledger_tool_server.py")


class Proxy(Process):
    """`python -m ladder_mcp --http PORT …`, ready once it says it serves."""

    def __init__(self, argv, env):
        super().__init__(argv, env, "ladder-mcp")

    def ready(self):
        def serving():
            if self.proc.poll() is not None:
                raise AssertionError(f"ladder_mcp exited:\n{self.output()}")
            return "serving http" in self.output()

        wait_for(serving, timeout=30, what="ladder_mcp to serve", on_timeout=self.output)


def _setup(live, tmp_path):  # noqa: F811
    gateway = live.add(
        Gateway(service_env(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")), workers=1)
    )
    wf = WorkflowFactory(rung=3)
    ActionTypeFactory(workflow=wf, name="refund.issue")
    person = UserFactory(username="e2e-reviewer")
    # gunicorn checks passwords with the deployed hashers, not the tests' fast MD5.
    hasher = PBKDF2PasswordHasher()
    person.password = hasher.encode("pw-for-tests", hasher.salt())
    person.save(update_fields=["password"])
    role_grant(workflow=wf, user=person, role="reviewer", by=None)
    _t, token = token_create(name="mcp e2e", workflows=[wf])
    config = tmp_path / "ladder-mcp.toml"
    config.write_text(
        f"""
[gateway]
url = "http://{HOST}:{gateway.port}"
hold_seconds = 30
progress_seconds = 0.3

[[tools]]
name = "lookup_order"
kind = "read"

[[tools]]
name = "issue_refund"
kind = "act"
workflow = "{wf.slug}"
action = "refund.issue"
summary = "Refund {{amount}} {{currency}} on {{order_id}}, mail {{email}}"
"""
    )
    base = f"http://{HOST}:{gateway.port}"
    return gateway, wf, token, config, Reviewer(base, person.username, "pw-for-tests"), base


async def _scenario(client, reviewer):
    async def decided(tool, args, verdict, reason=""):
        ids = []

        async def on_progress(progress, total, message):
            found = re.search(r"run (\S+) is waiting", message or "")
            if found and not ids:
                ids.append(found.group(1))

        box = {}

        async def call():
            box["r"] = await client.call_tool(tool, args, progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            with anyio.fail_after(30):
                while not ids:
                    await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(lambda: reviewer.decide(ids[0], verdict, reason=reason))
        return box["r"], ids[0]

    listed = {t.name for t in (await client.list_tools()).tools}
    order = await client.call_tool("lookup_order", {"order_id": "E-1"})
    approved = await decided(
        "issue_refund",
        {"order_id": "E-1", "amount": 12.5, "email": "ana.lima@example.com"},
        "approve",
    )
    rejected = await decided(
        "issue_refund", {"order_id": "E-2", "amount": 99}, "reject", "not eligible"
    )
    return listed, order, approved, rejected


def _check(results, ledger, wf, token, base):
    listed, order, (approved, approved_id), (rejected, rejected_id) = results
    assert listed == {"lookup_order", "issue_refund"}
    assert order.structured_content["order_id"] == "E-1"
    assert not approved.is_error, approved.content
    assert approved.structured_content == {"refund_id": "R-1", "amount": 12.5}
    assert approved.meta["ladder"]["run_id"] == approved_id
    assert rejected.is_error
    assert rejected.content[0].text == "NOT DONE: rejected: not eligible"
    assert rejected.meta["ladder"]["run_id"] == rejected_id
    # The ledger: one entry, for the approval, with the real address delivered.
    assert [(e["order_id"], e["email"], e["saw_token"]) for e in entries(ledger)] == [
        ("E-1", "ana.lima@example.com", False)
    ]
    run = Run.objects.get(pk=approved_id)
    assert run.status == "executed"
    assert Run.objects.get(pk=rejected_id).status == "rejected"
    stored = run.proposal["params"]["email"]
    assert re.fullmatch(r"<EMAIL:[0-9a-f]{16}>", stored), stored
    assert "ana.lima" not in str(run.proposal) and "ana.lima" not in str(run.result)
    with LadderClient(base, token) as sdk:
        replay = sdk.replay(approved_id)
    assert replay["verified"] and replay["complete"], replay.get("problems")


@pytest.mark.parametrize("version", ["2025-11-25", "2026-07-28"])
def test_stdio_client_proxy_upstream_gateway_and_reviewer(live, tmp_path, version):  # noqa: F811
    _gateway, wf, token, config, reviewer, base = _setup(live, tmp_path)
    ledger = tmp_path / "ledger.jsonl"
    env = {**os.environ, "LADDER_TOKEN": token}
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "ladder_mcp",
            "--config",
            str(config),
            "--",
            sys.executable,
            SERVER,
            str(ledger),
        ],
        env=env,
        cwd=str(ROOT),
    )

    async def main():
        mode = "legacy" if version == "2025-11-25" else version
        async with Client(params, mode=mode) as client:
            assert client.protocol_version == version
            return await _scenario(client, reviewer)

    _check(anyio.run(main), ledger, wf, token, base)


def test_streamable_http_client_proxy_upstream_gateway_and_reviewer(live, tmp_path):  # noqa: F811
    _gateway, wf, token, config, reviewer, base = _setup(live, tmp_path)
    ledger = tmp_path / "ledger.jsonl"
    port = free_port()
    env = {**os.environ, "LADDER_TOKEN": token}
    argv = [
        sys.executable,
        "-m",
        "ladder_mcp",
        "--config",
        str(config),
        "--http",
        str(port),
        "--",
        sys.executable,
        SERVER,
        str(ledger),
    ]
    live.add(Proxy(argv, env))

    async def main():
        async with Client(f"http://{HOST}:{port}/mcp") as client:  # negotiates 2026-07-28
            return await _scenario(client, reviewer)

    _check(anyio.run(main), ledger, wf, token, base)
