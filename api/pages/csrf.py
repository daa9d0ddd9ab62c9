"""CSRF tokens for the pages' forms: stateless, an HMAC over what the form acts on.

A token is `expires.mac`, bound to a purpose and a subject (an order for the tracking page's
return form, the operator's session for the console), so a token from one page is worthless
on another, and a page left open for a day must be reloaded.
"""

import hashlib
import hmac
import time
from datetime import timedelta

TOKEN_TTL = timedelta(hours=8)


def _mac(secret: str, purpose: str, subject: str, expires: int) -> str:
    message = f"csrf\n{purpose}\n{subject}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def new_token(secret: str, purpose: str, subject: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + TOKEN_TTL.total_seconds())
    return f"{expires}.{_mac(secret, purpose, subject, expires)}"


def token_valid(
    secret: str, purpose: str, subject: str, token: str | None, now: float | None = None
) -> bool:
    expires, _, mac = (token or "").partition(".")
    if not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(_mac(secret, purpose, subject, int(expires)), mac)
