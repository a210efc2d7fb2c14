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
