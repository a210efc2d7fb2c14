"""The gating proxy in process: an MCP client → the proxy (ladder_mcp) → an in-process
upstream MCP server (tests/mcp/ledger_tool_server.py), with the gateway live
(pytest-django's live_server, on the test database) and a reviewer deciding through the
review forms over HTTP. Each outcome on both protocol versions: 2025-11-25 (the
initialize handshake, JSON-RPC over memory streams) and 2026-07-28 (per-request)."""

import re
import sys
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client

from approvals.roles import role_grant
from ladder.rungs import Executor
from ladder.services import rung_demote
from ladder_mcp.config import parse
from ladder_mcp.gate import Gate
from ladder_mcp.server import build_server
from tests.factories import ActionTypeFactory, UserFactory, WorkflowFactory
from traces.models import DemoLedgerEntry, Run, TraceEvent
from traces.services.policy import policy_set
from traces.services.tokens import token_create

sys.path.insert(0, str(Path(__file__).parent))
from ledger_tool_server import build, entries

from tests.reviewing import Reviewer

pytestmark = pytest.mark.django_db(transaction=True)

VERSIONS = {"2025-11-25": "legacy", "2026-07-28": "2026-07-28"}
PASSWORD = "pw-for-tests"


@pytest.fixture(params=list(VERSIONS))
def version(request):
    return request.param


class World:
    """Workflows at the rungs asked for, one token for them all, a reviewer."""

    def __init__(self, live_server, tmp_path):
        self.url = live_server.url
        self.ledger = tmp_path / "ledger.jsonl"
        self.state: dict = {}
        self.person = UserFactory(username="mcp-reviewer")
        self.workflows = {}
        self.notices: list = []

    async def _notice(self, message):
        self.notices.append(message)

    def workflow(self, rung: int, *, server_action: bool = False, **kwargs):
        wf = WorkflowFactory(rung=rung, **kwargs)
        ActionTypeFactory(workflow=wf, name="refund.issue")
        if server_action:
            ActionTypeFactory(
                workflow=wf,
                name="refund.server",
                executor=Executor.SERVER,
                executor_path="traces.demo_executors.refund_issue",
            )
        role_grant(workflow=wf, user=self.person, role="reviewer", by=None)
        self.workflows[wf.slug] = wf
        return wf

    def config(self, tools, **gateway):
        _t, token = token_create(name="mcp proxy", workflows=list(self.workflows.values()))
        settings = {
            "url": self.url,
            "hold_seconds": 10,
            "progress_seconds": 0.2,
            "rung_refresh_seconds": 0.3,
            "retries": 1,
            **gateway,
        }
        return parse({"gateway": settings, "tools": tools}, env={"LADDER_TOKEN": token})

    def reviewer(self) -> Reviewer:
        return Reviewer(self.url, self.person.username, PASSWORD)

    def run(self, scenario, tools, version, **gateway):
        """Start the proxy over an in-process upstream and hand `scenario` a connected
        MCP client and the gate."""
        config = self.config(tools, **gateway)

        async def main():
            async with Gate(config, upstream=build(self.ledger, self.state)) as gate:
                client = Client(
                    build_server(gate), mode=VERSIONS[version], message_handler=self._notice
                )
                async with client:
                    assert client.protocol_version == version
                    return await scenario(client, gate)

        return anyio.run(main)


@pytest.fixture
def world(live_server, tmp_path):
    return World(live_server, tmp_path)


def act(wf, tool="issue_refund", action="refund.issue", **extra):
    return {"name": tool, "kind": "act", "workflow": wf.slug, "action": action,
            "summary": "Refund {amount} {currency} on {order_id}", **extra}  # fmt: skip


READ = {"name": "lookup_order", "kind": "read"}


