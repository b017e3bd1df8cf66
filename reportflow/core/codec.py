"""Payload encryption: every payload reportflow puts into Temporal is AES-GCM ciphertext.

`PAYLOAD_ENCRYPTION_KEYS` is a keyring, `key_id:base64-key,...`: the first key
encrypts, every key decrypts the payloads that name it in their metadata, so a
key can be rotated (put the new one first, keep the old one after it) without
breaking running or historical reports. Search attributes never pass through a
codec: only the opaque user ID travels there.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    PayloadCodec,
)
from temporalio.exceptions import ApplicationError

ENCODING = b"binary/encrypted"
REFUSED = b"binary/refused-unencrypted"
DECRYPTED = "reportflow-decrypted"
UNENCRYPTED_ERROR = "UnencryptedPayload"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class KeyringError(ValueError):
    """PAYLOAD_ENCRYPTION_KEYS is missing or malformed, or a payload names an unknown key."""


@dataclass(frozen=True)
class Keyring:
    """Keys by ID; `current` encrypts."""

    current: str
    keys: dict[str, bytes] = field(repr=False)  # never in a log line or traceback

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """`key_id:base64-key,...` (16, 24 or 32 byte keys); the first one encrypts."""
        keys: dict[str, bytes] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            if not sep or not KEY_ID_PATTERN.match(key_id):
                raise KeyringError(
                    f"PAYLOAD_ENCRYPTION_KEYS entry {key_id!r} is not `key_id:base64-key` "
                    "(key IDs: letters, digits, '_', '.', '-')"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise KeyringError(f"key {key_id!r} is not valid base64") from None
            if len(key) not in {16, 24, 32}:
                raise KeyringError(
                    f"key {key_id!r} is {len(key)} bytes; AES-GCM needs 16, 24 or 32 "
                    "(make one with `reportflow keygen`)"
                )
            if key_id in keys:
                raise KeyringError(f"key ID {key_id!r} appears twice")
            keys[key_id] = key
        if not keys:
            raise KeyringError(
                "PAYLOAD_ENCRYPTION_KEYS is empty; set it to `key_id:base64-key` "
                "(make one with `reportflow keygen`)"
            )
        return cls(current=next(iter(keys)), keys=keys)


def new_key_entry(key_id: str) -> str:
    """A fresh `key_id:base64-key` entry with a random 256-bit key."""
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-GCM over the whole serialized payload; the key ID rides in clear metadata."""

    def __init__(self, keyring: Keyring, *, mark_decrypted: bool = False) -> None:
        self.keyring = keyring
        self.mark_decrypted = mark_decrypted
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self.keyring.current
        cipher = self._ciphers[key_id]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            # The key ID is authenticated too: a payload cannot be relabelled.
            data = nonce + cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            encoded.append(
                Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=data)
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if not encrypted(payload):
                # Written in clear: before encryption was on, by the SDK itself (a
                # cancelled activity's details), or by someone without the keyring.
                decoded.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise KeyringError(
                    f"a payload was encrypted with key {key_id!r}, which is not in "
                    "PAYLOAD_ENCRYPTION_KEYS; keep retired keys after the current one"
                )
            nonce, ciphertext = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
            try:
                plain = cipher.decrypt(nonce, ciphertext, key_id.encode())
            except InvalidTag:
                raise KeyringError(
                    f"a payload under key {key_id!r} does not decrypt: wrong key bytes "
                    "for that ID, or the payload was altered"
                ) from None
            inner = Payload.FromString(plain)
            if self.mark_decrypted:
                inner.metadata[DECRYPTED] = b"1"
            decoded.append(inner)
        return decoded


def encrypted(payload: Payload) -> bool:
    """Whether `payload` was written by a holder of the keyring (any key)."""
    return payload.metadata.get("encoding") == ENCODING


def refused(payload: Payload) -> Payload:
    """The marker that stands in for a payload written in clear: converting it fails."""
    return Payload(metadata={"encoding": REFUSED, "was": payload.metadata.get("encoding", b"")})


class _RefusedConverter(EncodingPayloadConverter):
    """Reads the codec's marker for a payload written in clear: always an error
    that fails what carried it (never the workflow task); writes nothing."""

    @property
    def encoding(self) -> str:
        return REFUSED.decode()

    def to_payload(self, value: object) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> object:
        was = payload.metadata.get("was", b"").decode(errors="replace") or "none"
        raise ApplicationError(
            f"refused a payload that was not encrypted with PAYLOAD_ENCRYPTION_KEYS "
            f"(encoding {was!r}): start and signal reports through reportflow, or the "
            "`temporal` CLI with --codec-endpoint",
            type=UNENCRYPTED_ERROR,
            non_retryable=True,
        )


class ReportflowPayloadConverter(CompositePayloadConverter):
    """The SDK's default converters, and the reader of the refused-payload marker."""

    def __init__(self) -> None:
        super().__init__(
            *DefaultPayloadConverter.default_encoding_payload_converters, _RefusedConverter()
        )


def data_converter(keyring: Keyring, *, mark_decrypted: bool = False) -> DataConverter:
    """The default converter, with every payload encrypted and failure messages
    and stack traces moved into an encrypted payload too; `mark_decrypted` for a
    worker that refuses what was written in clear (reportflow.core.clear_payloads)."""
    return dataclasses.replace(
        DataConverter.default,
        payload_converter_class=ReportflowPayloadConverter,
        payload_codec=EncryptionCodec(keyring, mark_decrypted=mark_decrypted),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def readable_failure(converter: DataConverter, failure: Failure) -> Failure:
    """A copy of `failure` (and its causes) with message and stack trace decrypted."""
    copy = Failure()
    copy.CopyFrom(failure)
    current: Failure | None = copy
    while current is not None:
        if current.HasField("encoded_attributes"):
            [attributes] = await converter.decode([current.encoded_attributes])
            if isinstance(attributes, dict):
                current.message = str(attributes.get("message") or "")
                current.stack_trace = str(attributes.get("stack_trace") or "")
            current.ClearField("encoded_attributes")
        current = current.cause if current.HasField("cause") else None
    return copy
