"""Signed download links for digital items: the URLs in the digital delivery email.

`GET /downloads/{order_id}/{sku}?sig=...&expires=...` needs no API key: the signature (HMAC of
order, SKU and expiry with DOWNLOAD_LINK_SECRET, see activities.downloads.DownloadLinks) is the
credential, and it is checked in constant time before anything else, so an unsigned request
learns nothing. A link stops working (410) once it expires (DOWNLOAD_LINK_TTL after the
delivery it was sent for) or once its line has been refunded.

The demo store generates a small text file in place of the e-book. A real store would keep the
files in object storage and answer with a redirect to a short-lived pre-signed URL there, so
the API never streams the bytes itself.
"""

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from activities.downloads import DownloadLinks
from api.deps import SessionDep, SettingsDep
from api.problems import ApiProblem, not_found, problem_responses
from api.routes.orders import OrderId
from models.tables import Product, RevokedDownload

router = APIRouter(prefix="/downloads", tags=["downloads"])

SKU_PATTERN = r"^[A-Z0-9][A-Z0-9-]{0,63}$"  # models.orders.Sku
SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, examples=["EBOOK-DUNE"])]
Signature = Annotated[
    str | None,
    Query(max_length=128, description="The signature from the link in the delivery email"),
]
# Up to the end of year 9999: a bigger number is no expiry any link was given.
Expires = Annotated[
    int | None,
    Query(ge=0, le=253_402_300_799, description="When the link expires, in unix seconds"),
]


@router.get(
    "/{order_id}/{sku}",
    response_class=Response,
    summary="Download a digital item",
    responses={
        200: {
            "description": "The file, as an attachment",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **problem_responses(403, 404, 410, 422),
    },
)
def download(
    order_id: OrderId,
    sku: SkuPath,
    session: SessionDep,
    settings: SettingsDep,
    sig: Signature = None,
    expires: Expires = None,
) -> Response:
    links = DownloadLinks(settings.public_base_url, settings.download_secret)
    # compare_digest refuses non-ASCII text with a TypeError; such a signature is simply wrong.
    # A link without an expiry (one mailed before links had one) is no valid link either.
    if (
        sig is None
        or expires is None
        or not sig.isascii()
        or not links.verify(order_id, sku, expires, sig)
    ):
        raise ApiProblem(
            403,
            "invalid-download-link",
            "this download link is not valid; use the link from your delivery email",
            title="Invalid download link",
        )
    if time.time() >= expires:
        raise ApiProblem(
            410,
            "download-link-expired",
            f"this download link for {sku} expired; ask support for a new one",
            title="Download link expired",
        )
    product = session.get(Product, sku)
    if product is None or not product.digital:
        raise not_found("download", f"{sku} is not a digital product")
    if session.get(RevokedDownload, (order_id, sku)) is not None:
        raise ApiProblem(
            410,
            "download-revoked",
            f"the download of {sku} for order {order_id} was revoked: the item was refunded",
            title="Download revoked",
        )
    return Response(
        _demo_file(product, order_id),
        media_type="text/plain; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{sku}.txt"',
            "Cache-Control": "private, no-store",  # a revoked link must not live on in a cache
        },
    )


def _demo_file(product: Product, order_id: str) -> str:
    return (
        f"{product.name}\n"
        f"{'=' * len(product.name)}\n\n"
        f"Licensed to order {order_id}.\n\n"
        "This is ordermill's demo store: in place of the book, this small file.\n"
    )
