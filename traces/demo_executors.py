"""Executors of the demo workflows, writing to DemoLedgerEntry in place of a bank."""

from django.db import IntegrityError, transaction

from traces.executors import executor
from traces.models import DemoLedgerEntry


def _ledger(*, action: str, params: dict, idempotency_key: str) -> dict:
    try:
        with transaction.atomic():
            entry = DemoLedgerEntry.objects.create(
                idempotency_key=f"{action}:{idempotency_key}", action=action, params=params
            )
        replayed = False
    except IntegrityError:
        entry = DemoLedgerEntry.objects.get(idempotency_key=f"{action}:{idempotency_key}")
        replayed = True
    return {"ledger_id": entry.pk, "replayed": replayed}


@executor(idempotent=True)
def refund_issue(*, action: str, params: dict, idempotency_key: str) -> dict:
    return _ledger(action=action, params=params, idempotency_key=idempotency_key)


@executor(idempotent=True)
def refund_reverse(*, action: str, params: dict, idempotency_key: str) -> dict:
    return _ledger(action=action, params=params, idempotency_key=idempotency_key)
