"""What one agent request may make the redactor do, through the gateway (security review
findings 1 and 6): adversarial bodies get a definite answer and never leave PII in clear,
personal values per request are bounded, and pseudonyms link only inside a linkage
domain."""

import json
import random
import re

import pytest
from django.conf import settings as django_settings
from stdnum import luhn

from ladder.models import Workflow
from tests.traces.test_gateway import body
from traces import redaction
from traces.models import Run, TraceEvent

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


def _digit_groups(rng: random.Random, size: int, width: int, sep: str = " ") -> str:
    count = size // (width + len(sep))
    return sep.join("".join(rng.choice("0123456789") for _ in range(width)) for _ in range(count))


def _card(rng: random.Random) -> str:
    number = rng.choice("45") + "".join(rng.choice("0123456789") for _ in range(14))
    number += luhn.calc_check_digit(number)
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


def _fill_to_the_limit(wf, text_of) -> dict:
    """A body of (almost) exactly LADDER_MAX_BODY_BYTES, its input one long string."""
    skeleton = len(json.dumps(body(wf, input={"notes": ""}, proposal=None)).encode())
    notes = text_of(django_settings.LADDER_MAX_BODY_BYTES - skeleton)
    return body(wf, input={"notes": notes}, proposal=None)


def _stored_text() -> str:
    runs = [str(run.proposal) for run in Run.objects.all()]
    return "\n".join([*TraceEvent.objects.values_list("document", flat=True), *runs])


