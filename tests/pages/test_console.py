"""The operator console in a real browser (Debian's Chromium through Playwright) against the
real app over HTTP on the real dev server and worker: an operator signs in, releases one held
order and rejects another from the queue; a client key never gets in. Every page is checked
with axe-core and photographed at desktop and phone widths (.data/screenshots/console-*).
"""

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.api.conftest import CLIENT_KEY, OPERATOR_KEY, bearer, follow, has_status
from tests.api.console_helpers import held_order, new_customer
from tests.pages.conftest import DESKTOP, PHONE, LiveApp, assert_accessible, screenshots


@pytest.fixture
async def api(live_app: LiveApp) -> AsyncIterator[httpx.AsyncClient]:
    """The operator's API, over the same real HTTP as the browser."""
    async with httpx.AsyncClient(
        base_url=live_app.base_url, headers=bearer(OPERATOR_KEY), timeout=30
    ) as client:
        yield client


async def look(page: Page, name: str) -> None:
    """Accessible, photographed, and at a phone's width never wider than the phone."""
    await assert_accessible(page)
    await screenshots(page, f"console-{name}")
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    await page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    assert overflow <= 0, f"{name} is {overflow}px wider than a phone"


async def test_an_operator_releases_one_held_order_and_rejects_another(
    page: Page, live_app: LiveApp, api: httpx.AsyncClient
) -> None:
    customer = await new_customer(api)
    kept, refused = [await held_order(api, customer) for _ in range(2)]

    # Not signed in: the console is the sign-in page.
    await page.goto(f"{live_app.base_url}/console")
    await expect(page).to_have_url(f"{live_app.base_url}/console/sign-in")
    await look(page, "sign-in")
    await page.get_by_label("Operator API key").fill(OPERATOR_KEY)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Review queue", level=1)).to_be_visible()
    (cookie,) = await page.context.cookies()
    assert (cookie["name"], cookie["path"]) == ("ordermill_console", "/console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # The queue, narrowed to this test's customer: both orders, each with why it is held.
    await page.get_by_label("Only the orders of customer").fill(customer)
    await page.get_by_role("button", name="Filter").click()
    cards = {
        order_id: page.locator("article", has=page.get_by_role("heading", name=order_id))
        for order_id in (kept, refused)
    }
    for card in cards.values():
        await expect(card).to_contain_text("is at least the review threshold $500.00")
    # The longest-waiting first.
    assert await page.locator("article h2").all_inner_texts() == [kept, refused]
    await look(page, "queue")

    await cards[kept].get_by_label("Reason").fill("known collector")
    await cards[kept].get_by_role("button", name="Release").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"{kept}: Released: the held step runs again."
    )
    await expect(cards[kept]).to_have_count(0)  # decided: out of the queue

    # Reject wants a reason: the browser will not send the form without one.
    await cards[refused].get_by_role("button", name="Reject").click()
    assert await cards[refused].get_by_label("Reason").evaluate("field => !field.validity.valid")
    assert (await api.get(f"/orders/{refused}")).json()["status"] == "on_hold"
    await cards[refused].get_by_label("Reason").fill("card testing")
    await cards[refused].get_by_role("button", name="Reject").click()
    await expect(page.get_by_role("status")).to_contain_text(f"{refused}: Rejected")
    await expect(page.get_by_text("Nothing is waiting for a decision")).to_be_visible()

    # The orders go on as the API would have them: one to the warehouse, one cancelled.
    released = await follow(api, kept, has_status("fulfilling", "shipped", "delivered"))
    assert [(h["resolution"], h["reason"]) for h in released["holds"]] == [
        ("released", "known collector")
    ]
    cancelled = await follow(api, refused, has_status("cancelled"))
    assert cancelled["reason"]["detail"] == "risk_review rejected: card testing"

    # Found by its id, the order's page: the decision on its timeline, its Temporal history.
    await page.get_by_role("link", name="Find orders").click()
    await page.get_by_label("Order id", exact=True).fill(kept)
    await page.get_by_role("button", name="Open the order").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(f"Order {kept}")
    await expect(page.get_by_role("region", name="Holds")).to_contain_text("known collector")
    await expect(page.get_by_role("region", name="Timeline")).to_contain_text("known collector")
    history = page.get_by_role("link", name="Its history in the Temporal UI")
    ui = live_app.settings.temporal_ui_url
    assert await history.get_attribute("href") == f"{ui}/namespaces/default/workflows/order-{kept}"
    await look(page, "order")

    await page.get_by_role("link", name=customer).click()  # the customer's orders
    await expect(page.get_by_role("link", name=refused)).to_be_visible()
    await look(page, "search")

    await page.get_by_role("link", name="Reconciliation").click()
    await expect(page.get_by_role("heading", name="The latest reconciliation")).to_be_visible()
    await look(page, "reconciliation")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    assert await page.context.cookies() == []
    await page.goto(f"{live_app.base_url}/console")
    await expect(page).to_have_url(f"{live_app.base_url}/console/sign-in")


async def test_a_client_key_cannot_reach_the_console(browser: Browser, live_app: LiveApp) -> None:
    context = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = await context.new_page()
    try:
        await page.goto(f"{live_app.base_url}/console/sign-in")
        await page.get_by_label("Operator API key").fill(CLIENT_KEY)
        async with page.expect_response(f"{live_app.base_url}/console/sign-in") as answer:
            await page.get_by_role("button", name="Sign in").click()
        assert (await answer.value).status == 403
        await expect(page.get_by_role("alert")).to_have_text(
            "That is a client key: the console is for operators only."
        )
        assert await context.cookies() == []
        await look(page, "client-refused")
        for path in ("/console", "/console/orders", "/console/reconciliation"):
            await page.goto(f"{live_app.base_url}{path}")
            await expect(page).to_have_url(f"{live_app.base_url}/console/sign-in")
    finally:
        await context.close()
