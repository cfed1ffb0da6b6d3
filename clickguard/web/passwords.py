"""Password hashing for the dashboard's users: scrypt with a random salt, parameters in the string.

The string's format (``scrypt$n=16384,r=8,p=1$<salt>$<key>``) and `parse_hash`,
which the policy validates a hash with, live in `clickguard.passhash`; they are
imported here too, so the dashboard finds everything about passwords in one place.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata

from clickguard.passhash import (
    DEFAULT_PARAMS,
    KEY_BYTES,
    SALT_BYTES,
    PasswordHash,
    ScryptParams,
    format_hash,
    parse_hash,
)

__all__ = ["DEFAULT_PARAMS", "PasswordHash", "ScryptParams", "decoy", "hash_password", "parse_hash",
           "verify_password"]


def _derive(password: str, salt: bytes, params: ScryptParams, length: int) -> bytes:
    """scrypt of a password (NFC-normalised UTF-8, so input methods agree on one spelling)."""
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    n, r, p = params
    # OpenSSL needs 128*r*(n+p) bytes and some slack; the default limit (32 MiB) is too low for r>8.
    maxmem = 128 * r * (n + p + 2) + 2**20
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def hash_password(password: str, *, params: ScryptParams = DEFAULT_PARAMS) -> str:
    """A new hash of a password, with a random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    return format_hash(PasswordHash(params, salt, _derive(password, salt, params, KEY_BYTES)))


def verify_password(password: str, stored: PasswordHash) -> bool:
    """True when the password matches the hash (constant-time comparison of the derived keys)."""
    derived = _derive(password, stored.salt, stored.params, len(stored.key))
    return hmac.compare_digest(derived, stored.key)


def decoy(params: ScryptParams) -> PasswordHash:
    """A hash no password matches, checked for unknown users so they cost what known ones cost."""
    return PasswordHash(params, secrets.token_bytes(SALT_BYTES), secrets.token_bytes(KEY_BYTES))