@pytest.mark.parametrize(
    "text_of",
    [
        pytest.param(lambda n: _digit_groups(random.Random(1), n, 7), id="7-digit groups"),
        pytest.param(lambda n: _digit_groups(random.Random(2), n, 4), id="4-digit groups"),
        pytest.param(lambda n: _digit_groups(random.Random(3), n, 1, "-"), id="1-digit dashes"),
        pytest.param(
            lambda n: " ".join(_card(random.Random(k)) for k in range(n // 20)), id="cards"
        ),
        pytest.param(
            lambda n: "+1 212-555-0100" + ".4111111111111111" * ((n - 15) // 17), id="chained"
        ),
    ],
)
def test_a_mebibyte_of_digit_groups_is_refused_with_a_clear_422_and_nothing_is_stored(
    make_workflow, agent, text_of
):
    wf = make_workflow(rung=0)
    data = _fill_to_the_limit(wf, text_of)
    raw = json.dumps(data)
    assert MiB - 64 <= len(raw.encode()) <= django_settings.LADDER_MAX_BODY_BYTES
    resp = agent(wf).post("/runs", raw=raw)
    assert resp.status_code == 422, resp.content[:300]
    assert resp.json()["error"]["code"] in {"redaction_budget_exceeded", "too_many_personal_values"}
    assert not Run.objects.exists() and not TraceEvent.objects.exists()


def test_digit_groups_within_the_budget_are_stored_with_every_card_and_phone_redacted(
    make_workflow, agent
):
    rng = random.Random(7)
    cards = [_card(rng) for _ in range(5)]
    phones = ["+49 30 12345678", "030 87654321", "+44 20 7946 0958", "(415) 555-2671"]
    pieces = []
    for value in cards + phones:
        pieces.append(_digit_groups(rng, 400, 7))
        pieces.append(value)
    wf = make_workflow(rung=0)
    resp = agent(wf).post("/runs", body(wf, input={"notes": " ; ".join(pieces)}, proposal=None))
    assert resp.status_code == 201, resp.content[:300]
    stored = _stored_text()
    for value in cards + phones:
        assert value not in stored
        assert re.sub(r"\D", "", value)[-8:] not in re.sub(r"\D", "", stored)
    assert stored.count("<CARD:") >= len(cards)  # 7+7 digits that pass Luhn count too
    assert stored.count("<PHONE:") >= len(phones)


def test_a_small_work_budget_refuses_a_digit_heavy_body_but_not_a_normal_one(
    make_workflow, agent, settings
):
    settings.LADDER_REDACTION_BUDGET = 2_000
    wf = make_workflow()
    a = agent(wf)
    normal = body(wf, key="normal", input={"message": "Mail ana@example.com, +49 30 12345678"})
    assert a.post("/runs", normal).status_code == 201
    heavy = body(wf, key="heavy", input={"notes": _digit_groups(random.Random(4), 20_000, 7)})
    resp = a.post("/runs", heavy)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "redaction_budget_exceeded"
    assert not Run.objects.filter(idempotency_key="heavy").exists()


def test_a_budget_refusal_costs_one_redaction_and_still_checks_the_token(
    make_workflow, agent, settings, monkeypatch
):
    from django.utils import timezone

    from traces.models import AgentToken

    wf = make_workflow()
    a = agent(wf)
    assert a.post("/runs", body(wf, key="prime")).status_code == 201  # memo primed
    settings.LADDER_REDACTION_BUDGET = 2_000
    calls = []
    real = redaction.Redactor.redact

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redaction.Redactor, "redact", counted)
    heavy = body(wf, key="heavy", input={"notes": _digit_groups(random.Random(4), 20_000, 7)})
    resp = a.post("/runs", heavy)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "redaction_budget_exceeded"
    assert len(calls) == 1  # no second attempt on a fresh read: the body alone decides
    AgentToken.objects.update(revoked_at=timezone.now())
    assert a.post("/runs", heavy).status_code == 401  # a memoised token is still re-checked
    assert not Run.objects.filter(idempotency_key="heavy").exists()


# -- personal values per request --------------------------------------------------------


def _emails(n: int) -> list[str]:
    return [f"person{k}@example.com" for k in range(n)]


def test_more_distinct_personal_values_than_allowed_is_a_422_and_nothing_is_stored(
    make_workflow, agent, settings
):
    settings.LADDER_MAX_PERSONAL_VALUES = 3
    wf = make_workflow(personal_fields=["customer"])
    a = agent(wf)
    # Counted over the whole submission: input, tool calls, output and proposal together.
    over = body(
        wf,
        key="over",
        input={"to": _emails(2)},
        tool_calls=[{"name": "crm.find", "arguments": {}, "result": {"customer": "Ann Lee"}}],
        output={"text": "call +49 30 12345678"},
    )
    resp = a.post("/runs", over)
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "too_many_personal_values"
    assert "more than 3 distinct personal values" in error["message"]
    assert not Run.objects.exists() and not TraceEvent.objects.exists()


def test_a_value_repeated_many_times_counts_once(make_workflow, agent, settings):
    settings.LADDER_MAX_PERSONAL_VALUES = 3
    wf = make_workflow()
    repeated = body(wf, input={"to": _emails(3) * 50, "note": " ".join(_emails(3) * 20)})
    assert agent(wf).post("/runs", repeated).status_code == 201


def test_appended_events_are_bounded_by_the_same_limit(make_workflow, agent, settings):
    settings.LADDER_MAX_PERSONAL_VALUES = 3
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    events = [{"type": "tool_call", "name": "crm.find", "result": [email]} for email in _emails(4)]
    resp = a.post(f"/runs/{run['id']}/events", {"events": events})
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "too_many_personal_values"
    assert Run.objects.get(pk=run["id"]).trace_length == run["trace"]["events"]
    fine = a.post(f"/runs/{run['id']}/events", {"events": events[:3]})
    assert fine.status_code == 201, fine.content


def test_an_outcome_note_is_bounded_too(make_workflow, agent, settings):
    settings.LADDER_MAX_PERSONAL_VALUES = 3
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    note = "; ".join(_emails(4))
    resp = a.post(f"/runs/{run['id']}/outcome", {"label": "wrong", "source": "x", "note": note})
    assert resp.status_code == 422
    assert Run.objects.get(pk=run["id"]).outcome == ""


# -- linkage domains --------------------------------------------------------------------


def _pseudonym_of(a, wf, value: str, key: str) -> str:
    proposal = {"action": "refund.issue", "params": {"order_id": "A-1", "amount": 5, "to": value}}
    resp = a.post("/runs", body(wf, key=key, proposal=proposal))
    assert resp.status_code == 201, resp.content
    (token,) = resp.json()["pseudonyms"]
    assert Run.objects.get(pk=resp.json()["id"]).proposal["params"]["to"] == token
    return token


def test_pseudonyms_are_64_bit_tags(make_workflow, agent):
    wf = make_workflow()
    token = _pseudonym_of(agent(wf), wf, "ana@example.com", "k")
    assert re.fullmatch(r"<EMAIL:[0-9a-f]{16}>", token)


def test_the_same_value_in_two_workflows_gets_unrelated_pseudonyms(make_workflow, agent):
    one, two = make_workflow(), make_workflow()
    a = agent(one, two)
    assert _pseudonym_of(a, one, "ana@example.com", "k1") != (
        _pseudonym_of(a, two, "ana@example.com", "k2")
    )


def test_workflows_of_one_linkage_group_share_pseudonyms(make_workflow, agent):
    one = make_workflow(linkage_group="support")
    two = make_workflow(linkage_group="support")
    other = make_workflow(linkage_group="billing")
    a = agent(one, two, other)
    first = _pseudonym_of(a, one, "ana@example.com", "k1")
    assert _pseudonym_of(a, two, "ANA@example.com", "k2") == first
    assert _pseudonym_of(a, other, "ana@example.com", "k3") != first


def test_a_renamed_workflow_keeps_linking_to_its_own_past(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    before = _pseudonym_of(a, wf, "ana@example.com", "k1")
    wf.slug = "renamed-workflow"
    wf.save(update_fields=["slug"])
    assert _pseudonym_of(a, wf, "ana@example.com", "k2") == before


def test_joining_a_linkage_group_applies_to_the_very_next_run(make_workflow, agent):
    wf = make_workflow()
    partner = make_workflow(linkage_group="shared")
    a = agent(wf, partner)
    own = _pseudonym_of(a, wf, "ana@example.com", "k1")  # also primes the gateway's memo
    version = Workflow.objects.get(pk=wf.pk).rules_version
    wf.linkage_group = "shared"
    wf.save(update_fields=["linkage_group"])
    # The rules_version triggers fire on any change to the row, this column included.
    assert Workflow.objects.get(pk=wf.pk).rules_version == version + 1
    joined = _pseudonym_of(a, wf, "ana@example.com", "k2")
    assert joined != own
    assert joined == _pseudonym_of(a, partner, "ana@example.com", "k3")


def test_a_linkage_key_is_derived_per_domain_from_the_master_key():
    master = django_settings.LADDER_PSEUDONYM_KEY
    one = redaction.linkage_key(master, "workflow:1")
    assert one == redaction.linkage_key(master, "workflow:1")
    assert one != redaction.linkage_key(master, "workflow:2")
    assert one != redaction.linkage_key(master + "x", "workflow:1")
    assert one != master.encode()
