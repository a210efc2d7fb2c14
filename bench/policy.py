"""Policy evaluation: ladder/policy.py beside peer engines on the same 100-rule envelope.

Run (the peers live in the `bench` dependency group, which `make` never installs):

    uv run --group bench python bench/policy.py            # or, after `uv sync --group bench`:
    .venv/bin/python bench/policy.py [--proposals 2000] [--rounds 5]

Every engine gets the envelope of bench/policy_envelope.py (100 rules of every kind over
five allowed actions) translated once into its own language, and the same proposals with
the same counters. Before timing, each engine's outcome (allow / escalate / deny) is checked
against ours on every proposal, so the figures compare engines deciding the same thing.

Ours starts from the raw proposal and the counters. The peers are handed a context that is
already flattened for them (the proposal's value and currency picked out, rate-limit sums
added up, one field per action-scoped parameter), and that preparation is NOT counted in
their time; only ours pays for its own. Times are per evaluation, wall clock, one thread,
interleaved rounds (every engine runs once per round), p50/p99 over all rounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import operator
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.policy_envelope import ACTIONS, envelope, proposals  # noqa: E402
from ladder.policy import Counters, compile_policy, evaluate, parse_policy  # noqa: E402

ORDER = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


# ---------------------------------------------------------------------------------------
# Inputs


def counters_for(doc: dict, rng: random.Random) -> Counters:
    rates = {
        r["id"]: (
            (rng.randrange(0, 104), Decimal(rng.randrange(0, 500000)) / 100)
            if r["per"] == "workflow"
            else (rng.choice((0, 0, 0, 0, 0, 1, 1, 2, 3)), Decimal(0))
        )
        for r in doc["rules"]
        if r["kind"] == "rate_limit"
    }
    seen = {r["id"]: rng.random() < 0.95 for r in doc["rules"] if r["kind"] == "first_seen"}
    return Counters(rates=rates, seen=seen)


def prepared(doc: dict, proposal: dict, counters: Counters) -> dict:
    """What the peers get for free: value, currency, rate sums and scoped fields."""
    action = proposal["action"]
    value_param, currency_param = ACTIONS[action]
    params = proposal["params"]
    value = Decimal(params[value_param]) if value_param else None
    currency = params.get(currency_param, "") if currency_param else ""
    rates = {}
    seen = {}
    for rule in doc["rules"]:
        if rule.get("action", action) != action:
            continue
        if rule["kind"] == "rate_limit":
            count, total = counters.rates[rule["id"]]
            rates[rule["id"]] = (count + 1, total + (value or 0))
        elif rule["kind"] == "first_seen":
            seen[rule["id"]] = counters.seen[rule["id"]]
    return {
        "action": action,
        "params": params,
        "flags": proposal["flags"],
        "value": value,
        "currency": currency,
        "rates": rates,
        "seen": seen,
    }


def flat(doc: dict, ctx: dict) -> dict:
    """One field per test for single-condition engines (AGT, the closure floor)."""
    action = ctx["action"]
    out: dict = {"action": action}
    for name, raw in ctx["params"].items():
        out[f"*|{name}"] = raw
        out[f"{action}|{name}"] = raw
    for name in _presence_params(doc):
        if ctx["params"].get(name) is None:
            out[f"*|{name}|missing"] = True
            out[f"{action}|{name}|missing"] = True
    for flag in ctx["flags"]:
        out[f"flag|{flag}"] = True
    if ctx["value"] is not None:
        out[f"{action}|value|{ctx['currency']}"] = ctx["value"]
        out[f"{action}|uncovered"] = ctx["currency"] not in ("EUR", "USD", "GBP")
    for rid, (count, total) in ctx["rates"].items():
        out[f"rate|{rid}|count"] = count
        out[f"rate|{rid}|total"] = total
    for rid, was_seen in ctx["seen"].items():
        out[f"seen|{rid}"] = was_seen
    return out


def _presence_params(doc: dict) -> set[str]:
    return {
        r["when"]["param"]
        for r in doc["rules"]
        if r["kind"] == "condition" and r["when"]["op"] in ("missing", "exists")
    }


def flat_rules(doc: dict) -> list[tuple[str, str, str, str, object]]:
    """The envelope as (id, then, field, op, value) single-condition rules."""
    out = []
    uncovered_done = set()
    for r in doc["rules"]:
        kind, rid = r["kind"], r["id"]
        then = r.get("then", "deny")
        scope = r.get("action", "*")
        if kind == "allow_actions":
            out.append((rid, "deny", "action", "not_in", list(r["actions"])))
        elif kind == "value_cap":
            field = f"{r['action']}|value|{r['currency']}"
            out.append((rid, then, field, "gt", Decimal(r["max"])))
            if r["action"] not in uncovered_done:
                uncovered_done.add(r["action"])
                out.append((rid, then, f"{r['action']}|uncovered", "eq", True))
        elif kind == "flag":
            out.append((rid, then, f"flag|{r['flag']}", "eq", True))
        elif kind == "rate_limit":
            if "max_count" in r:
                out.append((rid, then, f"rate|{rid}|count", "gt", r["max_count"]))
            if "max_value" in r:
                out.append((rid, then, f"rate|{rid}|total", "gt", Decimal(r["max_value"])))
        elif kind == "first_seen":
            out.append((rid, then, f"seen|{rid}", "eq", False))
        else:
            when = r["when"]
            field = f"{scope}|{when['param']}"
            if when["op"] == "missing":
                out.append((rid, then, f"{field}|missing", "eq", True))
            elif when["op"] in ORDER:
                out.append((rid, then, field, when["op"], Decimal(str(when["value"]))))
            else:
                out.append((rid, then, field, when["op"], when["value"]))
    return out


# ---------------------------------------------------------------------------------------
# Engines: each is (prepare, evaluate) with evaluate(prepared) -> "allow"|"escalate"|"deny"


def engine_ours(doc: dict):
    compiled = compile_policy(parse_policy(doc, actions=ACTIONS), actions=ACTIONS)

    def run(item):
        return evaluate(compiled, item[0], item[1]).outcome

    return (lambda doc, proposal, counters: (proposal, counters)), run


def engine_closures(doc: dict):
    """The floor: one Python closure per flat rule over a pre-flattened dict."""
    checks = []
    for _rid, then, field, op, value in flat_rules(doc):
        deny = then == "deny"
        if op == "eq":
            checks.append((deny, lambda c, f=field, v=value: c.get(f) == v))
        elif op == "ne":
            checks.append((deny, lambda c, f=field, v=value: f in c and c[f] != v))
        elif op == "in":
            s = frozenset(value)
            checks.append((deny, lambda c, f=field, s=s: c.get(f) in s))
        elif op == "not_in":
            s = frozenset(value)
            checks.append((deny, lambda c, f=field, s=s: f in c and c[f] not in s))
        else:
            cmp = {"lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge}[op]
            checks.append((deny, lambda c, f=field, v=value, cmp=cmp: f in c and cmp(c[f], v)))
    checks = tuple(checks)

    def run(ctx):
        outcome = "allow"
        for deny, check in checks:
            if check(ctx):
                if deny:
                    return "deny"
                outcome = "escalate"
        return outcome

    return (lambda doc, proposal, counters: flat(doc, prepared(doc, proposal, counters))), run


def engine_agt(doc: dict):
    from agent_os.policies.evaluator import PolicyEvaluator
    from agent_os.policies.schema import (
        PolicyAction,
        PolicyCondition,
        PolicyDocument,
        PolicyOperator,
        PolicyRule,
    )

    rules = [
        PolicyRule(
            name=f"{rid}#{i}",
            condition=PolicyCondition(field=field, operator=PolicyOperator(op), value=value),
            # First match wins: deny rules above escalate ("block") rules; no match = allow.
            action=PolicyAction.DENY if then == "deny" else PolicyAction.BLOCK,
            priority=2 if then == "deny" else 1,
        )
        for i, (rid, then, field, op, value) in enumerate(flat_rules(doc))
    ]
    evaluator = PolicyEvaluator(policies=[PolicyDocument(name="envelope", rules=rules)])

    def run(ctx):
        decision = evaluator.evaluate(ctx)
        return {"deny": "deny", "block": "escalate"}.get(decision.action, "allow")

    return (lambda doc, proposal, counters: flat(doc, prepared(doc, proposal, counters))), run


def engine_agt_shared(doc: dict):
    from agent_os.policies.shared import Condition, SharedPolicyEvaluator, SharedPolicyRule

    rules = []
    for i, (rid, then, field, op, value) in enumerate(flat_rules(doc)):
        if op in ("lte", "gte"):
            # Its operators stop at gt/lt: move the bound by less than any value in the data.
            step = Decimal("0.000001")
            op, value = ("lt", value + step) if op == "lte" else ("gt", value - step)
        rules.append(
            SharedPolicyRule(
                id=f"{rid}#{i}",
                action="deny" if then == "deny" else "escalate",
                conditions=[Condition(field=field, operator=op, value=value)],
                priority=2 if then == "deny" else 1,
            )
        )
    evaluator = SharedPolicyEvaluator()

    def run(ctx):
        decision = evaluator.evaluate(ctx, rules)
        return {"deny": "deny", "escalate": "escalate"}.get(decision.action, "allow")

    return (lambda doc, proposal, counters: flat(doc, prepared(doc, proposal, counters))), run


def rego_source(doc: dict) -> str:
    q = json.dumps
    lines = ["package envelope", "import rego.v1", ""]
    for r in doc["rules"]:
        kind, rid = r["kind"], r["id"]
        head = f"{r.get('then', 'deny')} contains {q(rid)} if {{"
        scope = [f"input.action == {q(r['action'])}"] if "action" in r else []
        if kind == "allow_actions":
            allowed = ", ".join(q(a) for a in r["actions"])
            lines += [head, f"  not input.action in {{{allowed}}}", "}"]
        elif kind == "value_cap":
            cur = q(r["currency"])
            lines += [
                head,
                *scope,
                f"  input.currency == {cur}",
                f"  input.value > {r['max']}",
                "}",
            ]
            lines += [head, *scope, '  not input.currency in {"EUR", "USD", "GBP"}', "}"]
        elif kind == "flag":
            lines += [head, f"  {q(r['flag'])} in input.flags", "}"]
        elif kind == "rate_limit":
            if "max_count" in r:
                lines += [head, f"  input.rates[{q(rid)}][0] > {r['max_count']}", "}"]
            if "max_value" in r:
                lines += [head, f"  input.rates[{q(rid)}][1] > {r['max_value']}", "}"]
        elif kind == "first_seen":
            lines += [head, f"  input.seen[{q(rid)}] == false", "}"]
        else:
            when = r["when"]
            p = f"input.params[{q(when['param'])}]"
            op = when["op"]
            if op == "eq":
                test = f"{p} == {q(when['value'])}"
            elif op == "ne":
                test = f"{p} != {q(when['value'])}"
            elif op in ("in", "not_in"):
                members = "{" + ", ".join(q(v) for v in when["value"]) + "}"
                test = f"{'not ' if op == 'not_in' else ''}{p} in {members}"
            elif op == "missing":
                test = f"not {p}"
            elif op == "exists":
                test = f"{p} != null"
            else:
                test = f"{p} {ORDER[op]} {Decimal(str(when['value']))}"
            lines += [head, *scope, f"  {test}", "}"]
    lines += [
        'outcome := "deny" if { count(deny) > 0 }',
        'else := "escalate" if { count(escalate) > 0 }',
        'else := "allow"',
    ]
    return "\n".join(lines) + "\n"


def engine_regorus(doc: dict):
    import regorus

    engine = regorus.Engine()
    engine.add_policy("envelope.rego", rego_source(doc))

    def prepare(doc, proposal, counters):
        ctx = prepared(doc, proposal, counters)
        # JSON numbers: Rego has no decimals. Exact enough for these two-decimal amounts.
        return {
            **ctx,
            "value": float(ctx["value"]) if ctx["value"] is not None else None,
            "rates": {k: [c, float(t)] for k, (c, t) in ctx["rates"].items()},
        }

    def run(ctx):
        engine.set_input(ctx)
        return engine.eval_rule("data.envelope.outcome")

    return prepare, run


def cedar_source(doc: dict) -> tuple[str, dict[str, str], dict[str, str]]:
    q = json.dumps
    policies = ["permit(principal, action, resource);"]
    then_by_id = {}
    rate_names: dict[str, str] = {}
    for r in doc["rules"]:
        kind, rid = r["kind"], r["id"]
        conds = [f"context.action == {q(r['action'])}"] if "action" in r else []
        alts = []
        if kind == "allow_actions":
            allowed = ", ".join(q(a) for a in r["actions"])
            alts.append([f"!([{allowed}].contains(context.action))"])
        elif kind == "value_cap":
            # Cedar's Long: value in 1/10000, exact for these amounts.
            limit = int(Decimal(r["max"]) * 10000)
            alts.append([*conds, f"context.currency == {q(r['currency'])}",
                         f"context.value > {limit}"])  # fmt: skip
            alts.append([*conds, '!(["EUR", "USD", "GBP"].contains(context.currency))'])
        elif kind == "flag":
            alts.append([f"context.flags.contains({q(r['flag'])})"])
        elif kind == "rate_limit":
            name = rate_names.setdefault(rid, f"r{len(rate_names)}")
            if "max_count" in r:
                alts.append([f"context has {name}c", f"context.{name}c > {r['max_count']}"])
            if "max_value" in r:
                limit = int(Decimal(r["max_value"]) * 10000)
                alts.append([f"context has {name}t", f"context.{name}t > {limit}"])
        elif kind == "first_seen":
            name = rate_names.setdefault(rid, f"s{len(rate_names)}")
            alts.append([f"context has {name}", f"context.{name} == false"])
        else:
            when = r["when"]
            p = f"context.params.{when['param']}"
            op = when["op"]
            if op == "eq":
                test = f"{p} == {q(when['value'])}"
            elif op == "ne":
                test = f"{p} != {q(when['value'])}"
            elif op in ("in", "not_in"):
                members = "[" + ", ".join(q(v) for v in when["value"]) + "]"
                test = f"{members}.contains({p})"
                test = f"!({test})" if op == "not_in" else test
            elif op == "missing":
                test = f"!(context.params has {when['param']})"
            elif op == "exists":
                test = f"context.params has {when['param']}"
            else:
                test = f"{p} {ORDER[op]} {int(Decimal(str(when['value'])))}"
            alts.append([*conds, test])
        for conds_ in alts:
            pid = f"p{len(policies)}"
            then_by_id[pid] = r.get("then", "deny")
            body = " && ".join(conds_)
            policies.append(f'@id("{pid}")\nforbid(principal, action, resource) when {{ {body} }};')
    return "\n".join(policies), then_by_id, rate_names


def engine_cedar(doc: dict):
    import cedarpy

    text, then_by_id, names = cedar_source(doc)
    policy_set = cedarpy.PolicySet.from_str(text)
    entities = cedarpy.Entities.from_json_str("[]")

    def prepare(doc, proposal, counters):
        ctx = prepared(doc, proposal, counters)
        context = {
            "action": ctx["action"],
            "params": ctx["params"],
            "flags": ctx["flags"],
            "currency": ctx["currency"],
            "value": int(ctx["value"] * 10000) if ctx["value"] is not None else 0,
        }
        for rid, (count, total) in ctx["rates"].items():
            context[f"{names[rid]}c"] = count
            context[f"{names[rid]}t"] = int(total * 10000)
        for rid, was_seen in ctx["seen"].items():
            context[names[rid]] = was_seen
        return {
            "principal": 'Agent::"bench"',
            "action": 'Action::"propose"',
            "resource": 'Workflow::"bench"',
            "context": context,
        }

    def run(request):
        result = cedarpy.is_authorized(request, policy_set, entities)
        if result.allowed:
            return "allow"
        annotations = result.diagnostics.id_annotations_by_reason
        fired = [then_by_id[a] for a in annotations.values()]
        return "deny" if "deny" in fired else "escalate"

    return prepare, run


ENGINES: list[tuple[str, Callable]] = [
    ("ours (ladder/policy.py)", engine_ours),
    ("closure loop (one per flat rule)", engine_closures),
    ("AGT PolicyEvaluator", engine_agt),
    ("AGT SharedPolicyEvaluator", engine_agt_shared),
    ("Rego (regorus)", engine_regorus),
    ("Cedar (cedarpy)", engine_cedar),
]
PEERS = ("AGT PolicyEvaluator", "AGT SharedPolicyEvaluator", "Rego (regorus)", "Cedar (cedarpy)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    doc = envelope()
    rng = random.Random(5)
    items = [(p, counters_for(doc, rng)) for p in proposals(args.proposals)]
    expected = [evaluate_ours_reference(doc, p, c) for p, c in items]
    mix = {o: expected.count(o) for o in ("allow", "escalate", "deny")}

    engines = []
    missing = []
    for name, factory in ENGINES:
        try:
            t0 = time.perf_counter()
            prepare, run = factory(doc)
            compile_ms = (time.perf_counter() - t0) * 1000
        except ImportError as exc:
            missing.append(f"{name}: not installed ({exc.name}); `uv sync --group bench`")
            continue
        inputs = [prepare(doc, p, c) for p, c in items]
        outcomes = [run(x) for x in inputs]
        disagree = sum(a != b for a, b in zip(outcomes, expected, strict=True))
        engines.append(
            {
                "name": name,
                "run": run,
                "inputs": inputs,
                "compile_ms": compile_ms,
                "disagree": disagree,
                "times": [],
            }
        )

    clock = time.perf_counter_ns
    overhead = min(_empty_call(clock) for _ in range(5))
    gc.disable()
    try:
        for _ in range(args.rounds):
            for engine in engines:
                run, times = engine["run"], engine["times"]
                for x in engine["inputs"]:
                    t0 = clock()
                    run(x)
                    times.append(clock() - t0)
    finally:
        gc.enable()

    print(
        f"envelope: {len(doc['rules'])} rules, {len(ACTIONS)} action types; "
        f"{args.proposals} proposals x {args.rounds} rounds (outcomes {mix}); "
        f"python {platform.python_version()}; timer overhead {overhead} ns subtracted"
    )
    print()
    print("| engine | compile ms | p50 µs | p99 µs | mean µs | disagrees with ours |")
    print("|---|--:|--:|--:|--:|--:|")
    figures = {}
    for engine in engines:
        times = sorted(max(t - overhead, 0) / 1000 for t in engine["times"])
        p50 = statistics.median(times)
        p99 = times[int(len(times) * 0.99)]
        figures[engine["name"]] = p50
        print(
            f"| {engine['name']} | {engine['compile_ms']:.1f} | {p50:.2f} | {p99:.2f} | "
            f"{statistics.fmean(times):.2f} | {engine['disagree']} |"
        )
    for line in missing:
        print(f"| {line} | | | | | |")
    ours = figures["ours (ladder/policy.py)"]
    peers = {name: p50 for name, p50 in figures.items() if name in PEERS}
    print()
    for name, p50 in peers.items():
        print(f"- {name}: ours is {p50 / ours:.1f}x faster (p50)")
    if peers:
        fastest = min(peers, key=peers.get)
        ratio = peers[fastest] / ours
        verdict = "PASS" if ratio >= 3 else "MISS"
        print(f"- fastest peer: {fastest}; ratio {ratio:.1f}x (target >= 3x) {verdict}")
    print(f"- p50 target <= 5 µs for ours: {ours:.2f} µs {'PASS' if ours <= 5 else 'MISS'}")


def evaluate_ours_reference(doc: dict, proposal: dict, counters: Counters) -> str:
    compiled = _COMPILED.setdefault(
        "ours", compile_policy(parse_policy(doc, actions=ACTIONS), actions=ACTIONS)
    )
    return evaluate(compiled, proposal, counters).outcome


_COMPILED: dict = {}


def _empty_call(clock) -> int:
    samples = []
    for _ in range(2000):
        t0 = clock()
        samples.append(clock() - t0)
    return sorted(samples)[len(samples) // 2]


if __name__ == "__main__":
    main()
