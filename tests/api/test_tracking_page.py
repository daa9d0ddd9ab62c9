"""The tracking page's parts the browser test does not reach: a digital line's download link,
on the page while it works and gone once the line is returned (refunded and revoked)."""

import re
import uuid
from datetime import datetime

import httpx

from activities.tracking_links import TrackingLinks
from tests.api.conftest import follow, has_status, place
from tests.conftest import E2EStack, eventually

DOWNLOAD = re.compile(r'href="https?://[^/"]+(/downloads/[^"]+)"')


async def test_a_download_link_is_on_the_page_until_the_line_is_returned(
    e2e_stack: E2EStack, client_api: httpx.AsyncClient
) -> None:
    placed = await place(client_api, items=[{"sku": "EBOOK-DUNE", "quantity": 1}])
    order_id = placed["order_id"]
    await follow(client_api, order_id, has_status("delivered"))
    settings = e2e_stack.settings
    page = TrackingLinks(
        settings.public_base_url, settings.tracking_secret, settings.tracking_link_ttl
    ).path(order_id, datetime.fromisoformat(placed["placed_at"]))

    shown = await client_api.get(page)
    assert shown.status_code == 200 and "Download Dune (e-book)" in shown.text
    (link,) = DOWNLOAD.findall(shown.text)
    downloaded = await client_api.get(link.replace("&amp;", "&"))
    assert downloaded.status_code == 200, downloaded.text

    returned = await client_api.post(
        f"/orders/{order_id}/returns",
        json={"lines": [{"sku": "EBOOK-DUNE", "quantity": 1}], "reason": "changed_mind"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert returned.status_code == 201, returned.text

    async def page_text() -> str:
        return (await client_api.get(page)).text

    await eventually(page_text, lambda text: "Download Dune" not in text)
    assert (await client_api.get(link.replace("&amp;", "&"))).status_code == 410
