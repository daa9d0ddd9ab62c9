"""The customer's tracking page in a real browser: the emailed link, the order moving as the
carrier's webhooks arrive, a return requested through the page's form; and what a wrong,
expired or someone else's link shows (nothing).
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.async_api import Page, expect

from activities.tracking_links import TrackingLinks
from models.orders import OrderView
from tests.api.conftest import CLIENT_KEY, bearer, carrier_event, order_body, post_event
from tests.conftest import eventually
from tests.pages.conftest import LiveApp, assert_accessible, screenshots

LINK = re.compile(r"Follow your order at any time: (\S+)")


async def place(app: LiveApp, **changes: Any) -> str:
    async with httpx.AsyncClient(base_url=app.base_url, headers=bearer(CLIENT_KEY)) as http:
        placed = await http.post("/orders", json=order_body(**changes))
    assert placed.status_code == 202, placed.text
    return str(placed.json()["order_id"])


async def emailed_link(app: LiveApp, order_id: str) -> str:
    """The tracking link from the order's confirmation email, as the customer gets it."""

    async def sent() -> list[str]:
        return [
            m.get_content()
            for m in app.stack.smtp.for_order(order_id)
            if LINK.search(m.get_content())
        ]

    (first, *_) = await eventually(sent, bool, within=30)
    match = LINK.search(first)
    assert match is not None
    # The worker signs links with its own base URL; the path is what the customer follows.
    return app.base_url + "/track/" + match.group(1).split("/track/", 1)[1]


async def order(app: LiveApp, order_id: str) -> OrderView:
    async with httpx.AsyncClient(base_url=app.base_url, headers=bearer(CLIENT_KEY)) as http:
        response = await http.get(f"/orders/{order_id}")
    return OrderView.model_validate(response.json())


async def until_the_page_says(page: Page, text: str) -> None:
    """The page is server-rendered: the customer reloads it until the news is there."""

    async def shown() -> bool:
        await page.reload(wait_until="load")
        return text in await page.inner_text("main")

    await eventually(shown, bool, within=30, interval=0.3)


async def signal(app: LiveApp, tracking_number: str, status: str) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as http:
        answer = await post_event(
            http, carrier_event(tracking_number, status), app.stack.settings.webhook_secret
        )
    assert answer.status_code == 200, answer.text


async def test_a_customer_follows_the_emailed_link_to_delivery_and_requests_a_return(
    live_app: LiveApp, page: Page
) -> None:
    order_id = await place(live_app)
    link = await emailed_link(live_app, order_id)

    response = await page.goto(link, wait_until="load")
    assert response is not None and response.status == 200
    headers = await response.all_headers()
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Order {order_id}")
    await expect(
        page.get_by_label("Progress of your order").locator("li.done").first
    ).to_contain_text("Received")
    await assert_accessible(page)

    await until_the_page_says(page, "Your order is on its way.")
    (parcel,) = (await order(live_app, order_id)).shipments
    assert parcel.tracking_number is not None
    await expect(page.locator("main")).to_contain_text(parcel.tracking_number)
    await expect(page.locator("li.current")).to_contain_text("Delivered")
    await assert_accessible(page)
    await screenshots(page, "tracking-shipped")

    await signal(live_app, parcel.tracking_number, "in_transit")
    await until_the_page_says(page, "in transit")
    await signal(live_app, parcel.tracking_number, "delivered")
    await until_the_page_says(page, "Your order has been delivered.")
    steps = page.get_by_label("Progress of your order").locator("li")
    await expect(steps).to_have_count(6)
    await expect(page.get_by_label("Progress of your order").locator("li.done")).to_have_count(6)
    await expect(page.get_by_text("You can return items until")).to_be_visible()
    await assert_accessible(page)
    await screenshots(page, "tracking-delivered")

    # The return, through the page's own form (no JavaScript needed).
    await page.get_by_label("Dune (paperback) (up to 1)").fill("1")
    await page.get_by_label("Why?").select_option("damaged")
    await page.get_by_role("button", name="Request the return").click()
    await page.wait_for_load_state("load")
    await expect(page.get_by_role("status")).to_contain_text("Your return is booked")
    await expect(page.locator("#your-returns + ul")).to_contain_text("RET-1")
    await expect(page.get_by_text("Nothing more can be returned from this order.")).to_be_visible()
    await assert_accessible(page)
    (ret,) = (await order(live_app, order_id)).returns
    assert (ret.return_id, ret.lines[0].sku, ret.reason.value) == ("RET-1", "BOOK-DUNE", "damaged")


async def test_a_wrong_expired_or_borrowed_link_shows_nothing(
    live_app: LiveApp, page: Page
) -> None:
    mine = await place(live_app)
    theirs = await place(live_app)
    link = await emailed_link(live_app, mine)
    query = link.split("?", 1)[1]
    sig = re.search(r"sig=([0-9a-f]+)", query)
    assert sig is not None
    settings = live_app.settings
    expired = TrackingLinks(settings.public_base_url, settings.tracking_secret, timedelta(days=1))
    for wrong in (
        link.replace(sig.group(1), "0" * 32),  # tampered
        link.replace(mine, theirs),  # another order under my signature
        live_app.base_url + expired.path(mine, datetime.now(UTC) - timedelta(days=2)),
        f"{live_app.base_url}/track/{mine}",  # no signature at all
        f"{live_app.base_url}/track/ord_nosuchorder?exp=9999999999&sig=" + "0" * 32,
    ):
        response = await page.goto(wrong, wait_until="load")
        assert response is not None and response.status == 404, wrong
        text = await page.inner_text("body")
        assert "We cannot find that page" in text
        assert mine not in text and theirs not in text
    await assert_accessible(page)


async def test_a_return_form_without_its_csrf_token_is_refused(live_app: LiveApp) -> None:
    order_id = await place(live_app)
    link = await emailed_link(live_app, order_id)
    query = dict(pair.split("=", 1) for pair in link.split("?", 1)[1].split("&"))
    async with httpx.AsyncClient(base_url=live_app.base_url) as http:
        forged = await http.post(
            f"/track/{order_id}/returns",
            data={**query, "csrf": "1.deadbeef", "qty-BOOK-DUNE": "1", "reason": "damaged"},
        )
    assert forged.status_code == 403
    assert "This form has expired" in forged.text
    assert (await order(live_app, order_id)).returns == []
