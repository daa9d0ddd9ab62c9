"""Carrier webhook signatures, the way Stripe signs its webhooks.

Header: `X-Carrier-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
A carrier rotating its secret sends one `v1=` per secret it signs with; we accept the request
when any of them matches any of our secrets. CARRIER_WEBHOOK_SECRETS (or the older name
CARRIER_WEBHOOK_SECRET; both are read) may therefore hold several secrets separated by commas,
all active: old and new during a rotation.

The timestamp is signed too, so a captured request cannot be replayed once it is older than the
tolerance; requests from too far in the future are refused the same way.
"""

import hashlib
import hmac
import re
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Carrier-Signature"
TOLERANCE_SECONDS = 300
_MAX_SIGNATURES = 8
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


class SignatureError(Exception):
    """Why a webhook's signature was refused (safe to show to the sender)."""


def secrets_from_setting(value: str) -> list[str]:
    return [secret.strip() for secret in value.split(",") if secret.strip()]


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: Sequence[str] | str, timestamp: int | None = None) -> str:
    """The header value a carrier would send for `body` (used by tests and the demo)."""
    if isinstance(secrets, str):
        secrets = [secrets]
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}", *(f"v1={compute_signature(s, t, body)}" for s in secrets)])


def verify(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:
    """Check the header against the raw body; returns its timestamp or raises SignatureError."""
    if not header:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and _HEX_SHA256.fullmatch(value) and len(candidates) < _MAX_SIGNATURES:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is malformed")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"the signature timestamp is more than {tolerance} s away from now")
    # Compare against every candidate, without stopping at the first match.
    matched = False
    for secret in secrets:
        expected = compute_signature(secret, timestamp, body).encode()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("no signature matches the body")
    return timestamp
