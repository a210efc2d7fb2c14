"""Sign-in: failed attempts are throttled per name and per address, passwords must be
reasonable, and there is no password reset to probe."""

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests"  # tests/factories.py
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


def sign_in(username, password, *, address="10.0.0.1", url=LOGIN, **headers):
    """A fresh browser posting the sign-in form; returns (response, signed in?)."""
    client = Client()
    resp = client.post(
        url, {"username": username, "password": password}, REMOTE_ADDR=address, headers=headers
    )
    return resp, SESSION_KEY in client.session


def fail(username, times, *, address="10.0.0.1", url=LOGIN, **headers):
    return [
        sign_in(username, "wrong", address=address, url=url, **headers)[0].status_code
        for _ in range(times)
    ]


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


def test_thirty_wrong_passwords_then_the_right_one_is_refused(alice):
    limit = settings.AXES_FAILURE_LIMIT
    statuses = fail("alice", 30)
    assert statuses[: limit - 1] == [200] * (limit - 1)  # the form says "didn't match"
    assert set(statuses[limit - 1 :]) == {429}
    resp, signed_in = sign_in("alice", PASSWORD)
    assert resp.status_code == 429 and not signed_in
    assert resp["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    assert "Sign-in paused" in resp.content.decode()


def test_a_few_wrong_passwords_below_the_limit_do_not_stop_the_right_one(alice):
    fail("alice", settings.AXES_FAILURE_LIMIT - 1)
    resp, signed_in = sign_in("alice", PASSWORD)
    assert resp.status_code == 302 and signed_in


def test_after_the_limit_another_person_from_the_same_address_is_refused(alice, bob):
    fail("alice", settings.AXES_FAILURE_LIMIT, address="10.0.0.7")
    resp, signed_in = sign_in("bob", PASSWORD, address="10.0.0.7")
    assert resp.status_code == 429 and not signed_in
    resp, signed_in = sign_in("bob", PASSWORD, address="10.0.0.8")
    assert resp.status_code == 302 and signed_in


def test_a_name_guessed_from_many_addresses_is_refused_from_a_new_one(alice):
    for i in range(settings.AXES_FAILURE_LIMIT):
        fail("alice", 1, address=f"10.1.0.{i}")
    resp, signed_in = sign_in("alice", PASSWORD, address="10.2.0.1")
    assert resp.status_code == 429 and not signed_in


def test_the_admin_sign_in_is_throttled_too(db):
    UserFactory(username="root", is_superuser=True, is_staff=True)
    statuses = fail("root", settings.AXES_FAILURE_LIMIT, url=ADMIN_LOGIN)
    assert statuses[-1] == 429
    resp, signed_in = sign_in("root", PASSWORD, url=ADMIN_LOGIN)
    assert resp.status_code == 429 and not signed_in
    # ...and the count is shared with the reviewers' sign-in page.
    resp, signed_in = sign_in("root", PASSWORD, address="10.9.9.9")
    assert resp.status_code == 429 and not signed_in


def test_the_lockout_answer_does_not_tell_whether_the_name_exists(alice):
    fail("alice", settings.AXES_FAILURE_LIMIT, address="10.0.1.1")
    fail("nobody-by-this-name", settings.AXES_FAILURE_LIMIT, address="10.0.1.2")
    real, _ = sign_in("alice", "wrong", address="10.0.1.1")
    ghost, _ = sign_in("nobody-by-this-name", "wrong", address="10.0.1.2")
    assert real.status_code == ghost.status_code == 429
    assert without_csrf_token(real) == without_csrf_token(ghost)


def without_csrf_token(resp) -> str:
    """The page minus its CSRF token, the one part that differs on every answer."""
    return re.sub(r'"X-CSRFToken": "[^"]+"', "", resp.content.decode())


def test_attempts_refused_during_a_lockout_write_nothing(alice):
    fail("alice", settings.AXES_FAILURE_LIMIT)
    before = list(AccessAttempt.objects.values_list("failures_since_start", "attempt_time"))
    assert fail("alice", 10) == [429] * 10
    after = list(AccessAttempt.objects.values_list("failures_since_start", "attempt_time"))
    assert after == before


def test_after_the_cool_off_the_right_password_works_again(alice):
    fail("alice", settings.AXES_FAILURE_LIMIT)
    # The clock moves on: every counted failure is now one cool-off old.
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time
        - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1)
    )
    resp, signed_in = sign_in("alice", PASSWORD)
    assert resp.status_code == 302 and signed_in


def test_behind_a_proxy_its_client_address_header_keeps_clients_apart(alice, bob, settings):
    settings.LADDER_CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    proxy = "127.0.0.1"
    fail("alice", settings.AXES_FAILURE_LIMIT, address=proxy, x_real_ip="203.0.113.5")
    resp, signed_in = sign_in("bob", PASSWORD, address=proxy, x_real_ip="203.0.113.6")
    assert resp.status_code == 302 and signed_in
    resp, signed_in = sign_in("bob", PASSWORD, address=proxy, x_real_ip="203.0.113.5")
    assert resp.status_code == 429 and not signed_in
    # A header that is not an address counts against the proxy's own.
    fail("carol", 1, address=proxy, x_real_ip="not an address")
    assert AccessAttempt.objects.filter(username="carol").get().ip_address == proxy


@pytest.mark.parametrize(
    "weak", ["short7!", "password123", "12345678901", "alice2024", "qwertyuiop"]
)
def test_a_weak_password_is_refused(alice, weak):
    with pytest.raises(ValidationError):
        validate_password(weak, alice)
    validate_password("correct horse battery staple", alice)


def test_the_password_change_page_refuses_a_weak_password_and_takes_a_strong_one(alice):
    client = Client()
    client.force_login(alice)
    resp = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": "password1", "new_password2": "password1"},
    )
    assert resp.status_code == 200
    assert "This password is too common." in resp.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)

    strong = "correct horse battery staple"
    resp = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": strong, "new_password2": strong},
    )
    assert resp.status_code == 302 and resp["Location"] == "/accounts/password_change/done/"
    alice.refresh_from_db()
    assert alice.check_password(strong)


@pytest.mark.parametrize(
    "url",
    [
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/MQ/set-password/",
        "/accounts/reset/done/",
    ],
)
def test_there_is_no_password_reset(alice, url):
    client = Client()
    assert client.get(url).status_code == 404
    assert client.post(url, {"email": "alice@example.com"}).status_code == 404


def test_the_sign_in_page_links_to_no_password_reset(client):
    page = client.get(LOGIN).content.decode()
    assert "password_reset" not in page and "Forgot" not in page
