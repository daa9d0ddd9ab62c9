"""Rendering a page: the templates, the filters they use, and the headers every page sends."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from models.orders import money

HERE = Path(__file__).parent
ASSETS = HERE / "assets"
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")


def _words(value: object) -> str:
    """`partially_shipped` -> `partially shipped`."""
    return str(value or "").replace("_", " ")


templates.env.filters["money"] = lambda amount, currency="USD": money(int(amount), currency)
templates.env.filters["when"] = _when
templates.env.filters["words"] = _words

# A page holds an order's details or an operator's view: never cached, never leaked through a
# Referer to the carrier's site, never framed; it loads only its own stylesheet.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=PAGE_HEADERS
    )


def not_found_page(request: Request) -> HTMLResponse:
    """The same plain page for a wrong link, an expired one and an order that does not exist."""
    return render(request, "not_found.html", {}, status_code=404)
