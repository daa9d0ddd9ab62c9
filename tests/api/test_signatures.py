"""The carrier signature scheme on its own: no server needed."""

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.signatures import SignatureError, secrets_from_setting, sign, verify

NOW = 1_767_225_600
BODY = b'{"event_id":"evt_1"}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"whsec_a", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, "whsec_a", NOW) == f"t={NOW},v1={expected}"
    assert verify(f"t={NOW},v1={expected}", BODY, ["whsec_a"], now=NOW) == NOW


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_accepted_within_the_tolerance(skew: int) -> None:
    verify(sign(BODY, "s", NOW + skew), BODY, ["s"], now=NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_refused_outside_the_tolerance(skew: int) -> None:
    with pytest.raises(SignatureError, match="300 s"):
        verify(sign(BODY, "s", NOW + skew), BODY, ["s"], now=NOW)


def test_any_of_several_signatures_and_secrets_may_match() -> None:
    header = sign(BODY, ["new", "old"], NOW)
    verify(header, BODY, ["old"], now=NOW)
    verify(header, BODY, ["other", "new"], now=NOW)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(header, BODY, ["neither"], now=NOW)


def test_secrets_setting_holds_a_comma_separated_list() -> None:
    assert secrets_from_setting(" a, b ,,c") == ["a", "b", "c"]


@settings(database=None)
@given(header=st.text(max_size=300), body=st.binary(max_size=200))
def test_arbitrary_headers_are_refused_cleanly(header: str, body: bytes) -> None:
    with pytest.raises(SignatureError):
        verify(header, body, ["s"], now=NOW)


@settings(database=None)
@given(body=st.binary(max_size=500), secret=st.text(min_size=1, max_size=40))
def test_what_is_signed_verifies_and_any_other_body_does_not(body: bytes, secret: str) -> None:
    header = sign(body, secret, NOW)
    verify(header, body, [secret], now=NOW)
    with pytest.raises(SignatureError):
        verify(header, body + b" ", [secret], now=NOW)