async def call_and_decide(client, tool, arguments, decide=None, **kwargs):
    """Call `tool`; once the run waits for a person (its id arrives in a progress
    notification), `decide(run_id)` in a thread. Returns (result, run id or None)."""
    ids: list[str] = []

    async def on_progress(progress, total, message):
        found = re.search(r"run (\S+) is waiting", message or "")
        if found and found.group(1) not in ids:
            ids.append(found.group(1))

    box = {}

    async def call():
        box["result"] = await client.call_tool(
            tool, arguments, progress_callback=on_progress, **kwargs
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        if decide is not None:
            with anyio.fail_after(20):
                while not ids:
                    await anyio.sleep(0.02)
            await anyio.to_thread.run_sync(decide, ids[0])
    return box["result"], (ids[0] if ids else None)


def text(result) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def meta(result) -> dict:
    return (result.meta or {}).get("ladder") or {}


def test_approve_forwards_once_with_real_values_and_records_the_reads(world, version):
    wf = world.workflow(3)
    reviewer = world.reviewer()

    async def scenario(client, gate):
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"lookup_order", "issue_refund"}  # send_notice is not mapped
        order = await client.call_tool("lookup_order", {"order_id": "A-1"})
        assert order.structured_content["total"] == 30.0
        args = {"order_id": "A-1", "amount": 12.5, "email": "ana@example.com"}
        return await call_and_decide(
            client, "issue_refund", args, lambda rid: reviewer.decide(rid, "approve")
        )

    result, run_id = world.run(scenario, [READ, act(wf)], version)
    assert not result.is_error, text(result)
    assert result.structured_content == {"refund_id": "R-1", "amount": 12.5}
    assert meta(result)["run_id"] == run_id
    ledger = entries(world.ledger)
    assert [(e["order_id"], e["amount"], e["currency"], e["email"]) for e in ledger] == [
        ("A-1", 12.5, "EUR", "ana@example.com")  # the real value, the schema default
    ]
    run = Run.objects.get(pk=run_id)
    assert run.status == "executed"
    assert run.proposal["params"]["email"].startswith("<EMAIL:")
    assert run.proposal["params"]["currency"] == "EUR"
    assert run.summary == "Refund 12.5 EUR on A-1"
    calls = TraceEvent.objects.filter(run=run, type="tool_call")
    assert [e.payload["name"] for e in calls] == ["lookup_order"]


def test_a_reviewers_edit_is_what_runs_and_the_agent_is_told(world, version):
    wf = world.workflow(1)
    reviewer = world.reviewer()

    async def scenario(client, gate):
        args = {"order_id": "A-2", "amount": 30, "email": "bo@example.com"}
        return await call_and_decide(
            client,
            "issue_refund",
            args,
            lambda rid: reviewer.decide(rid, "submit", edits={"amount": 20}),
        )

    result, run_id = world.run(scenario, [act(wf)], version)
    assert not result.is_error, text(result)
    assert [(e["amount"], e["email"]) for e in entries(world.ledger)] == [(20, "bo@example.com")]
    assert "a reviewer changed the arguments" in text(result)
    assert meta(result)["edited"] == {"amount": {"proposed": 30, "final": 20}}
    assert Run.objects.get(pk=run_id).status == "executed"


def test_at_l2_the_option_a_person_picks_is_what_runs(world, version):
    wf = world.workflow(2)
    reviewer = world.reviewer()

    async def scenario(client, gate):
        args = {"order_id": "A-11", "amount": 7}
        return await call_and_decide(
            client, "issue_refund", args, lambda rid: reviewer.decide(rid, "pick", option=0)
        )

    result, run_id = world.run(scenario, [act(wf)], version)
    assert not result.is_error, text(result)
    assert [(e["order_id"], e["amount"]) for e in entries(world.ledger)] == [("A-11", 7)]
    assert Run.objects.get(pk=run_id).status == "executed"


