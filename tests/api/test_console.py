"""The operator console over HTTP, without a browser: who gets in, the session cookie, the
forms' CSRF tokens, and that a decision goes through the API's own refusals.

Each test is a browser of its own (a fresh cookie jar, no Authorization header) against the
app on the shared e2e stack. The browser tests (tests/pages/test_console.py) drive the same
pages through Chromium.
"""

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session

from api.auth import (
    CONSOLE_SESSION_COOKIE,
    Keyring,
    Principal,
    Role,
    new_codec_session,
    new_console_session,
)
from api.main import create_app
from api.pages import csrf
from api.pages.console import ConsoleSession, open_session
from database import init_database
from models.orders import OrderStatus, OrderView, TimelineEntry
from models.projection import order_record_values
from models.reconcile import DiscrepancyKind
from models.tables import OrderRecord, ReconciliationDiscrepancy, ReconciliationRun
from settings import DEV_API_KEYS, Settings
from tests.api.conftest import CLIENT_KEY, OPERATOR_KEY, follow, has_status, http_client
from tests.api.console_helpers import form_fields, held_order, new_customer
from tests.conftest import E2EStack, new_id

OPERATOR = Principal("dev-operator", Role.OPERATOR)
KEYRING = Keyring(Settings(_env_file=None, api_keys=DEV_API_KEYS).api_key_entries)
CONSOLE_PAGES = ["/console", "/console/orders", "/console/orders/ord_x", "/console/reconciliation"]


