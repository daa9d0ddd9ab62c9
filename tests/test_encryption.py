"""The payload codec: what it seals cannot be read without the key, and keys can rotate."""

import base64
import dataclasses
import os

import pytest
from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from encryption import ENCODING, EncryptionCodec, codec_from_settings, data_converter, parse_key
from models.orders import Address


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def test_sealed_payload_hides_pii_and_opens_again() -> None:
    codec = codec_from_settings("k1", new_key(), None)
    assert codec is not None
    converter = data_converter(codec)
    address = Address(
        name="Ada Lovelace", line1="12 Analytical Way", city="X", postal_code="1", country="US"
    )
    sealed = await converter.encode([address])
    assert sealed[0].metadata["encoding"] == ENCODING
    assert b"Lovelace" not in sealed[0].SerializeToString()
    [opened] = await converter.decode(sealed, [Address])
    assert opened == address


async def test_rotated_key_still_opens_old_payloads() -> None:
    old, new = new_key(), new_key()
    before = EncryptionCodec("k1", parse_key(old))
    sealed = await before.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    after = codec_from_settings("k2", new, f"k1:{old}")
    assert after is not None
    [opened] = await after.decode(sealed)
    assert opened.data == b'"x"'
    resealed = await after.encode([opened])
    assert resealed[0].metadata["encryption-key-id"] == b"k2"


async def test_unknown_key_and_tampering_are_refused() -> None:
    codec = EncryptionCodec("k1", parse_key(new_key()))
    [sealed] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    stranger = EncryptionCodec("k9", parse_key(new_key()))
    with pytest.raises(ValueError, match="unknown encryption key 'k1'"):
        await stranger.decode([sealed])
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(InvalidTag):
        await codec.decode([tampered])


async def test_plain_payloads_written_before_encryption_pass_through() -> None:
    codec = EncryptionCodec("k1", parse_key(new_key()))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a":1}')
    assert await codec.decode([plain]) == [plain]


def test_bad_keys_are_named() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        parse_key(base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="base64"):
        parse_key("not base64!!")
    assert codec_from_settings("k1", None, None) is None


def test_failure_messages_are_sealed_with_the_payloads() -> None:
    codec = codec_from_settings("k1", new_key(), None)
    converter = data_converter(codec)
    assert isinstance(converter.failure_converter, DefaultFailureConverterWithEncodedAttributes)
    assert not isinstance(
        data_converter(None).failure_converter, DefaultFailureConverterWithEncodedAttributes
    )


async def test_every_converter_the_worker_builds_shares_one_payload_converter() -> None:
    # The worker rebuilds its data converter per activation (dataclasses.replace, as the SDK
    # does); each rebuild must reuse the one Pydantic converter, not construct another.
    for codec in (None, codec_from_settings("k1", new_key(), None)):
        converter = data_converter(codec)
        rebuilt = dataclasses.replace(converter)
        assert rebuilt.payload_converter is not converter.payload_converter  # SDK's wrapper
        assert _inner(rebuilt) is _inner(converter) is _inner(data_converter(None))
        address = Address(name="Ada", line1="1 Way", city="X", postal_code="1", country="US")
        assert await rebuilt.decode(await converter.encode([address]), [Address]) == [address]


def _inner(converter: DataConverter) -> object:
    return getattr(converter.payload_converter, "_inner_payload_converter", None)
