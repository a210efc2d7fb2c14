import os

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.db import transaction

from approvals.roles import Role, role_grant
from ladder.models import ActionType, RungChange, Workflow
from ladder.rungs import Executor, RiskClass, Rung

PEOPLE = ["reviewer", "owner", "compliance", "admin"]

# The demo's schemas type what they name but require nothing: any agent can try the demo
# with its own params. A real workflow tightens them (`"required": true`).
REPLY_SCHEMA = {
    "to": {"type": "string"},
    "subject": {"type": "string"},
    "body": {"type": "string"},
}
REFUND_SCHEMA = {
    "order_id": {"type": "string"},
    "amount": {"type": "number"},
    "currency": {"type": "string"},
    "reason": {"type": "string"},
}
NOTIFY_SCHEMA = {
    "to": {"type": "string"},
    "channel": {"type": "string"},
    "message": {"type": "string"},
}

WORKFLOWS = [
    {
        "slug": "faq-answer",
        "name": "FAQ answer",
        "rung": Rung.L0,
        "risk": RiskClass.LOW,
        "description": "Answers product questions; records only, never acts.",
        "actions": [],
    },
    {
        "slug": "support-reply",
        "name": "Support reply",
        "rung": Rung.L1,
        "risk": RiskClass.LOW,
        "description": "Drafts replies to support tickets for a human to edit and send.",
        "actions": [{"name": "reply.send", "schema": REPLY_SCHEMA}],
        "personal_fields": ["customer_name", "address"],
    },
    {
        "slug": "refund-recommend",
        "name": "Refund recommendation",
        "rung": Rung.L2,
        "risk": RiskClass.CONSEQUENTIAL,
        "description": "Recommends a refund or voucher with alternatives; a human picks.",
        "actions": [
            {
                "name": "refund.issue",
                "schema": REFUND_SCHEMA,
                "value": "amount",
                "reversible": True,
            },
            {"name": "voucher.issue", "schema": REFUND_SCHEMA, "value": "amount"},
        ],
        "personal_fields": ["customer_name", "address"],
    },
    {
        "slug": "support-refund",
        "name": "Support refund",
        "rung": Rung.L3,
        "risk": RiskClass.CONSEQUENTIAL,
        "description": "Issues refunds after a human approves each one.",
        "actions": [
            {
                "name": "refund.issue",
                "schema": REFUND_SCHEMA,
                "value": "amount",
                "reversible": True,
                "executor": Executor.SERVER,
                "path": "traces.demo_executors.refund_issue",
                "compensation": "refund.reverse",
            },
            {
                "name": "refund.reverse",
                "schema": REFUND_SCHEMA,
                "value": "amount",
                "executor": Executor.SERVER,
                "path": "traces.demo_executors.refund_reverse",
            },
        ],
        "personal_fields": ["customer_name", "address"],
    },
    {
        "slug": "shipping-update",
        "name": "Shipping update",
        "rung": Rung.L4,
        "risk": RiskClass.LOW,
        "description": "Tells customers where their parcel is.",
        "actions": [{"name": "notify.send", "schema": NOTIFY_SCHEMA}],
    },
]


def demo_password(username: str) -> str:
    return os.environ.get("LADDER_DEMO_PASSWORD") or f"{username}-ladder-demo"


def _set_demo_password(user: User, *, dev_mode: bool) -> None:
    """Development mode: the known demo password. A deployment: no usable password for a new
    demo account, and none left for an old one still on the known password (a database
    seeded in development mode, then deployed)."""
    if dev_mode:
        user.set_password(demo_password(user.username))
    elif not user.pk or user.check_password(demo_password(user.username)):
        user.set_unusable_password()


class Command(BaseCommand):
    help = "Create (or refresh) the demo people, workflows and a little history. Idempotent."

    @transaction.atomic
    def handle(self, *args, **options):
        dev_mode = settings.LADDER_DEV_MODE
        people = {}
        for name in PEOPLE:
            user = User.objects.filter(username=name).first() or User(
                username=name, email=f"{name}@demo.invalid"
            )
            _set_demo_password(user, dev_mode=dev_mode)
            if not user.pk:
                user.save()
            user.is_staff = name == "admin"
            user.is_superuser = name == "admin"
            user.save(update_fields=["password", "is_staff", "is_superuser"])
            people[name] = user
        for spec in WORKFLOWS:
            wf, created = Workflow.objects.get_or_create(
                slug=spec["slug"],
                defaults={
                    "name": spec["name"],
                    "rung": spec["rung"],
                    "risk_class": spec["risk"],
                    "description": spec["description"],
                    "owner": people["owner"],
                    "personal_fields": spec.get("personal_fields", []),
                    "max_rung": Rung.L4 if spec["risk"] == RiskClass.CONSEQUENTIAL else Rung.L5,
                },
            )
            if created:
                RungChange.objects.create(
                    workflow=wf,
                    kind=RungChange.Kind.INITIAL,
                    from_rung=None,
                    to_rung=spec["rung"],
                    reason="demo workflow created",
                    actor=people["admin"],
                )
            for a in spec["actions"]:
                ActionType.objects.update_or_create(
                    workflow=wf,
                    name=a["name"],
                    defaults={
                        "param_schema": a["schema"],
                        "value_param": a.get("value", ""),
                        "currency_param": "currency" if a.get("value") else "",
                        "reversible": a.get("reversible", False),
                        "executor": a.get("executor", Executor.AGENT),
                        "executor_path": a.get("path", ""),
                        "compensating_action": a.get("compensation", ""),
                    },
                )
            for name in PEOPLE:
                role_grant(workflow=wf, user=people[name], role=Role(name), by=None)
        from approvals.demo import seed_history

        counts = seed_history(people=people)
        self.stdout.write("Demo workflows: " + ", ".join(w["slug"] for w in WORKFLOWS))
        self.stdout.write(f"Demo history: {counts}")
        if dev_mode:
            self.stdout.write("Demo logins (http://127.0.0.1:8000/accounts/login/):")
            for name in PEOPLE:
                self.stdout.write(f"  {name:<11} password: {demo_password(name)}")
            return
        self.stdout.write(
            "Demo people: " + ", ".join(PEOPLE) + ". Outside development mode they get no "
            "known password; give one a password with `manage.py changepassword NAME`."
        )
