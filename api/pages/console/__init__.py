"""The operator console at /console: the review queue and its decisions, search, an order's
page, and the latest reconciliation report. Server-rendered; every form works without
JavaScript.

Signing in: an operator key posted to /console/sign-in sets the `ordermill_console` cookie
(api.auth.new_console_session: signed with the operator's own key, so it dies with the key),
HttpOnly, SameSite=Strict, scoped to /console, Secure over https, for 8 hours. Only the cookie
opens the console; an `Authorization` header opens nothing here. Without a valid session a page
answers 303 to the sign-in page. A client key is refused there with 403, an unknown key 401,
and neither sets a cookie.

Forms: each carries a CSRF token (api.pages.csrf) bound to the session cookie and to what the
form acts on (one hold of one order, or signing out), under a secret derived from the
operator's key: SameSite=Strict is the first line, the token the second. A post a browser
marks as coming from another site (`Sec-Fetch-Site`) is refused before either, the sign-in
form's included. A refused token answers 403 and changes nothing.

Everything shown or done goes through the API's own code: GET /orders's query
(api.routes.orders.find_orders), `load_order`, the hold decision's Update with its
Idempotency-Key and refusals (api.routes.holds.decide), the reconciliation's report.
"""

# Each part registers its pages on the one router (common.router) as it is imported.
from api.pages.console import orders, queue, sessions  # noqa: F401
from api.pages.console.common import ConsoleSession, open_session, router

__all__ = ["ConsoleSession", "open_session", "router"]
