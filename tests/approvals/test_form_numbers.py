"""A number typed into a draft must be finite: the reviewer is told which field, and
nothing is decided (security review, finding 9)."""

import pytest

from traces.models import Run

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("typed", ["1e400", "-1e999", "Infinity", "NaN"])
def test_a_non_finite_number_in_a_draft_is_refused_naming_the_field(
    login, people, submit, seen, typed
):
    run = submit("l1", params={"to": "ana@example.com", "body": "Hello", "credit": 5})
    client = login(people["rev"])
    resp = client.post(
        f"/runs/{run.id}/decide",
        {
            "verdict": "submit",
            **seen(run),
            "param__to": "ana@example.com",
            "param__body": "Hello",
            "param__credit": typed,
        },
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 422
    assert "&#x27;credit&#x27; must be a finite number" in resp.content.decode()
    assert Run.objects.get(pk=run.pk).status == "pending_review"
