"""The format of a dashboard user's password hash: scrypt, its parameters, salt and key in one string.

A hash reads ``scrypt$n=16384,r=8,p=1$<salt>$<key>`` (salt and derived key in
URL-safe base64 without padding, so the string needs no quoting in YAML). It is
made by `clickguard admin hash-password` and pasted into the policy under
``admin.users``. The format sits at the foundation so that the policy can
validate a hash without importing the dashboard's hashing (`web.passwords`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from clickguard.errors import TokenError
from clickguard.tokens import b64url_decode, b64url_encode

SCHEME = "scrypt"
SALT_BYTES = 16
KEY_BYTES = 32
# The weakest parameters a policy may carry (16 MiB of memory a check) and the strongest
# (a check must not take the proxy's memory or seconds of CPU; 128*n*r bytes of memory).
MIN_N = 2**14
MAX_MEMORY = 256 * 2**20
MAX_WORK = 2**24  # n * r * p

_FORMAT = re.compile(r"scrypt\$n=(\d{1,8}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)")
_FORMAT_HELP = (f"must be a password hash made by `clickguard admin hash-password` "
                f"({SCHEME}$n=16384,r=8,p=1$<salt>$<hash>)")


class ScryptParams(NamedTuple):
    """scrypt's cost parameters: CPU/memory cost n (a power of 2), block size r, parallelism p."""

    n: int
    r: int
    p: int


DEFAULT_PARAMS = ScryptParams(n=2**14, r=8, p=1)


class PasswordHash(NamedTuple):
    """A parsed password hash."""

    params: ScryptParams
    salt: bytes
    key: bytes


def parse_hash(text: str) -> PasswordHash:
    """A hash string as its parts; ValueError saying what is wrong (never echoing the text)."""
    # The text is not echoed: a password pasted here by mistake must not end up in a log.
    match = _FORMAT.fullmatch(text.strip())
    if match is None:
        raise ValueError(_FORMAT_HELP)
    n, r, p = int(match[1]), int(match[2]), int(match[3])
    try:
        salt, key = b64url_decode(match[4]), b64url_decode(match[5])
    except TokenError:
        raise ValueError(f"{_FORMAT_HELP}; its salt or hash is not valid base64") from None
    if n < MIN_N or n & (n - 1):
        raise ValueError(f"scrypt n must be a power of 2 of at least {MIN_N} (got n={n})")
    if not 1 <= r <= 64 or not 1 <= p <= 16:
        raise ValueError(f"scrypt r must be 1-64 and p 1-16 (got r={r}, p={p})")
    if 128 * n * r > MAX_MEMORY or n * r * p > MAX_WORK:
        raise ValueError(f"scrypt parameters n={n}, r={r}, p={p} cost too much for every login; "
                         f"use at most {MAX_MEMORY // 2**20} MiB (128*n*r bytes)")
    if len(salt) < SALT_BYTES or len(key) < KEY_BYTES or len(salt) > 64 or len(key) > 64:
        raise ValueError(f"salt must be {SALT_BYTES}-64 bytes and hash {KEY_BYTES}-64 bytes")
    return PasswordHash(ScryptParams(n, r, p), salt, key)


def format_hash(stored: PasswordHash) -> str:
    """A hash as the string `parse_hash` reads back."""
    n, r, p = stored.params
    return f"{SCHEME}$n={n},r={r},p={p}${b64url_encode(stored.salt)}${b64url_encode(stored.key)}"
