"""Encrypting every Temporal payload ordermill writes, so order histories hold no plain PII.

A `PayloadCodec` seals each payload with AES-256-GCM under the current key and tags it with
the key's id; older keys stay listed to read what they sealed, so keys can rotate without
breaking running orders. Payloads written before encryption was turned on pass through.
Search attributes are not payloads: they stay plain and hold only status and customer id.
`data_converter` is how every client and worker of ordermill turns payloads into models: with
Pydantic, sealed by the codec when there is one.
"""

import base64
import binascii
import os
from collections.abc import Sequence
from typing import ClassVar, Self

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12


def parse_key(value: str) -> bytes:
    """A key is 32 random bytes, base64-encoded (`openssl rand -base64 32`)."""
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("encryption key must be base64") from err
    if len(key) != 32:
        raise ValueError(f"encryption key must be 32 bytes, got {len(key)}")
    return key


class EncryptionCodec(PayloadCodec):
    def __init__(self, key_id: str, key: bytes, old_keys: dict[str, bytes] | None = None) -> None:
        self._key_id = key_id
        self._current = AESGCM(key)
        self._keys = {kid: AESGCM(k) for kid, k in (old_keys or {}).items()}
        self._keys[key_id] = self._current

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(p) for p in payloads]

    def _seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self._key_id.encode()},
            data=nonce + sealed,
        )

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was on
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode()
        cipher = self._keys.get(key_id)
        if cipher is None:
            raise ValueError(f"payload sealed with unknown encryption key {key_id!r}")
        data = payload.data
        opened = Payload()
        opened.ParseFromString(cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None))
        return opened


def codec_from_settings(
    key_id: str, key: str | None, old_keys: str | None
) -> EncryptionCodec | None:
    """`old_keys` is `id:base64key,id:base64key` for keys that only decrypt."""
    if not key:
        return None
    previous: dict[str, bytes] = {}
    for entry in filter(None, (part.strip() for part in (old_keys or "").split(","))):
        kid, _, value = entry.partition(":")
        previous[kid] = parse_key(value)
    return EncryptionCodec(key_id, parse_key(key), previous)


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """Pydantic's payload converter, one instance per process.

    The worker builds a data converter for every workflow activation and every activity
    context, and each build calls its payload converter class: a fresh Pydantic converter
    each time rebuilds its serializer and starts its type-adapter cache empty. It holds no
    per-call state, so one instance serves them all.
    """

    _instance: ClassVar[Self | None] = None

    def __new__(cls) -> Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
            PydanticPayloadConverter.__init__(cls._instance)
        return cls._instance

    def __init__(self) -> None:
        pass  # built once, in __new__


def data_converter(codec: PayloadCodec | None) -> DataConverter:
    """Pydantic payloads, sealed by `codec` when there is one.

    With a codec, failure messages and stack traces are sealed too: a rejection can quote an
    address or an email.
    """
    if codec is None:
        return DataConverter(payload_converter_class=SharedPydanticPayloadConverter)
    return DataConverter(
        payload_converter_class=SharedPydanticPayloadConverter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
