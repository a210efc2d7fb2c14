import os

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.db import transaction

from approvals.roles import Role, role_grant
from examples.refunds.workflow import ACTIONS as REFUND_EXAMPLE_ACTIONS
from examples.refunds.workflow import demo_orders
from ladder.gates import max_rung_for
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
        # The worked example's workflow (examples/refunds): `make run` plays its history
        # with `manage.py simulate` first, and then this finds it there.
        "slug": "support-refund",
        "name": "Support refund",
        "rung": Rung.L3,
        "risk": RiskClass.CONSEQUENTIAL,
        "description": "Issues refunds after a human approves each one.",
        "actions": REFUND_EXAMPLE_ACTIONS,
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


# Policy envelopes: shipping-update (L4) decides by its policy; support-refund (L3) has a
# draft L4 envelope that is evaluated in shadow on every run, so the agreement between
# draft and reviewers and a backtest have something to show on a fresh `make run`.
POLICIES = {
    "shipping-update": {
        "note": "demo: SMS and e-mail notices, three a day per recipient",
        "document": {
            "audit_sample_rate": 0.1,
            "rules": [
                {"id": "notices-only", "kind": "allow_actions", "actions": ["notify.send"],
                 "control": "allowed_tools"},
                {"id": "channels", "kind": "condition",
                 "when": {"param": "channel", "op": "not_in", "value": ["sms", "email"]},
                 "then": "deny", "control": "data_scope"},
                {"id": "per-recipient", "kind": "rate_limit", "action": "notify.send",
                 "window_seconds": 86400, "max_count": 3, "per": "param:to",
                 "then": "escalate", "control": "rate_limit"},
                {"id": "complaints", "kind": "flag", "flag": "complaint", "then": "escalate",
                 "control": "rbac"},
            ],
        },
    },
    "support-refund": {
        "note": "demo: draft L4 envelope, refunds up to 200 EUR",
        "document": {
            "audit_sample_rate": 0.05,
            "rules": [
                {"id": "refunds-only", "kind": "allow_actions", "actions": ["refund.issue"],
                 "control": "allowed_tools"},
                {"id": "cap-200", "kind": "value_cap", "action": "refund.issue",
                 "max": "200.00", "currency": "EUR", "then": "escalate", "control": "value_cap"},
                {"id": "fraud", "kind": "flag", "flag": "fraud_adjacent", "then": "escalate",
                 "control": "rbac"},
                {"id": "daily-total", "kind": "rate_limit", "action": "refund.issue",
                 "window_seconds": 86400, "max_value": "2000.00", "currency": "EUR",
                 "per": "workflow", "then": "escalate", "control": "rate_limit"},
            ],
        },
    },
}  # fmt: skip


def _seed_policies() -> None:
    """Each demo workflow's first policy version, once (later versions are the owner's)."""
    from ladder.models import PolicyVersion
    from traces.services.policy import policy_set

    for slug, spec in POLICIES.items():
        wf = Workflow.objects.get(slug=slug)
        if not PolicyVersion.objects.filter(workflow=wf).exists():
            policy_set(workflow=wf, document=spec["document"], by=None, note=spec["note"])


def _seed_certificates() -> None:
    """The demo's L4/L5 workflows stand on a certificate issued by the system, once and
    again whenever the last one has expired (the gateway handles runs above a valid
    certificate at L3)."""
    from django.utils import timezone

    from ladder.certificates import evidence_hash
    from ladder.policies import policy_latest
    from ladder.services import certificate_current, certificate_issue

    now = timezone.now()
    for spec in WORKFLOWS:
        wf = Workflow.objects.get(slug=spec["slug"])
        current = certificate_current(workflow=wf, at=now)
        if wf.rung < Rung.L4 or (current is not None and current.valid_at(now)):
            continue
        latest = policy_latest(wf)
        certificate_issue(
            workflow=wf,
            rung=wf.rung,
            policy_version=latest.number if latest else None,
            evidence_hash=evidence_hash(
                {"workflow": wf.slug, "rung": wf.rung, "evidence": "demo data from seed_demo"}
            ),
            approved_by=None,
            promotion_ref="seed_demo",
        )


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
                    "max_rung": max_rung_for(spec["risk"]),
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
        _seed_policies()
        _seed_certificates()
        from approvals.demo import seed_history

        demo_orders()  # what the hand-made support-refund runs refund
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
