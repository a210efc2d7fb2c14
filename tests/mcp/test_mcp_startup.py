"""`python -m ladder_mcp` refuses to start, saying why, on a bad config, an unreachable
gateway, a token without the mapped workflows, or a mapped tool the upstream lacks; and
`init` writes a mapping file from the upstream's tools."""

import os
import subprocess
import sys
import tomllib

import pytest

from ladder_mcp.config import ConfigError, parse
from tests.traces.live import ROOT, free_port
from traces.services.tokens import token_create

SERVER = str(ROOT / "tests" / "mcp" / "ledger_tool_server.py")


def proxy(tmp_path, config: str, token: str = "lat_x", *extra):  # noqa: S107
    path = tmp_path / "ladder-mcp.toml"
    path.write_text(config)
    env = {**os.environ, "LADDER_TOKEN": token}
    env.pop("LADDER_URL", None)
    argv = [
        sys.executable,
        "-m",
        "ladder_mcp",
        "--config",
        str(path),
        *extra,
        "--",
        sys.executable,
        SERVER,
        str(tmp_path / "ledger.jsonl"),
    ]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr


def mapping(url, slug, tool="issue_refund"):
    return f"""
[gateway]
url = "{url}"
[[tools]]
name = "{tool}"
kind = "act"
workflow = "{slug}"
action = "refund.issue"
"""


def test_a_bad_config_names_every_problem(tmp_path):
    code, err = proxy(tmp_path, '[[tools]]\nname = "issue_refund"\nkind = "write"\n', "")
    assert code == 2
    assert "cannot start" in err
    assert "no gateway URL" in err and "no agent token" in err
    assert 'kind must be "read" or "act"' in err
    code, err = proxy(tmp_path, "this is = not toml [")
    assert code == 2 and "is not valid TOML" in err
    with pytest.raises(ConfigError, match="an act tool needs 'workflow'"):
        parse(
            {"tools": [{"name": "t", "kind": "act"}]},
            env={"LADDER_TOKEN": "t", "LADDER_URL": "http://x"},
        )
    with pytest.raises(ConfigError, match="hold_seconds must be between"):
        parse(
            {"gateway": {"hold_seconds": -1}, "tools": [{"name": "t", "kind": "read"}]},
            env={"LADDER_TOKEN": "t", "LADDER_URL": "http://x"},
        )


def test_an_unreachable_gateway(tmp_path):
    code, err = proxy(tmp_path, mapping(f"http://127.0.0.1:{free_port()}", "wf"))
    assert code == 2
    assert "cannot be reached" in err and "LADDER_URL" in err


@pytest.mark.django_db(transaction=True)
def test_a_token_without_the_workflows_or_an_unknown_token(tmp_path, live_server, make_workflow):
    mapped, other = make_workflow(rung=3), make_workflow(rung=3)
    _t, token = token_create(name="other only", workflows=[other])
    code, err = proxy(tmp_path, mapping(live_server.url, mapped.slug), token)
    assert code == 2
    assert f"the token cannot use workflow '{mapped.slug}'" in err
    assert f"create_agent_token {mapped.slug}" in err
    code, err = proxy(tmp_path, mapping(live_server.url, mapped.slug), "lat_not-a-token")
    assert code == 2 and "refused LADDER_TOKEN" in err


@pytest.mark.django_db(transaction=True)
def test_a_mapped_tool_the_upstream_lacks_or_an_action_the_workflow_lacks(
    tmp_path, live_server, make_workflow
):
    wf = make_workflow(rung=3)
    _t, token = token_create(name="mcp", workflows=[wf])
    code, err = proxy(tmp_path, mapping(live_server.url, wf.slug, tool="wire_money"), token)
    assert code == 2
    assert "the upstream has no tool 'wire_money'" in err and "issue_refund" in err
    code, err = proxy(
        tmp_path, mapping(live_server.url, wf.slug).replace("refund.issue", "refund.nope"), token
    )
    assert code == 2 and "which workflow" in err and "does not have" in err


def test_an_upstream_that_does_not_start(tmp_path):
    path = tmp_path / "ladder-mcp.toml"
    path.write_text('[gateway]\nurl = "http://127.0.0.1:9"\n[[tools]]\nname = "t"\nkind = "read"\n')
    argv = [
        sys.executable,
        "-m",
        "ladder_mcp",
        "--config",
        str(path),
        "--",
        sys.executable,
        "-c",
        "raise SystemExit('no such tool server')",
    ]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, "LADDER_TOKEN": "lat_x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "the upstream MCP server" in done.stderr and "did not start" in done.stderr
    assert "no such tool server" in done.stderr  # its own words, above ours


def test_init_suggests_a_mapping_from_the_upstreams_tools(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ladder_mcp",
            "init",
            "--",
            sys.executable,
            SERVER,
            str(tmp_path / "ledger.jsonl"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    suggested = tomllib.loads(done.stdout)
    kinds = {t["name"]: t["kind"] for t in suggested["tools"]}
    assert kinds == {"lookup_order": "read", "issue_refund": "act", "send_notice": "act"}
