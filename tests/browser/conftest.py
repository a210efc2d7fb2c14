"""Browser tests: Debian's chromium driven by Playwright's sync API against live_server.

One chromium per session, a fresh context (cookies, storage) and page per test. Runs are
submitted through the real gateway over HTTP, exactly as an agent would (see support.py).
"""

import os

import pytest
from django.contrib.auth.models import User

from approvals.management.commands.seed_demo import REFUND_SCHEMA, REPLY_SCHEMA
from ladder.models import ActionType, Workflow
from ladder.rungs import Executor, RiskClass, Rung
from tests.browser import support
from tests.browser.support import PASSWORD, VIEWPORT, Ladder
from traces.services.tokens import token_create

ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


def pytest_collection_modifyitems(items):
    """Run the browser tests last. While Playwright's sync API is up, an asyncio loop runs
    in the main thread (so asyncio.run() fails and Django needs DJANGO_ALLOW_ASYNC_UNSAFE);
    going last keeps every other test out of that state, and the browser is stopped at the
    end of the session."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


# -- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    chromium_path = support.CHROMIUM
    if not chromium_path.exists():
        pytest.fail(
            f"the browser tests need Debian's chromium at {chromium_path}: "
            "`make test` installs it, or run `sudo apt-get install chromium`",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; without this Django refuses
    # ORM calls made from the test body ("You cannot call this from an async context").
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    pw = sync_playwright().start()
    try:
        try:
            chromium = pw.chromium.launch(
                executable_path=str(chromium_path), args=support.CHROMIUM_ARGS, headless=True
            )
        except Exception as exc:
            pytest.fail(f"could not start {chromium_path}: {exc}", pytrace=False)
        yield chromium
        chromium.close()
    finally:
        pw.stop()
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture
def new_context(browser):
    """`new_context(**options)` → a fresh browser context, closed after the test."""
    contexts = []

    def make(**options):
        ctx = browser.new_context(**{"viewport": VIEWPORT, **options})
        ctx.set_default_timeout(5_000)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def page(new_context):
    """A fresh page that fails the test if agent content ever opens a dialog."""
    ctx = new_context()
    pg = ctx.new_page()
    dialogs = []

    def on_dialog(dialog):
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    yield pg
    assert not dialogs, f"a dialog opened: {dialogs}"


# -- people and sign-in ---------------------------------------------------------------------


@pytest.fixture
def make_reviewer(transactional_db):
    def make(username="reviewer"):
        return User.objects.create_user(username=username, password=PASSWORD)

    return make


@pytest.fixture
def ladder(live_server, make_reviewer) -> Ladder:
    reviewer = make_reviewer("reviewer")
    l1 = Workflow.objects.create(slug="support-reply", name="Support reply", rung=Rung.L1)
    ActionType.objects.create(workflow=l1, name="reply.send", param_schema=REPLY_SCHEMA)
    l2 = Workflow.objects.create(
        slug="refund-recommend",
        name="Refund recommendation",
        rung=Rung.L2,
        risk_class=RiskClass.CONSEQUENTIAL,
    )
    for name in ("refund.issue", "voucher.issue"):
        ActionType.objects.create(
            workflow=l2,
            name=name,
            param_schema=REFUND_SCHEMA,
            value_param="amount",
            currency_param="currency",
        )
    l3 = Workflow.objects.create(
        slug="support-refund",
        name="Support refund",
        rung=Rung.L3,
        risk_class=RiskClass.CONSEQUENTIAL,
    )
    ActionType.objects.create(
        workflow=l3,
        name="refund.issue",
        param_schema=REFUND_SCHEMA,
        value_param="amount",
        currency_param="currency",
        reversible=True,
        executor=Executor.AGENT,
        compensating_action="refund.reverse",
    )
    _token, raw = token_create(name="browser agent", workflows=[l1, l2, l3])
    result = Ladder(
        live_server_url=live_server.url, reviewer=reviewer, l1=l1, l2=l2, l3=l3, token=raw
    )
    result.grant(reviewer)
    return result
