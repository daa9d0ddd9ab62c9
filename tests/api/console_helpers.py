"""Held orders for the operator console's tests, placed through the API as a client would.

Each test gets a customer of its own, so its queue (filtered to that customer) holds only its
orders whatever else the shared stack has waiting.
"""

import uuid
from html.parser import HTMLParser
from typing import Any

import httpx

from tests.api.conftest import follow, place
from tests.conftest import new_id

# $1,200: over the $500 review threshold, so every order of it waits for a risk review.
FIRST_EDITION = {"sku": "BOOK-FIRST-EDITION", "quantity": 1}


async def new_customer(api: httpx.AsyncClient) -> str:
    response = await api.post(
        "/customers",
        json={
            "name": "Console Test",
            "email": f"{new_id('console')}@example.com",
            "address": {
                "name": "Console Test",
                "line1": "1 Queue Street",
                "city": "Springfield",
                "postal_code": "62701",
                "country": "US",
            },
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def review_open(view: dict[str, Any]) -> bool:
    return any(h["code"] == "risk_review" and h["resolution"] is None for h in view["holds"])


async def held_order(api: httpx.AsyncClient, customer_id: str) -> str:
    """An order on hold for a risk review. The demo has 3 first editions: each held order
    brings its own, so the suite never runs out."""
    stocked = await api.post(
        "/products/BOOK-FIRST-EDITION/stock",
        json={"warehouse": "WH-EAST", "add": 1},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert stocked.status_code == 200, stocked.text
    order_id = str((await place(api, customer_id=customer_id, items=[FIRST_EDITION]))["order_id"])
    view = await follow(api, order_id, review_open)
    assert view["status"] == "on_hold"
    return order_id


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((named.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in named:
            self.forms[-1][1][named["name"]] = named.get("value", "")


def form_fields(page: str, action: str) -> dict[str, str]:
    """The fields (hidden ones included) of the form a page posts to `action`."""
    parser = _Forms()
    parser.feed(page)
    found = [fields for posted_to, fields in parser.forms if posted_to == action]
    assert len(found) == 1, f"{len(found)} forms post to {action}"
    return found[0]