def test_a_rejection_is_a_tool_error_with_the_reason_and_nothing_runs(world, version):
    wf = world.workflow(3)
    reviewer = world.reviewer()

    async def scenario(client, gate):
        args = {"order_id": "A-3", "amount": 5}
        decide = lambda rid: reviewer.decide(rid, "reject", reason="already refunded")  # noqa: E731
        return await call_and_decide(client, "issue_refund", args, decide)

    result, run_id = world.run(scenario, [act(wf)], version)
    assert result.is_error
    assert text(result) == "NOT DONE: rejected: already refunded"
    assert meta(result)["run_id"] == run_id
    assert entries(world.ledger) == []
    assert Run.objects.get(pk=run_id).status == "rejected"


def test_at_l0_act_tools_are_hidden_and_refused_and_a_rung_change_is_announced(world, version):
    wf = world.workflow(0)
    l3 = world.workflow(3)

    async def scenario(client, gate):
        listed = {t.name for t in (await client.list_tools()).tools}
        refused = await client.call_tool("issue_refund", {"order_id": "A-4", "amount": 1})
        # The L3 workflow goes down to L0: its tool leaves the list, and the client is told.

        async def demote():
            await anyio.to_thread.run_sync(
                lambda: rung_demote(workflow=l3, to_rung=0, reason="test", actor=None)
            )

        if version == "2025-11-25":
            # Handshake-era clients get notifications/tools/list_changed on the session.
            before = {t.name for t in (await client.list_tools()).tools}
            await demote()
            with anyio.fail_after(10):
                while not any(
                    isinstance(n, types.ToolListChangedNotification) for n in world.notices
                ):
                    await anyio.sleep(0.02)
        else:
            # 2026-07-28 clients hear it on their subscriptions/listen stream.
            async with client.listen(tools_list_changed=True) as sub:
                before = {t.name for t in (await client.list_tools()).tools}
                await demote()
                with anyio.fail_after(10):
                    async for _event in sub:
                        break
        after = {t.name for t in (await client.list_tools()).tools}
        return listed, refused, before, after

    tools = [READ, act(wf), act(l3, tool="send_notice")]
    listed, refused, before, after = world.run(scenario, tools, version)
    assert listed == {"lookup_order", "send_notice"}
    assert refused.is_error and text(refused).startswith("NOT DONE: refused: workflow")
    assert before == {"lookup_order", "send_notice"}
    assert after == {"lookup_order"}
    assert not Run.objects.filter(workflow=wf).exists()
    assert entries(world.ledger) == []


L4_POLICY = {
    "audit_sample_rate": 0,
    "rules": [
        {"id": "refunds", "kind": "allow_actions", "actions": ["refund.issue"],
         "control": "allowed_tools"},
        {"id": "huge", "kind": "value_cap", "action": "refund.issue", "max": "500.00",
         "then": "deny", "control": "value_cap"},
        {"id": "cap", "kind": "value_cap", "action": "refund.issue", "max": "100.00",
         "then": "escalate", "control": "value_cap"},
    ],
}  # fmt: skip


def test_at_l4_the_policy_allows_denies_or_escalates_at_once(world, version):
    wf = world.workflow(4)
    policy_set(workflow=wf, document=L4_POLICY, by=None)
    reviewer = world.reviewer()

    async def scenario(client, gate):
        allowed, _ = await call_and_decide(
            client, "issue_refund", {"order_id": "A-5", "amount": 60}
        )
        denied, _ = await call_and_decide(
            client, "issue_refund", {"order_id": "A-6", "amount": 900}
        )
        escalated = await call_and_decide(
            client,
            "issue_refund",
            {"order_id": "A-7", "amount": 150},
            lambda rid: reviewer.decide(rid, "approve"),
        )
        return allowed, denied, escalated

    allowed, denied, (escalated, escalated_id) = world.run(scenario, [act(wf)], version)
    assert not allowed.is_error, text(allowed)
    assert denied.is_error and text(denied).startswith("NOT DONE: denied: "), text(denied)
    assert not escalated.is_error, text(escalated)
    assert [e["order_id"] for e in entries(world.ledger)] == ["A-5", "A-7"]
    runs = {r.proposal["params"]["order_id"]: r for r in Run.objects.filter(workflow=wf)}
    assert runs["A-5"].policy["outcome"] == "allow" and runs["A-5"].status == "executed"
    assert runs["A-6"].status == "denied"
    assert runs["A-7"].policy["outcome"] == "escalate" and str(runs["A-7"].pk) == escalated_id
    assert runs["A-7"].status == "executed"


