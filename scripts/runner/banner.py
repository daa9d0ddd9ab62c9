"""The banner `make run` prints once everything answers: where each thing is, and a curl to
paste that places a demo order."""

import json
import shlex
from urllib.parse import quote

from models.wire import RECONCILE_SCHEDULE
from runner.urls import api_url, codec_endpoint
from settings import DEV_API_KEY_ENTRIES, Settings

DEMO_ORDER = {
    "customer_id": "cus_ada",
    "items": [{"sku": "BOOK-DUNE", "quantity": 1}],
    "shipping_address": {
        "name": "Ada Lovelace",
        "line1": "12 Analytical Way",
        "city": "Springfield",
        "postal_code": "62701",
        "country": "US",
    },
    "delivery": "standard",
    "payment": {"token": "tok_visa"},
}


def key_lines(settings: Settings) -> tuple[list[str], str]:
    """The banner's lines about API keys, and the key to show in the example curl."""
    if settings.api_keys:
        return ["  API keys         from API_KEYS"], "$ORDERMILL_API_KEY"
    width = max(len(entry.key) for entry in DEV_API_KEY_ENTRIES)
    lines = ["  API keys         development keys (set API_KEYS to replace them):"]
    lines += [
        f"                     {entry.key:<{width}}  {entry.role:<8}  {entry.name}"
        for entry in DEV_API_KEY_ENTRIES
    ]
    client = next(entry.key for entry in DEV_API_KEY_ENTRIES if entry.role == "client")
    return lines, client


def codec_lines(settings: Settings, *, own_temporal: bool) -> list[str]:
    if not settings.encryption_key:
        return ["  Payloads         stored in clear: set ENCRYPTION_KEY to encrypt them"]
    endpoint = codec_endpoint(settings)
    lines = [
        f"  Payloads         encrypted (key {settings.encryption_key_id}); codec server {endpoint}",
        f"                   UI: sign in at {endpoint}/session with an operator key, then in the",
        "                   UI's codec settings override the cluster setting with that endpoint",
        "                   and turn on 'Include cross-origin credentials'",
        f"                   CLI: temporal workflow show --codec-endpoint {endpoint} "
        '--codec-auth "Bearer <operator key>" -w order-<id>',
    ]
    if not own_temporal:
        lines.insert(1, "                   (point your Temporal UI's codec endpoint at it)")
    return lines


def banner(settings: Settings, *, own_temporal: bool) -> str:
    """Where everything is; printed unprefixed so the curl can be pasted as it stands."""
    api = api_url(settings)
    query = 'OrderStatus="shipped"'
    if own_temporal:
        ui = f"http://localhost:{settings.temporal_ui_port}"
        ns = quote(settings.temporal_namespace)
        temporal = [
            f"  Temporal UI      {ui}",
            f"  shipped orders   {ui}/namespaces/{ns}/workflows?query={quote(query)}",
            f"  reconciliation   {ui}/namespaces/{ns}/schedules/{RECONCILE_SCHEDULE} "
            f"({settings.reconcile_cron} UTC)",
            f"  Temporal         {settings.temporal_address}, history kept in "
            f"{settings.data_dir / 'temporal.db'}",
        ]
    else:
        temporal = [
            f"  Temporal         {settings.temporal_address}, namespace "
            f"{settings.temporal_namespace}: find orders in its UI with {query}"
        ]
    metrics = [
        f"  API metrics      {api}/metrics",
        f"  latest report    {api}/reconciliation/reports/latest (operator key)",
    ]
    if settings.worker_metrics_address:
        metrics.append(f"  Worker metrics   http://{settings.worker_metrics_address}/metrics")
    if settings.smtp_host:
        mail = f"  Emails           sent through {settings.smtp_host}:{settings.smtp_port}"
    else:
        mail = f"  Emails           written to {settings.outbox_dir}/"
    body = shlex.quote(json.dumps(DEMO_ORDER, separators=(",", ":")))
    keys, key = key_lines(settings)
    auth = f'-H "Authorization: Bearer {key}"'
    return "\n".join(
        [
            "",
            "ordermill is running",
            f"  API docs         {api}/docs",
            f"  Console          {api}/console (operator key)",
            *temporal,
            *metrics,
            mail,
            *keys,
            *codec_lines(settings, own_temporal=own_temporal),
            "",
            "Place a demo order:",
            "",
            f"curl -sS -X POST {api}/orders {auth} -H 'Content-Type: application/json' -d {body}",
            "",
            f"then follow it with `curl -sS {auth} {api}/orders/<order_id>`, or run `make demo`.",
            "Ctrl-C stops everything.",
            "",
        ]
    )
