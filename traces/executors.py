"""Server executors: callables a worker runs for approved actions.

An executor is `fn(*, action, params, idempotency_key) -> dict`. `idempotent=True` says
the callable (or the system behind it) deduplicates on the key, so a worker that died
mid-call may call it again; otherwise such a run is failed for a human to reconcile
rather than risk doing the action twice.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.module_loading import import_string

from ladder.errors import Unprocessable


@dataclass(frozen=True)
class ExecutorSpec:
    fn: Callable[..., dict]
    idempotent: bool


def executor(*, idempotent: bool):
    def wrap(fn):
        fn.ladder_executor = ExecutorSpec(fn=fn, idempotent=idempotent)
        return fn

    return wrap


def resolve(path: str) -> ExecutorSpec:
    try:
        fn = import_string(path)
    except ImportError as exc:
        raise Unprocessable(f"executor '{path}' cannot be imported: {exc}") from exc
    spec = getattr(fn, "ladder_executor", None)
    if spec is None:
        raise Unprocessable(f"'{path}' is not registered with @executor")
    return spec