def test_held_past_the_limit_then_a_retry_resumes_the_same_run(world, version):
    wf = world.workflow(3)
    reviewer = world.reviewer()
    args = {"order_id": "A-8", "amount": 9}

    async def scenario(client, gate):
        first, run_id = await call_and_decide(client, "issue_refund", args)
        await anyio.to_thread.run_sync(lambda: reviewer.decide(run_id, "approve"))
        second, _ = await call_and_decide(client, "issue_refund", args)
        third, _ = await call_and_decide(client, "issue_refund", args)
        return first, second, third, run_id

    first, second, third, run_id = world.run(scenario, [act(wf)], version, hold_seconds=1)
    assert first.is_error
    assert text(first) == (
        f"NOT DONE YET: run {run_id} is waiting for approval; call again with the same arguments"
    )
    assert not second.is_error and meta(second)["run_id"] == run_id
    assert second.structured_content == third.structured_content  # the same outcome again
    assert len(entries(world.ledger)) == 1
    assert Run.objects.filter(workflow=wf).count() == 1


def test_client_timeouts_and_retries_execute_the_action_exactly_once(world, version):
    wf = world.workflow(3)
    reviewer = world.reviewer()
    world.state["delay"] = 1.0  # the upstream tool takes a second
    args = {"order_id": "A-9", "amount": 3}

    async def scenario(client, gate):
        # The client gives up while the run waits for a person …
        with pytest.raises(Exception):  # noqa: B017 - the SDK's timeout error
            await call_and_decide(client, "issue_refund", args, read_timeout_seconds=0.5)
        run = await anyio.to_thread.run_sync(lambda: Run.objects.get(workflow=wf))
        await anyio.to_thread.run_sync(lambda: reviewer.decide(str(run.pk), "approve"))
        # … and again while the approved action is being carried out; three retries at
        # once after that.
        with pytest.raises(Exception):  # noqa: B017
            await call_and_decide(client, "issue_refund", args, read_timeout_seconds=0.3)
        results = []
        async with anyio.create_task_group() as tg:
            for _ in range(3):

                async def one():
                    results.append((await call_and_decide(client, "issue_refund", args))[0])

                tg.start_soon(one)
        return results, gate.executed, str(run.pk)

    results, executed, run_id = world.run(scenario, [act(wf)], version)
    assert executed == ["issue_refund"]
    assert len(entries(world.ledger)) == 1
    assert all(not r.is_error for r in results), [text(r) for r in results]
    assert {r.structured_content["refund_id"] for r in results} == {"R-1"}
    assert Run.objects.get(pk=run_id).status == "executed"


def test_an_action_the_server_executes_is_never_forwarded_upstream(world, version):
    wf = world.workflow(3, server_action=True)
    reviewer = world.reviewer()

    async def scenario(client, gate):
        result = await call_and_decide(
            client,
            "send_notice",
            {"order_id": "A-10", "amount": 4.5},
            lambda rid: reviewer.decide(rid, "approve"),
        )
        return result, gate.executed

    (result, run_id), executed = world.run(
        scenario, [act(wf, tool="send_notice", action="refund.server")], version
    )
    assert not result.is_error, text(result)
    assert meta(result)["executor"] == "server"
    assert executed == [] and entries(world.ledger) == []  # the upstream never saw it
    assert DemoLedgerEntry.objects.filter(idempotency_key__endswith=run_id).count() == 1
    assert Run.objects.get(pk=run_id).status == "executed"
