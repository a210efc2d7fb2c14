"""The mapping file (`ladder-mcp.toml`, read with the standard library's tomllib).

    [gateway]                     # all optional
    url = "http://127.0.0.1:8000" # else $LADDER_URL; the token is only ever $LADDER_TOKEN
    hold_seconds = 45             # longest a call is held waiting for a person
    progress_seconds = 5          # a progress notification this often while held
    retry_window_seconds = 900    # same tool + same arguments within it = the same run
    rung_refresh_seconds = 10     # how often the rungs are re-read (tools/list_changed)

    [[tools]]
    name = "send_email"           # the upstream tool
    kind = "act"                  # "read": forwarded and recorded; "act": a run proposal
    workflow = "support-reply"
    action = "reply.send"
    summary = "Reply to {to}: {subject}"   # what the reviewer reads, formatted with params
    params = { to = "recipient" }  # optional: tool argument -> action param

Tools without an entry are hidden from the agent.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("read", "act")


class ConfigError(Exception):
    """The mapping file, or the environment, is not usable; the message says why."""


@dataclass(frozen=True)
class ToolMapping:
    name: str
    kind: str
    workflow: str | None = None
    action: str | None = None
    summary: str | None = None
    #: tool argument name -> action param name (others keep their own name)
    params: dict[str, str] = field(default_factory=dict)

    def to_action(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {self.params.get(k, k): v for k, v in arguments.items()}

    def to_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        back = {v: k for k, v in self.params.items()}
        return {back.get(k, k): v for k, v in params.items()}


@dataclass(frozen=True)
class Config:
    url: str
    token: str
    tools: dict[str, ToolMapping]
    hold_seconds: float = 45.0
    progress_seconds: float = 5.0
    retry_window_seconds: float = 900.0
    rung_refresh_seconds: float = 10.0
    #: SDK retries for each gateway request (LadderClient's own default is 6, ~13 s).
    gateway_retries: int = 3
    path: str = ""

    @property
    def workflows(self) -> list[str]:
        return sorted({t.workflow for t in self.tools.values() if t.workflow})


_GATEWAY_NUMBERS = {
    "hold_seconds": (0.0, 3600.0),
    "progress_seconds": (0.05, 600.0),
    "retry_window_seconds": (1.0, 30 * 86400.0),
    "rung_refresh_seconds": (0.05, 86400.0),
    "retries": (0, 20),
}


def parse(
    document: dict[str, Any], *, env: dict[str, str] | None = None, path: str = "<config>"
) -> Config:
    """A `Config` from a parsed TOML document, or `ConfigError` naming every problem."""
    env = dict(os.environ if env is None else env)
    problems: list[str] = []
    unknown = sorted(set(document) - {"gateway", "tools"})
    if unknown:
        problems.append(f"unknown top-level keys {unknown} (expected [gateway] and [[tools]])")
    gateway = document.get("gateway") or {}
    if not isinstance(gateway, dict):
        problems.append("[gateway] must be a table")
        gateway = {}
    numbers: dict[str, float] = {}
    for key, value in gateway.items():
        if key == "url":
            continue
        if key not in _GATEWAY_NUMBERS:
            problems.append(f"[gateway] has an unknown key '{key}'")
            continue
        low, high = _GATEWAY_NUMBERS[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"[gateway] {key} must be a number")
        elif not low <= value <= high:
            problems.append(f"[gateway] {key} must be between {low:g} and {high:g}")
        else:
            numbers[key] = value
    url = env.get("LADDER_URL") or gateway.get("url") or ""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append("no gateway URL: set LADDER_URL (or [gateway] url) to http(s)://host:port")
    token = env.get("LADDER_TOKEN", "")
    if not token:
        problems.append(
            "no agent token: set LADDER_TOKEN (manage.py create_agent_token WORKFLOW… prints one)"
        )
    tools: dict[str, ToolMapping] = {}
    entries = document.get("tools")
    if not isinstance(entries, list) or not entries:
        problems.append("no [[tools]] entries: map at least one upstream tool")
        entries = []
    for n, entry in enumerate(entries, 1):
        where = f"[[tools]] #{n}"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a table")
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: 'name' (the upstream tool's name) is required")
            continue
        where = f"[[tools]] '{name}'"
        extra = sorted(set(entry) - {"name", "kind", "workflow", "action", "summary", "params"})
        if extra:
            problems.append(f"{where}: unknown keys {extra}")
        kind = entry.get("kind")
        if kind not in KINDS:
            problems.append(f'{where}: kind must be "read" or "act", not {kind!r}')
        workflow, action = entry.get("workflow"), entry.get("action")
        if kind == "act" and not (isinstance(workflow, str) and workflow):
            problems.append(f"{where}: an act tool needs 'workflow' (the workflow's slug)")
        if kind == "act" and not (isinstance(action, str) and action):
            problems.append(f"{where}: an act tool needs 'action' (an action type's name)")
        if workflow is not None and not isinstance(workflow, str):
            problems.append(f"{where}: 'workflow' must be a string")
        summary = entry.get("summary")
        if summary is not None and not isinstance(summary, str):
            problems.append(f"{where}: 'summary' must be a string")
        params = entry.get("params") or {}
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            problems.append(f"{where}: 'params' must map tool argument names to param names")
            params = {}
        elif len(set(params.values())) != len(params):
            problems.append(f"{where}: 'params' maps two arguments onto one param")
        if name in tools:
            problems.append(f"{where} is mapped twice")
        tools[name] = ToolMapping(
            name=name,
            kind=str(kind),
            workflow=workflow if isinstance(workflow, str) else None,
            action=action if isinstance(action, str) else None,
            summary=summary if isinstance(summary, str) else None,
            params=dict(params),
        )
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return Config(
        url=url,
        token=token,
        tools=tools,
        hold_seconds=float(numbers.get("hold_seconds", 45.0)),
        progress_seconds=float(numbers.get("progress_seconds", 5.0)),
        retry_window_seconds=float(numbers.get("retry_window_seconds", 900.0)),
        rung_refresh_seconds=float(numbers.get("rung_refresh_seconds", 10.0)),
        gateway_retries=int(numbers.get("retries", 3)),
        path=path,
    )


def load(path: str | Path, *, env: dict[str, str] | None = None) -> Config:
    """Read and check the mapping file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {p}: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    return parse(document, env=env, path=str(p))
