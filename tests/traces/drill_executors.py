"""A compensating executor that fails for the rollback drill tests: it writes an attempt
to the demo ledger (so a test, or a test's worker process, can count its calls), then
raises."""

import uuid

from traces.executors import executor
from traces.models import DemoLedgerEntry


@executor(idempotent=True)
def reverse_fails(*, action: str, params: dict, idempotency_key: str) -> dict:
    DemoLedgerEntry.objects.create(
        idempotency_key=f"attempt:{uuid.uuid4()}",
        action="attempt",
        params={"key": idempotency_key},
    )
    raise RuntimeError("the bank refused the reversal")
