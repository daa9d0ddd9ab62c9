"""GET /downloads/{order_id}/{sku}?sig=...&expires=...: the signed links of the delivery email.

The signature (over order, SKU and expiry) is the only credential, so every wrong one is a 403
whatever the rest of the URL says; a validly signed link then answers 410 (expired), 404 (not a
digital product), 410 (refunded) or the file.
"""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlmodel import Session

from activities.downloads import DownloadLinks
from models.tables import RevokedDownload
from tests.api.conftest import assert_problem
from tests.conftest import E2EStack, new_id


@pytest.fixture
def links(e2e_stack: E2EStack) -> DownloadLinks:
    settings = e2e_stack.settings
    return DownloadLinks(
        settings.public_base_url, settings.download_secret, ttl=settings.download_link_ttl
    )


def path(
    links: DownloadLinks, order_id: str, sku: str, *, issued_at: datetime | None = None
) -> str:
    """The link as the email has it, without the public host; issued now unless told."""
    url = urlsplit(links.url(order_id, sku, issued_at=issued_at or datetime.now(UTC)))
    return f"{url.path}?{url.query}"


def with_query(link: str, **changes: str) -> str:
    route, query = link.split("?")
    params = {name: values[0] for name, values in parse_qs(query).items()}
    return f"{route}?{urlencode({**params, **changes})}"


async def test_a_signed_link_downloads_the_file(
    api: httpx.AsyncClient, links: DownloadLinks
) -> None:
    order_id = new_id("ord")
    response = await api.get(path(links, order_id, "EBOOK-DUNE"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["content-disposition"] == 'attachment; filename="EBOOK-DUNE.txt"'
    assert response.headers["cache-control"] == "private, no-store"
    assert response.text.startswith("Dune (e-book)\n")
    assert f"Licensed to order {order_id}." in response.text


@pytest.mark.parametrize(
    "query",
    [
        "",  # no signature
        "?sig=",
        "?sig=" + "0" * 32,
        "?sig=zz%C3%A9",  # not even ASCII: still just a wrong signature
    ],
)
async def test_a_wrong_or_missing_signature_is_403(api: httpx.AsyncClient, query: str) -> None:
    problem = assert_problem(await api.get(f"/downloads/{new_id('ord')}/EBOOK-DUNE{query}"), 403)
    assert problem["type"].endswith("/invalid-download-link")


async def test_a_signature_for_another_order_or_item_is_403(
    api: httpx.AsyncClient, links: DownloadLinks
) -> None:
    order_id = new_id("ord")
    link = path(links, order_id, "EBOOK-DUNE")
    query = link.split("?")[1]
    assert_problem(await api.get(f"/downloads/{new_id('ord')}/EBOOK-DUNE?{query}"), 403)
    assert_problem(await api.get(f"/downloads/{order_id}/BOOK-DUNE?{query}"), 403)


async def test_a_link_past_its_expiry_is_410(api: httpx.AsyncClient, links: DownloadLinks) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=400)
    link = path(links, new_id("ord"), "EBOOK-DUNE", issued_at=long_ago)
    problem = assert_problem(await api.get(link), 410)
    assert problem["type"].endswith("/download-link-expired")
    assert "expired" in problem["detail"]


async def test_a_changed_or_missing_expiry_is_403(
    api: httpx.AsyncClient, links: DownloadLinks
) -> None:
    expired = path(links, new_id("ord"), "EBOOK-DUNE", issued_at=datetime(2020, 1, 1, tzinfo=UTC))
    later = str(int((datetime.now(UTC) + timedelta(days=365)).timestamp()))
    problem = assert_problem(await api.get(with_query(expired, expires=later)), 403)
    assert problem["type"].endswith("/invalid-download-link")
    assert_problem(await api.get(expired.split("&")[0]), 403)  # only ?sig=


@pytest.mark.parametrize("expires", ["soon", "1.5", "-1", "9" * 40])
async def test_a_malformed_expiry_is_422_naming_it(
    api: httpx.AsyncClient, links: DownloadLinks, expires: str
) -> None:
    link = with_query(path(links, new_id("ord"), "EBOOK-DUNE"), expires=expires)
    problem = assert_problem(await api.get(link), 422)
    assert [error["field"] for error in problem["errors"]] == ["expires"]


async def test_a_physical_or_unknown_product_is_404(
    api: httpx.AsyncClient, links: DownloadLinks
) -> None:
    for sku in ("BOOK-DUNE", "EBOOK-NOSUCH"):
        problem = assert_problem(await api.get(path(links, new_id("ord"), sku)), 404)
        assert problem["detail"] == f"{sku} is not a digital product"


async def test_a_revoked_link_is_410(
    api: httpx.AsyncClient, links: DownloadLinks, e2e_stack: E2EStack
) -> None:
    order_id = new_id("ord")
    with Session(e2e_stack.engine) as session:
        session.add(RevokedDownload(order_id=order_id, sku="EBOOK-DUNE"))
        session.commit()
    problem = assert_problem(await api.get(path(links, order_id, "EBOOK-DUNE")), 410)
    assert problem["type"].endswith("/download-revoked")
    assert order_id in problem["detail"]
