"""GET /metrics: the API's Prometheus metrics (the worker serves its own, and the SDK's)."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import authenticate, require_operator
from api.deps import SettingsDep
from api.metrics import api_metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """For Prometheus to scrape; open or operator-only as METRICS_AUTH says (not in the
    OpenAPI document: a scrape target, not an operation of the shop)."""
    if settings.effective_metrics_auth == "operator":
        await require_operator(await authenticate(request, None))
    body = generate_latest(api_metrics(request).registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
