import factory
from django.contrib.auth.models import User

from ladder.models import ActionType, Certificate, Workflow
from ladder.rungs import Executor, RiskClass, Rung
from ladder.services import certificate_issue


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"person{n}")
    password = factory.django.Password("pw-for-tests")


def certify(workflow: Workflow) -> Certificate:
    """A valid autonomy certificate for the workflow's current rung, issued by the system:
    what a test that moves a workflow to L4/L5 by hand needs for the gateway to act at
    that rung."""
    certificate = certificate_issue(
        workflow=workflow,
        rung=workflow.rung,
        policy_version=None,
        evidence_hash="0" * 64,
        approved_by=None,
        promotion_ref="tests.factories",
    )
    workflow.refresh_from_db(fields=["rules_version"])
    return certificate


class WorkflowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workflow
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"wf-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    rung = Rung.L3
    risk_class = RiskClass.LOW

    @factory.post_generation
    def certified(obj, create, extracted, **kwargs):
        """A workflow made at L4/L5 stands on a valid autonomy certificate, as a promotion
        would have left it; `certified=False` makes one without (its runs are then
        handled at L3)."""
        if create and obj.rung >= Rung.L4 and extracted is not False:
            certify(obj)


class ActionTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ActionType

    workflow = factory.SubFactory(WorkflowFactory)
    name = "refund.issue"
    param_schema = factory.LazyFunction(
        lambda: {
            "order_id": {"type": "string", "required": True},
            "amount": {"type": "number", "required": True},
            "currency": {"type": "string"},
        }
    )
    value_param = "amount"
    currency_param = "currency"
    executor = Executor.AGENT
