"""Exports of the history: content, permissions, streaming in bounded memory, and the
`export_runs` command."""

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from approvals.exports import EVENT_COLUMNS, REVIEW_COLUMNS, RUN_COLUMNS
from approvals.models import Review
from tests.approvals.history_setup import MINE, T0, ids, make_run
from traces.models import TraceEvent


def export(client, **params):
    response = client.get(reverse("history-export"), params)
    assert response.status_code == 200, response.content
    assert response.streaming
    return response, b"".join(response.streaming_content).decode()


def csv_rows(body: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body)))


def jsonl_rows(body: str) -> list[dict]:
    return [json.loads(line) for line in body.splitlines()]


def test_runs_export_as_csv_holds_the_filtered_runs(world, people, login):
    response, body = export(login(people["compliance"]), kind="runs", format="csv",
                            workflow="approvals", decider="person")  # fmt: skip
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert body.splitlines()[0] == ",".join(RUN_COLUMNS)
    rows = csv_rows(body)
    assert {r["id"] for r in rows} == ids(world, "wrong_outcome")
    row = rows[0]
    assert row["workflow"] == "approvals"
    assert row["decided_by"] == "rev"
    assert row["outcome"] == "wrong"
    assert row["action"] == "refund.issue"


def test_runs_export_as_jsonl_is_oldest_first(world, people, login):
    _, body = export(login(people["compliance"]), kind="runs", format="jsonl")
    rows = jsonl_rows(body)
    assert [r["id"] for r in rows] == [str(world["runs"][n].id) for n in MINE]
    assert set(rows[0]) == set(RUN_COLUMNS)
    assert rows[0]["created_at"].startswith("2026-10-01T12:00:00")


def test_exports_never_hold_a_run_one_cannot_see(world, people, login):
    _, body = export(login(people["rev"]), kind="runs", format="jsonl")
    assert {r["id"] for r in jsonl_rows(body)} == ids(world, "draft_by_rev", "wrong_outcome")
    _, body = export(login(people["stranger"]), kind="runs", format="csv")
    assert body.splitlines() == [",".join(RUN_COLUMNS)]
    _, body = export(login(people["compliance"]), kind="runs", format="csv")
    assert str(world["runs"]["elsewhere"].id) not in body


def test_event_and_review_exports_follow_the_runs(submit, people, login, seen):

    l3 = submit("l3", summary="Refund for <EMAIL> customer")
    client = login(people["rev"])
    client.post(reverse("run-decide", args=[l3.id]), {"verdict": "approve", **seen(l3)})
    other = submit("l3")
    assert Review.objects.filter(run=l3).exists()

    _, body = export(login(people["compliance"]), kind="events", format="csv")
    rows = csv_rows(body)
    assert body.splitlines()[0] == ",".join(EVENT_COLUMNS)
    stored = list(TraceEvent.objects.filter(run_id__in=[l3.id, other.id]).order_by("run_id", "seq"))
    assert [(r["run_id"], int(r["seq"])) for r in rows] == [(str(e.run_id), e.seq) for e in stored]
    # The document is exported byte for byte: its hash still checks out.
    first = next(r for r in rows if r["run_id"] == str(l3.id) and r["seq"] == "1")
    assert first["document"] == TraceEvent.objects.get(run=l3, seq=1).document

    # The reviewer's own export of reviews holds their decision (their name on it).
    _, body = export(client, kind="reviews", format="jsonl")
    reviews = jsonl_rows(body)
    assert [r["run_id"] for r in reviews] == [str(l3.id)]
    assert reviews[0]["reviewer"] == "rev"
    assert reviews[0]["verdict"] == "approved"
    assert set(reviews[0]) == set(REVIEW_COLUMNS)


def test_an_export_refuses_filters_it_cannot_read(world, people, login):
    client = login(people["compliance"])
    assert client.get(reverse("history-export"), {"kind": "people"}).status_code == 400
    assert client.get(reverse("history-export"), {"format": "xlsx"}).status_code == 400
    response = client.get(reverse("history-export"), {"since": "last week"})
    assert response.status_code == 400
    assert b"not a date" in response.content


def test_a_csv_cell_never_starts_a_formula(people, flows, login):
    make_run(flows["l3"], n=1, at=T0, summary='=HYPERLINK("http://x")')
    _, body = export(login(people["compliance"]), kind="runs", format="csv")
    assert csv_rows(body)[0]["summary"] == '\'=HYPERLINK("http://x")'


