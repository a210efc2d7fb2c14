"""Server executors that do their external effect, then stop half-way until a gate file
appears: a worker can be killed while it holds the run (tests/traces/test_worker.py).

The gate is the file named by LADDER_TEST_GATE; "<gate>.entered" says a call got there.
"""

import os
import time
from pathlib import Path

from traces.demo_executors import refund_issue
from traces.executors import executor


def _gated(action: str, params: dict, idempotency_key: str) -> dict:
    result = refund_issue(action=action, params=params, idempotency_key=idempotency_key)
    gate = Path(os.environ["LADDER_TEST_GATE"])
    Path(f"{gate}.entered").touch()
    deadline = time.monotonic() + 120  # never outlives a test run
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


@executor(idempotent=True)
def gated_refund(*, action: str, params: dict, idempotency_key: str) -> dict:
    """Deduplicates by key (the demo ledger): safe to call again after a lost worker."""
    return _gated(action, params, idempotency_key)


@executor(idempotent=False)
def gated_refund_once(*, action: str, params: dict, idempotency_key: str) -> dict:
    """Declared unsafe to repeat: a lost worker's run is failed for a person."""
    return _gated(action, params, idempotency_key)
