import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from approvals import selectors
from traces.models import Run, RunStatus

pytestmark = pytest.mark.django_db


def bulk_waiting(workflow, n, *, queue="l3", action_type=None, start=None):
    start = start or timezone.now() - timedelta(days=1)
    Run.objects.bulk_create(
        [
            Run(
                id=uuid.uuid4(),
                workflow=workflow,
                idempotency_key=f"bulk-{uuid.uuid4()}",
                request_hash="x",
                rung=3,
                status=RunStatus.PENDING_REVIEW,
                queue=queue,
                action_type=action_type,
                proposal={"action": "refund.issue", "params": {}},
                summary=f"run {i}",
                created_at=start + timedelta(seconds=i),
            )
            for i in range(n)
        ],
        batch_size=2000,
    )


def test_the_queue_is_oldest_first_with_counts(login, people, submit):
    newer = submit("l3")
    older = submit("l1")
    Run.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(hours=2))
    page = login(people["rev"]).get("/").content.decode()
    assert page.index(str(older.id)) < page.index(str(newer.id))
    assert 'Waiting for you <span class="count">2</span>' in page


def test_filters_narrow_the_queue_and_keep_working_as_links(login, people, submit):
    submit("l3")
    l1 = submit("l1")
    client = login(people["rev"])
    page = client.get("/?queue=l1").content.decode()
    assert str(l1.id) in page and page.count("data-row") == 1
    assert 'href="?queue=l1"' not in page  # the active filter links back to "all"
    page = client.get("/?action=reply.send&workflow=drafts").content.decode()
    assert page.count("data-row") == 1
    assert (
        "Nothing waits for you with these filters"
        in client.get("/?workflow=drafts&queue=l3").content.decode()
    )


def test_the_queue_costs_the_same_number_of_queries_for_any_size(
    login, people, flows, django_assert_max_num_queries
):
    client = login(people["rev"])
    action = flows["l3"].action_types.get()
    bulk_waiting(flows["l3"], 5, action_type=action)
    with django_assert_max_num_queries(20) as small:
        client.get("/")
    bulk_waiting(flows["l3"], 500, action_type=action)
    with django_assert_max_num_queries(20) as big:
        resp = client.get("/")
    assert len(big.captured_queries) == len(small.captured_queries)
    assert resp.content.decode().count("data-row") == selectors.PAGE_SIZE


def test_keyset_pages_walk_the_whole_queue_once(login, people, flows):
    bulk_waiting(flows["l3"], 120)
    client = login(people["rev"])
    seen, url = [], "/"
    for _ in range(5):
        resp = client.get(url)
        ctx_runs = [row["run"].id for row in resp.context["runs"]]
        seen.extend(ctx_runs)
        url = resp.context["next_url"]
        if not url:
            break
    assert len(seen) == 120 and len(set(seen)) == 120


def test_the_waiting_filters_are_served_by_the_partial_indexes(flows):
    bulk_waiting(flows["l3"], 2000)
    with connection.cursor() as cur:
        cur.execute("ANALYZE traces_run")
        # On a small table a seq scan is cheapest; forbid it to prove an index can serve
        # the query's shape (its predicate and order). bench/queue.py times 100,000 rows.
        cur.execute("SET LOCAL enable_seqscan = off")
        ids = [flows["l3"].id, flows["l1"].id]
    for filters in (selectors.QueueFilters(), selectors.QueueFilters(queue="l3")):
        plan = selectors.runs_waiting_for(workflow_ids=ids, filters=filters)[:51].explain()
        assert "run_waiting" in plan, plan
        assert "Sort  " not in plan, plan  # the index order serves ORDER BY


def test_owners_see_failed_executions_in_the_queue(login, people, submit):
    run = submit("l3")
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, executed_at=timezone.now(), result={"error": "bank said no"}
    )
    assert "bank said no" in login(people["owner"]).get("/queue/").content.decode()


def test_an_htmx_decision_loads_the_next_run_in_place(login, people, submit, seen):
    first, second = submit("l3"), submit("l3")
    Run.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=1))
    client = login(people["rev"])
    client.get(f"/runs/{first.id}/")
    resp = client.post(
        f"/runs/{first.id}/decide",
        {"verdict": "approve", **seen(first)},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 200
    assert resp["HX-Push-Url"] == f"/runs/{second.id}/"
    body = resp.content.decode()
    assert f'data-run="{second.id}"' in body and "approved" in body
    assert "<title>(1)" in body
    assert Run.objects.get(pk=first.pk).status == "approved"


def test_a_stale_decision_in_the_browser_says_so_and_changes_nothing(login, people, submit):
    run = submit("l3")
    client = login(people["rev"])
    resp = client.post(
        f"/runs/{run.id}/decide",
        {"verdict": "approve", "seen_version": 1, "seen_hash": "f" * 64},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 409
    assert "changed since you opened it" in resp.content.decode()
    assert Run.objects.get(pk=run.pk).status == "pending_review"


def test_an_l1_edit_through_the_form_keeps_param_types(login, people, submit, seen):
    run = submit("l1")
    client = login(people["rev"])
    resp = client.post(
        f"/runs/{run.id}/decide",
        {
            "verdict": "submit",
            **seen(run),
            "param__to": "ana@example.com",
            "param__body": "Hello,\r\nit ships today.",
        },
    )
    assert resp.status_code == 302
    run.refresh_from_db()
    assert run.decision["params"]["body"] == "Hello,\nit ships today."
    page = client.get(f"/runs/{run.id}/").content.decode()
    assert "Diff against the draft" in page and "it ships today." in page
