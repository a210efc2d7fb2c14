import json
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from approvals.roles import roles_of
from ladder.models import Workflow
from traces.models import Run

pytestmark = pytest.mark.django_db

EXPECTED = {
    "faq-answer": (0, "low"),
    "support-reply": (1, "low"),
    "refund-recommend": (2, "consequential"),
    "support-refund": (3, "consequential"),
    "shipping-update": (4, "low"),
}


def test_seed_demo_creates_the_contract_workflows_people_and_history_once(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):  # the approved refund executes
        call_command("seed_demo", stdout=None)
    runs = Run.objects.count()
    call_command("seed_demo", stdout=None)
    assert Run.objects.count() == runs > 0
    for slug, (rung, risk) in EXPECTED.items():
        wf = Workflow.objects.get(slug=slug)
        assert (wf.rung, wf.risk_class) == (rung, risk)
        for name in ("reviewer", "owner", "compliance", "admin"):
            assert name in roles_of(user=User.objects.get(username=name), workflow=wf)
    refund = Workflow.objects.get(slug="support-refund").action_types.get(name="refund.issue")
    assert refund.executor == "server" and refund.compensating_action == "refund.reverse"
    assert User.objects.get(username="reviewer").check_password("reviewer-ladder-demo")
    statuses = set(Run.objects.values_list("status", flat=True))
    assert {"pending_review", "recorded", "approved", "executed", "rejected"} <= statuses
    # The demo history went through redaction like any agent traffic.
    assert not any("@example.com" in str(r.proposal) for r in Run.objects.all())


def test_outside_development_mode_the_demo_people_get_no_known_password(settings):
    settings.LADDER_DEV_MODE = False
    out = StringIO()
    call_command("seed_demo", stdout=out)
    for name in ("reviewer", "owner", "compliance", "admin"):
        user = User.objects.get(username=name)
        assert not user.has_usable_password()
        assert not user.check_password(f"{name}-ladder-demo")
    printed = out.getvalue()
    assert "changepassword" in printed
    assert "ladder-demo" not in printed


def test_a_deployment_reseeding_a_development_database_takes_the_known_passwords_away(settings):
    call_command("seed_demo", stdout=StringIO())  # development mode, as `make run` seeds
    owner = User.objects.get(username="owner")
    owner.set_password("a password the owner chose 7")
    owner.save(update_fields=["password"])
    settings.LADDER_DEV_MODE = False
    call_command("seed_demo", stdout=StringIO())
    assert not User.objects.get(username="reviewer").has_usable_password()
    assert User.objects.get(username="owner").check_password("a password the owner chose 7")


def test_seed_demo_gives_the_l4_workflow_a_policy_and_the_l3_one_a_draft_in_shadow():
    from ladder.models import PolicyVersion

    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())  # a second seed adds no version
    shipping = Workflow.objects.get(slug="shipping-update")
    refund = Workflow.objects.get(slug="support-refund")
    assert PolicyVersion.objects.filter(workflow=shipping).count() == 1
    assert PolicyVersion.objects.filter(workflow=refund).count() == 1
    # shipping-update's runs were decided by its policy, with the version recorded.
    decided = Run.objects.filter(workflow=shipping, policy__isnull=False)
    assert decided.exists()
    assert {r.policy["version"] for r in decided} == {1}
    assert "approved" in {r.status for r in decided}
    # support-refund's runs went to people, each with the draft's would-have-done beside.
    refunds = Run.objects.filter(workflow=refund)
    assert refunds.exists() and all(r.shadow and r.shadow["version"] == 1 for r in refunds)
    assert all(r.policy is None for r in refunds)
    cap = PolicyVersion.objects.get(workflow=refund).document["rules"][1]
    assert (cap["kind"], cap["max"], cap["currency"]) == ("value_cap", "200.00", "EUR")


def test_seed_demo_certifies_the_l4_workflow_once_by_the_system(tmp_path):
    from ladder.models import Certificate

    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())  # a valid certificate is not issued again
    shipping = Workflow.objects.get(slug="shipping-update")
    (cert,) = Certificate.objects.filter(workflow=shipping)
    assert (cert.rung, cert.policy_version, cert.approved_by) == (4, 1, None)
    assert not Certificate.objects.exclude(workflow=shipping).exists()
    # ...so its runs were handled at L4, decided by the policy.
    assert set(Run.objects.filter(workflow=shipping).values_list("rung", flat=True)) == {4}
    path = tmp_path / "shipping.json"
    path.write_text(json.dumps(cert.as_file()))
    out = StringIO()
    call_command("verify_certificate", str(path), stdout=out)
    assert "approved by:    the system" in out.getvalue()
