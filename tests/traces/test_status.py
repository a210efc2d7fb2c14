"""The groups of run statuses are defined once (traces/status.py), and the SDK's copy of
them (ladder_client has no Django) is the same."""

import ladder_client.models as sdk
from traces import status
from traces.models import Run
from traces.status import RunStatus


def test_the_sdk_knows_every_run_status_by_the_servers_value():
    names = {name for name in dir(sdk) if name.isupper() and isinstance(getattr(sdk, name), str)}
    assert {getattr(sdk, name) for name in names} == set(RunStatus.values)
    for member in RunStatus:
        assert getattr(sdk, member.name) == member.value


def test_the_sdk_groups_statuses_as_the_server_does():
    assert sdk.WAITING_STATUSES == status.WAITING_STATUSES
    assert sdk.APPROVED_STATUSES == status.APPROVED_STATUSES
    assert sdk.FINISHED_STATUSES == status.FINISHED_STATUSES


def test_every_status_is_waiting_decided_or_only_recorded():
    everything = set(RunStatus)
    assert status.WAITING_STATUSES.isdisjoint(status.DECIDED_STATUSES)
    assert everything == status.WAITING_STATUSES | status.DECIDED_STATUSES | {RunStatus.RECORDED}
    assert status.FINISHED_STATUSES <= status.APPROVED_STATUSES <= status.DECIDED_STATUSES


def test_the_run_row_takes_its_status_choices_from_the_one_definition():
    assert Run._meta.get_field("status").choices == RunStatus.choices


def test_the_run_row_takes_its_queues_from_the_ladders_one_queue_enum():
    import ladder.decide
    from ladder.rungs import Queue

    assert ladder.decide.Queue is Queue
    assert Run._meta.get_field("queue").choices == Queue.choices
