"""`make demo`: customers and a carrier, played against a running `make run`.

Places a handful of orders through the HTTP API (a paperback, an express order, an e-book, a
declined card, a cancellation, a card gateway that fails twice before it approves, an order in
two parcels from two warehouses, a parcel that comes back, a book returned for a refund, a
first edition an operator reviews and releases, a new customer's order the operator rejects, a
book on backorder until its stock arrives), then plays the carrier and the operator. Once a
parcel is with the carrier it posts signed tracking webhooks a few seconds apart, as EasyPost
would, and likewise for the return parcel; the operator decides the reviews and receives the
backordered stock over the API. One status line per order shows where each one is; the same
orders are in the Temporal UI (search `OrderStatus="shipped"` or `OrderHolds="risk_review"`).

Only HTTP: API_URL (default: this machine's API_HOST/API_PORT), a client API key from
ORDERMILL_API_KEY (default: the development client key, omk_dev_client), an operator key from
ORDERMILL_OPERATOR_KEY (default: the development operator key) and the carrier's
webhook secrets from CARRIER_WEBHOOK_SECRETS / CARRIER_WEBHOOK_SECRET (the development default
when unset). The carrier's webhooks carry only their signature, never an API key.

This file is the entry point; the scenarios and what plays them are in scripts/player/.
"""

import argparse
import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # settings.py and friends live at the repository root

import httpx  # noqa: E402

from activities.tracking_links import TrackingLinks  # noqa: E402
from api.signatures import secrets_from_setting  # noqa: E402
from player.board import Board  # noqa: E402
from player.orders import Demo  # noqa: E402
from player.parties import Carrier, Operator, problem  # noqa: E402
from player.scenarios import SCENARIOS  # noqa: E402
from runner.urls import api_url  # noqa: E402
from settings import DEV_API_KEY_ENTRIES, Settings  # noqa: E402

# The development keys `make run` prints; ORDERMILL_API_KEY / ORDERMILL_OPERATOR_KEY replace them.
DEV_CLIENT_KEY = next(e.key for e in DEV_API_KEY_ENTRIES if e.role == "client")
DEV_OPERATOR_KEY = next(e.key for e in DEV_API_KEY_ENTRIES if e.role == "operator")


async def main_async(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        secrets = secrets_from_setting(settings.webhook_secret)
    except RuntimeError as err:  # production without a secret
        print(f"demo: {err}", file=sys.stderr)
        return 1
    auth = {"Authorization": f"Bearer {args.api_key}"}
    operator_auth = {"Authorization": f"Bearer {args.operator_key}"}
    async with (
        httpx.AsyncClient(base_url=args.api_url, timeout=30.0, headers=auth) as http,
        httpx.AsyncClient(base_url=args.api_url, timeout=30.0, headers=operator_auth) as operator,
        httpx.AsyncClient(base_url=args.api_url, timeout=10.0) as carrier,
    ):
        try:
            (await http.get("/healthz")).raise_for_status()
        except httpx.HTTPError as err:
            print(
                f"demo: no ordermill API answers at {args.api_url} ({err}).\n"
                "Start everything with `make run` first, or point API_URL at the API.",
                file=sys.stderr,
            )
            return 1
        checked = await http.get("/orders", params={"limit": 1})
        if checked.status_code in (401, 403):
            print(
                f"demo: the API refused the key: {problem(checked)}\n"
                "Set ORDERMILL_API_KEY to a client key from the API's API_KEYS.",
                file=sys.stderr,
            )
            return 1
        print(
            f"Placing {len(SCENARIOS)} orders at {args.api_url}; the carrier reports every "
            f"{args.step:g}s once an order has shipped.\n",
            flush=True,
        )
        board = Board([s.label for s in SCENARIOS], live=sys.stdout.isatty())
        if board.live:
            board.redraw()
        demo = Demo(http, Operator(operator), Carrier(carrier, secrets), args.step, board)
        results = await asyncio.gather(
            *(demo.play(n, s, args.timeout) for n, s in enumerate(SCENARIOS, 1))
        )
    failed = [s.label for s, ok in zip(SCENARIOS, results, strict=True) if not ok]
    print()
    if failed:
        print(f"demo: {len(failed)} order(s) did not end as expected: {', '.join(failed)}")
        return 1
    print(
        "Every order ended as expected. Find them in the Temporal UI, e.g. with the query "
        'OrderStatus="delivered" or CustomerId="cus_ada"; emails are in the outbox (or Mailpit).'
    )
    if 1 in demo.placed:
        order_id, placed_at = demo.placed[1]
        links = TrackingLinks(args.api_url, settings.tracking_secret, settings.tracking_link_ttl)
        print(f"Follow the first as its customer does: {links.url(order_id, placed_at)}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--api-url",
        default=os.environ.get("API_URL") or api_url(Settings()),
        help="where the API answers (API_URL; default from API_HOST/API_PORT)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("ORDERMILL_API_KEY") or DEV_CLIENT_KEY,
        help=f"a client API key (ORDERMILL_API_KEY; default {DEV_CLIENT_KEY})",
    )
    parser.add_argument(
        "--operator-key",
        default=os.environ.get("ORDERMILL_OPERATOR_KEY") or DEV_OPERATOR_KEY,
        help="an operator API key, for the reviews and stock receipts (ORDERMILL_OPERATOR_KEY)",
    )
    parser.add_argument(
        "--step", type=float, default=3.0, help="seconds between a parcel's tracking events"
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds each order may take in all"
    )
    args = parser.parse_args()
    try:
        sys.exit(asyncio.run(main_async(args)))
    except KeyboardInterrupt:
        print("\ndemo: interrupted; the orders carry on in Temporal", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
