import factory
from django.contrib.auth.models import User

from ladder.models import ActionType, Workflow
from ladder.rungs import Executor, RiskClass, Rung


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"person{n}")
    password = factory.django.Password("pw-for-tests")


class WorkflowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workflow

    slug = factory.Sequence(lambda n: f"wf-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    rung = Rung.L3
    risk_class = RiskClass.LOW


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
