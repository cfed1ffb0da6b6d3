"""Signed, expiring tokens (HMAC-SHA256) and the secret key they are signed with.

A token is ``base64url(JSON payload) "." base64url(HMAC-SHA256(key, payload)[:16])``.
The payload always carries ``exp`` (Unix time); `verify` refuses a token that
is malformed, tampered, truncated or expired with `TokenError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clickguard.errors import TokenError
from clickguard.files import private_dir

KEY_BYTES = 32
_MAC_BYTES = 16


def load_or_create_key(path: Path) -> bytes:
    """Read the signing key, creating it (mode 0600) at first run."""
    try:
        key = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        private_dir(path.parent)
        key = secrets.token_bytes(KEY_BYTES)
        # O_EXCL: two processes starting together must not each write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_key(path)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        return key
    except ValueError as e:
        raise TokenError(f"{path}: not a hex-encoded key") from e
    if len(key) < 16:
        raise TokenError(f"{path}: key shorter than 16 bytes")
    return key


def b64url_encode(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of `b64url_encode`; TokenError on anything else."""
    if "=" in text:
        raise TokenError("token is not valid base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise TokenError("token is not valid base64") from e


def _mac(key: bytes, body: bytes) -> bytes:
    """The truncated HMAC-SHA256 of a token body."""
    return hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(payload: Mapping[str, Any], key: bytes, *, expires: float) -> str:
    """A token carrying payload that verifies until Unix time `expires`."""
    body = json.dumps({**payload, "exp": int(expires)}, separators=(",", ":"),
                      sort_keys=True).encode()
    encoded = b64url_encode(body)
    return f"{encoded}.{b64url_encode(_mac(key, encoded.encode('ascii')))}"


def verify(token: str, key: bytes, *, now: float) -> dict[str, Any]:
    """The payload of a token that verifies; TokenError saying why otherwise."""
    encoded, dot, mac = token.partition(".")
    if not dot or not encoded or not mac:
        raise TokenError("token is truncated")
    try:
        expected = _mac(key, encoded.encode("ascii"))
    except UnicodeEncodeError as e:
        raise TokenError("token has characters that are not ours") from e
    # Compare the MAC as text: decoding first would accept other spellings of one token
    # (unused low bits, padding, stray characters).
    if not hmac.compare_digest(mac.encode("ascii", "replace"), b64url_encode(expected).encode("ascii")):
        raise TokenError("token signature does not verify")
    try:
        payload = json.loads(b64url_decode(encoded))
    except ValueError as e:
        raise TokenError("token payload is not JSON") from e
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
        raise TokenError("token payload is malformed")
    if payload["exp"] < now:
        raise TokenError("token has expired")
    return payload