def test_the_page_links_its_exports_with_its_filters(world, people, login):
    html = login(people["compliance"]).get(reverse("history"), {"status": "failed"}).content
    assert b'href="export?status=failed&amp;kind=events&amp;format=jsonl"' in html


def test_no_export_counts_or_ranks_reviewers(world, people, login):
    """One row per run, event or decision; a reviewer's name only on their decisions."""
    client = login(people["compliance"])
    for kind in ("runs", "reviews"):
        _, body = export(client, kind=kind, format="csv")
        header = body.splitlines()[0].lower()
        for word in ("count", "total", "rate", "rank", "duration", "per_reviewer"):
            assert word not in header
    _, body = export(client, kind="runs", format="jsonl")
    rows = jsonl_rows(body)
    assert len(rows) == len(MINE)  # no summary line
    named = [r for r in rows if r["decided_by"] == "rev"]
    assert {r["id"] for r in named} == ids(world, "draft_by_rev", "wrong_outcome")


# -- bounded memory -----------------------------------------------------------------------

ROWS = 200_000


def test_a_200000_run_export_streams_in_bounded_memory(people, flows, login):
    wf = flows["l3"]
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO traces_run (id, workflow_id, idempotency_key, request_hash, rung, status,
              queue, proposal, summary, value, currency, flags, escalation_reason, decision,
              execution_attempts, outcome, audit, version, trace_head, trace_length,
              created_at, updated_at, decider, probe, held, shadow_outcome)
            SELECT gen_random_uuid(), %s, 'bulk-' || n, md5(n::text), 3, 'executed', '',
              jsonb_build_object('action', 'refund.issue', 'params',
                                 jsonb_build_object('amount', n, 'order', 'o-' || n)),
              'Refund order ' || n || ' for <EMAIL:0123456789abcdef>', n, 'EUR', '[]',
              '', NULL, 0, '', '', 1, md5(n::text), 4,
              %s + n * interval '1 second', now(), 'policy', false, false, ''
            FROM generate_series(1, %s) AS n
            """,
            [wf.id, T0, ROWS],
        )
    client = login(people["compliance"])
    response = client.get(reverse("history-export"), {"kind": "runs", "format": "csv"})
    assert response.streaming
    size = lines = 0
    tracemalloc.start()
    try:
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == ROWS + 1
    assert size > 50_000_000  # ~60 MB of CSV
    # One chunk of rows at a time: a few MB at most, never the output's size.
    assert peak < size / 10, (peak, size)


# -- the command --------------------------------------------------------------------------


def test_the_command_exports_a_date_range(world, tmp_path):
    out = tmp_path / "runs.jsonl"
    call_command("export_runs", "--since", "2026-10-02", "--until", "2026-10-03",
                 "--format", "jsonl", "--output", str(out))  # fmt: skip
    rows = jsonl_rows(out.read_text())
    # The command is the system: every workflow, "elsewhere" included.
    assert {r["id"] for r in rows} == ids(world, "pick_by_rev2", "failed_policy", "elsewhere")


def test_the_command_narrows_to_a_workflow_and_writes_csv_to_stdout(world):
    buf = io.StringIO()
    call_command("export_runs", "--since", "2026-09-01", "--until", "2026-12-31",
                 "--workflow", "drafts", "--kind", "runs", stdout=buf)  # fmt: skip
    assert {r["id"] for r in csv_rows(buf.getvalue())} == ids(world, "draft_by_rev")


def test_the_command_exports_events(submit, tmp_path):
    run = submit("l1")
    out = tmp_path / "events.csv"
    today = datetime.now(UTC).date()
    call_command("export_runs", "--since", str(today - timedelta(days=1)), "--until",
                 str(today), "--kind", "events", "--output", str(out))  # fmt: skip
    rows = csv_rows(out.read_text())
    assert [int(r["seq"]) for r in rows] == list(
        TraceEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True)
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "soon", "--until", "2026-10-01"],
        ["--since", "2026-10-05", "--until", "2026-10-01"],
        ["--since", "2026-10-01", "--until", "2026-10-05", "--workflow", "nope"],
    ],
)
def test_the_command_explains_bad_arguments(db, args):
    with pytest.raises(CommandError):
        call_command("export_runs", *args)