@pytest.fixture
async def browser(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser as the console sees one: its own cookie jar, no API key."""
    async with http_client(api_app, None) as http:
        yield http


async def sign_in(http: httpx.AsyncClient, key: str = OPERATOR_KEY) -> httpx.Response:
    return await http.post("/console/sign-in", data={"key": key})


async def signed_in(http: httpx.AsyncClient) -> ConsoleSession:
    response = await sign_in(http)
    assert response.status_code == 303, response.text
    session = open_session(KEYRING, response.cookies[CONSOLE_SESSION_COOKIE])
    assert session is not None
    return session


def decision_action(order_id: str) -> str:
    return f"/console/orders/{order_id}/holds/risk_review"


async def queue_form(http: httpx.AsyncClient, customer_id: str, order_id: str) -> dict[str, str]:
    page = await http.get("/console", params={"customer_id": customer_id})
    assert page.status_code == 200, page.text
    return form_fields(page.text, decision_action(order_id))


async def assert_still_held(api: httpx.AsyncClient, order_id: str) -> None:
    view = (await api.get(f"/orders/{order_id}")).json()
    assert view["status"] == "on_hold"
    assert [h["resolution"] for h in view["holds"]] == [None]


# ---- who gets in -----------------------------------------------------------------------------


async def test_an_operator_signs_in_with_a_cookie_for_the_console_only(
    browser: httpx.AsyncClient,
) -> None:
    form = await browser.get("/console/sign-in")
    assert form.status_code == 200 and 'name="key"' in form.text
    assert "default-src 'none'" in form.headers["content-security-policy"]
    assert form.headers["cache-control"] == "no-store"

    response = await sign_in(browser)
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "Path=/console", "SameSite=strict", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http here; see the https test below
    assert OPERATOR_KEY not in cookie

    queue = await browser.get("/console")
    assert queue.status_code == 200 and "<h1>Review queue</h1>" in queue.text
    assert "Signed in as dev-operator" in queue.text
    # The cookie opens the console and nothing else: the API still wants a key.
    cookie_only = {"Cookie": f"{CONSOLE_SESSION_COOKIE}={response.cookies[CONSOLE_SESSION_COOKIE]}"}
    assert (await browser.get("/orders", headers=cookie_only)).status_code == 401
    # Signed in already: the sign-in page sends the operator on.
    assert (await browser.get("/console/sign-in")).headers["location"] == "/console"


async def test_over_https_the_cookie_is_secure(api_app: FastAPI) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api_app), base_url="https://ordermill.test"
    ) as https:
        response = await sign_in(https)
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    ("key", "status", "says"),
    [
        (CLIENT_KEY, 403, "That is a client key"),
        ("omk_unknown", 401, "That is not a valid API key"),
        ("", 401, "That is not a valid API key"),
    ],
)
async def test_a_client_key_or_no_key_gets_the_sign_in_page_not_the_console(
    browser: httpx.AsyncClient, key: str, status: int, says: str
) -> None:
    refused = await sign_in(browser, key)
    assert refused.status_code == status
    assert says in refused.text and 'name="key"' in refused.text
    assert "set-cookie" not in refused.headers
    for path in CONSOLE_PAGES:
        answer = await browser.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/sign-in")


async def test_only_a_valid_console_session_opens_it(browser: httpx.AsyncClient) -> None:
    revoked = Keyring(
        Settings(_env_file=None, api_keys="omk_rotated:operator:dev-operator").api_key_entries
    )
    good = new_console_session(KEYRING, OPERATOR)
    name, expires, mac = good.rsplit(".", 2)
    for cookie in (
        new_console_session(KEYRING, OPERATOR, now=time.time() - 9 * 3600),  # expired
        new_console_session(revoked, OPERATOR),  # signed by a key no longer listed
        new_codec_session(KEYRING, OPERATOR),  # the codec's: another context
        f"{name}.{int(expires) + 3600}.{mac}",  # lifetime stretched
        f"dev-client.{expires}.{mac}",  # a client's name
        "garbage",
    ):
        answer = await browser.get(
            "/console", headers={"Cookie": f"{CONSOLE_SESSION_COOKIE}={cookie}"}
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/sign-in?session=ended"
    # An operator's key as a bearer opens the API, never the console: only its cookie does.
    bearer = await browser.get("/console", headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    assert bearer.headers["location"] == "/console/sign-in"
    accepted = await browser.get("/console", headers={"Cookie": f"{CONSOLE_SESSION_COOKIE}={good}"})
    assert accepted.status_code == 200


async def test_signing_out_takes_the_form_s_token(browser: httpx.AsyncClient) -> None:
    await signed_in(browser)
    page = await browser.get("/console")
    token = form_fields(page.text, "/console/sign-out")["csrf"]

    forged = await browser.post("/console/sign-out", data={"csrf": "1.forged"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    assert (await browser.get("/console")).status_code == 200  # still signed in

    out = await browser.post("/console/sign-out", data={"csrf": token})
    assert (out.status_code, out.headers["location"]) == (303, "/console/sign-in?signed_out=true")
    assert 'ordermill_console=""' in out.headers["set-cookie"]
    assert "max-age=0" in out.headers["set-cookie"].lower()
    assert (await browser.get("/console")).headers["location"] == "/console/sign-in"


async def test_a_cross_site_or_stuffed_sign_in_is_refused(browser: httpx.AsyncClient) -> None:
    refused = await browser.post(
        "/console/sign-in", data={"key": OPERATOR_KEY}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    stuffed = await browser.post(
        "/console/sign-in", data={"key": OPERATOR_KEY, **{f"f{i}": "x" for i in range(20)}}
    )
    assert stuffed.status_code == 400 and "set-cookie" not in stuffed.headers


# ---- deciding ----------------------------------------------------------------------------------


async def test_a_decision_needs_this_session_s_token_for_this_hold(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_app: FastAPI
) -> None:
    customer = await new_customer(api)
    order_id, other_id = [await held_order(api, customer) for _ in range(2)]
    session = await signed_in(browser)
    form = await queue_form(browser, customer, order_id)
    assert form["csrf"] and form["key"] and form["back"] == "queue"
    assert form["customer_id"] == customer
    purpose = f"hold {order_id} risk_review"
    another_session = open_session(
        KEYRING, new_console_session(KEYRING, OPERATOR, now=time.time() - 60)
    )
    assert another_session is not None
    action = decision_action(order_id)
    release = {**form, "decision": "release", "reason": "looks fine"}

    for token in (
        "",
        "4102444800.0123456789abcdef0123456789abcdef",  # forged
        csrf.new_token(session.secret, purpose, session.cookie, now=time.time() - 9 * 3600),
        another_session.token(purpose),  # another session's
        form_fields(
            (await browser.get("/console", params={"customer_id": customer})).text,
            decision_action(other_id),
        )["csrf"],  # this session's, for another order
    ):
        refused = await browser.post(action, data={**release, "csrf": token})
        assert refused.status_code == 403, refused.text
        assert "Nothing was done" in refused.text
    cross_site = await browser.post(action, data=release, headers={"Sec-Fetch-Site": "same-site"})
    assert cross_site.status_code == 403
    await assert_still_held(api, order_id)

    # The page's own form, as it came: released, and back to the queue with what was done.
    done = await browser.post(action, data=release)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == (
        f"/console?customer_id={customer}&decided={order_id}&outcome=released"
    )  # back to the queue as it was filtered
    view = (await api.get(f"/orders/{order_id}")).json()
    assert [(h["resolution"], h["reason"]) for h in view["holds"]] == [("released", "looks fine")]
    queue = await browser.get(done.headers["location"])
    assert f"{order_id}: Released" in queue.text
    assert decision_action(order_id) not in queue.text  # no longer waiting
    assert decision_action(other_id) in queue.text

    # The same form again: one decision, its first outcome.
    again = await browser.post(action, data=release)
    assert again.headers["location"].endswith(f"decided={order_id}&outcome=replayed")
    # A fresh form for the decided hold: the order's own refusal, in its words.
    refused = await browser.post(action, data={**release, "key": new_id("key")})
    assert refused.status_code == 409
    assert re.search(r"already (decided|released|resolved)", refused.text), refused.text
    await follow(api, order_id, has_status("fulfilling", "shipped", "delivered"))


async def test_a_rejection_needs_a_reason_and_cancels_the_order(
    browser: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    customer = await new_customer(api)
    order_id = await held_order(api, customer)
    await signed_in(browser)
    form = await queue_form(browser, customer, order_id)
    action = decision_action(order_id)

    no_reason = await browser.post(action, data={**form, "decision": "reject", "reason": " "})
    assert no_reason.status_code == 422
    assert "Give a reason to reject" in no_reason.text
    assert action in no_reason.text  # the queue again, the order still in it, to decide
    control = await browser.post(action, data={**form, "decision": "reject", "reason": "a\x07b"})
    assert control.status_code == 422
    await assert_still_held(api, order_id)

    # From the order's own page this time: back to it.
    page = await browser.get(f"/console/orders/{order_id}")
    form = form_fields(page.text, action)
    assert form["back"] == "order"
    rejected = await browser.post(
        action, data={**form, "decision": "reject", "reason": "stolen card"}
    )
    assert rejected.status_code == 303
    assert rejected.headers["location"] == (
        f"/console/orders/{order_id}?decided={order_id}&outcome=rejected"
    )
    cancelled = await follow(api, order_id, has_status("cancelled"))
    assert cancelled["reason"]["detail"] == "risk_review rejected: stolen card"
    shown = await browser.get(rejected.headers["location"])
    assert "Rejected: the held step is given up" in shown.text and "stolen card" in shown.text


# ---- the pages' contents -----------------------------------------------------------------------


async def test_search_finds_an_order_by_id_customer_and_status(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_app: FastAPI
) -> None:
    customer = await new_customer(api)
    order_id = await held_order(api, customer)
    await signed_in(browser)

    by_id = await browser.get("/console/orders", params={"order_id": f" {order_id} "})
    assert by_id.headers["location"] == f"/console/orders/{order_id}"
    by_customer = await browser.get(
        "/console/orders", params={"customer_id": customer, "status": "on_hold"}
    )
    assert by_customer.status_code == 200 and f"/console/orders/{order_id}" in by_customer.text
    shipped = await browser.get(
        "/console/orders", params={"customer_id": customer, "status": "shipped"}
    )
    assert f"/console/orders/{order_id}" not in shipped.text and "No orders match" in shipped.text
    for params in ({"customer_id": "no such"}, {"status": "lost"}, {"cursor": "nonsense"}):
        assert (await browser.get("/console/orders", params=params)).status_code == 422
    assert (await browser.get("/console/orders/ord_nosuchorder")).status_code == 404
    assert (await browser.get("/console/orders/not%20an%20id")).status_code == 404

    page = await browser.get(f"/console/orders/{order_id}")
    ui = api_app.state.settings.temporal_ui_url
    assert f'href="{ui}/namespaces/default/workflows/order-{order_id}"' in page.text
    # Why it is held, in the order's words, and the form to decide it from here.
    assert "total $1,204.99 is at least the review threshold $500.00" in page.text
    assert form_fields(page.text, decision_action(order_id))["back"] == "order"


async def test_an_order_page_with_50_timeline_entries_and_its_time(
    browser: httpx.AsyncClient, e2e_stack: E2EStack
) -> None:
    """Not a bound on time: it prints what the page costs, for the README's reader."""
    order_id = new_id("ord_timeline").replace("-", "_")
    at = datetime.now(UTC)
    view = OrderView(
        order_id=order_id,
        customer_id="cus_ada",
        status=OrderStatus.SHIPPED,
        items=[],
        delivery="standard",
        placed_at=at,
        updated_at=at,
        timeline=[
            TimelineEntry(
                at=at + timedelta(seconds=i),
                event="inquiry",
                status="shipped",
                detail=f"question {i}: <b>where</b> is it?",
            )
            for i in range(50)
        ],
    )
    with Session(e2e_stack.engine) as db:
        db.add(OrderRecord(**order_record_values(view, 1)))
        db.commit()
    await signed_in(browser)

    took = []
    for _ in range(20):
        started = time.perf_counter()
        page = await browser.get(f"/console/orders/{order_id}")
        took.append(time.perf_counter() - started)
        assert page.status_code == 200
    assert page.text.count("question ") == 50
    assert "<b>where</b>" not in page.text and "&lt;b&gt;where&lt;/b&gt;" in page.text
    took.sort()
    print(
        f"\nconsole order page, 50 timeline entries: median {took[10] * 1000:.1f} ms, "
        f"slowest {took[-1] * 1000:.1f} ms (20 requests, in process)"
    )


async def test_the_latest_reconciliation_report_when_there_is_one(
    e2e_stack: E2EStack, tmp_path: Path
) -> None:
    """On a database of its own, so no other test's run is the latest."""
    fresh = init_database(f"sqlite:///{tmp_path / 'fresh.db'}")
    settings = e2e_stack.settings.model_copy(update={"api_keys": DEV_API_KEYS})
    app = create_app(settings, temporal_client=e2e_stack.client, engine=fresh)
    try:
        async with app.router.lifespan_context(app), http_client(app, None) as http:
            await signed_in(http)
            none_yet = await http.get("/console/reconciliation")
            assert (
                none_yet.status_code == 200
                and "No reconciliation has finished yet" in none_yet.text
            )
            empty = await http.get("/console")
            assert "Nothing is waiting for a decision" in empty.text

            with Session(fresh) as db:
                started = datetime.now(UTC)
                db.add(
                    ReconciliationRun(
                        run_id="rec_console",
                        workflow_id="wf",
                        started_at=started,
                        finished_at=started + timedelta(seconds=3),
                        status="finished",
                        checked={"orders": 12, "ledger_rows": 30},
                        found={"stuck_order": 1},
                    )
                )
                db.add(
                    ReconciliationDiscrepancy(
                        run_id="rec_console",
                        kind=DiscrepancyKind.STUCK_ORDER.value,
                        subject="ord_stuck",
                        detail="received for 2 hours",
                    )
                )
                db.commit()
            shown = await http.get("/console/reconciliation")
            for text in (
                "rec_console",
                "ledger rows",
                "stuck order",
                "ord_stuck",
                "received for 2 hours",
            ):
                assert text in shown.text
    finally:
        fresh.dispose()
