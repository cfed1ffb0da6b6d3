"""The format of a dashboard user's password hash: argon2id (new) or scrypt (old), parameters in the string.

New hashes are argon2id in the PHC string format that argon2-cffi and libargon2
write and read::

    $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>

(memory in KiB, passes, lanes; salt and key in standard base64 without padding).
Hashes made before argon2id, ``scrypt$n=16384,r=8,p=1$<salt>$<key>`` (URL-safe
base64), still verify; `is_outdated` tells the dashboard to ask for a new hash
(argon2id at today's strength). Either string needs no quoting in YAML. A hash is
made by `clickguard admin hash-password` and pasted into the policy under
``admin.users``. The format sits at the foundation so that the policy can
validate a hash without importing the dashboard's hashing (`web.passwords`).

Both schemes have a floor (a weak hash is refused) and a ceiling (every login
costs the proxy the hash's memory and CPU, so a policy cannot make one take
gigabytes or seconds).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import NamedTuple

from clickguard.errors import TokenError
from clickguard.tokens import b64url_decode, b64url_encode

SCHEME = "argon2id"  # what new hashes use
SALT_BYTES = 16
KEY_BYTES = 32
_HELP = ("must be a password hash made by `clickguard admin hash-password` "
         "($argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>, or an older scrypt$n=16384,r=8,p=1$<salt>$<hash>)")


class Argon2Params(NamedTuple):
    """argon2id's cost: memory in KiB, passes over it, lanes (threads)."""

    memory_kib: int
    time_cost: int
    parallelism: int


class ScryptParams(NamedTuple):
    """scrypt's cost parameters: CPU/memory cost n (a power of 2), block size r, parallelism p."""

    n: int
    r: int
    p: int


# OWASP's argon2id setting (19 MiB, 2 passes, 1 lane): about what scrypt n=2**14 cost, ~0.1 s a check.
DEFAULT_PARAMS = Argon2Params(memory_kib=19456, time_cost=2, parallelism=1)
DEFAULT_SCRYPT_PARAMS = ScryptParams(n=2**14, r=8, p=1)  # what hashes made before argon2id carry

# argon2id floor: OWASP's weakest equivalent setting (7 MiB x 5 passes); ceiling: 256 MiB, and
# memory x passes at most 512 MiB (over a second of CPU a login on a small machine).
ARGON2_MIN_MEMORY_KIB = 7168
ARGON2_MIN_WORK = 7168 * 5  # memory_kib * time_cost
ARGON2_MAX_MEMORY_KIB = 256 * 1024
ARGON2_MAX_WORK = 512 * 1024
# scrypt floor (16 MiB a check) and ceiling (128*n*r bytes of memory; n*r*p of work).
MIN_N = 2**14
MAX_MEMORY = 256 * 2**20
MAX_WORK = 2**24

type HashParams = Argon2Params | ScryptParams


class PasswordHash(NamedTuple):
    """A parsed password hash; the scheme follows from the type of its parameters."""

    params: HashParams
    salt: bytes
    key: bytes

    @property
    def scheme(self) -> str:
        """'argon2id' or 'scrypt'."""
        return SCHEME if isinstance(self.params, Argon2Params) else "scrypt"


_ARGON2 = re.compile(r"\$argon2id\$v=(\d{1,3})\$m=(\d{1,10}),t=(\d{1,4}),p=(\d{1,3})"
                     r"\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)")
_SCRYPT = re.compile(r"scrypt\$n=(\d{1,8}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)")


def parse_hash(text: str) -> PasswordHash:
    """A hash string as its parts; ValueError saying what is wrong (never echoing the text)."""
    # The text is not echoed: a password pasted here by mistake must not end up in a log.
    text = text.strip()
    if text.startswith("$argon2"):
        stored = _parse_argon2(text)
    elif text.startswith("scrypt$"):
        stored = _parse_scrypt(text)
    else:
        raise ValueError(_HELP)
    if not SALT_BYTES <= len(stored.salt) <= 64 or not KEY_BYTES <= len(stored.key) <= 64:
        raise ValueError(f"salt must be {SALT_BYTES}-64 bytes and hash {KEY_BYTES}-64 bytes")
    return stored


def _parse_argon2(text: str) -> PasswordHash:
    """An argon2id PHC string (version 19 only: the one libargon2 writes since 2016)."""
    match = _ARGON2.fullmatch(text)
    if match is None:
        raise ValueError(_HELP)
    version, m, t, p = (int(match[i]) for i in range(1, 5))
    try:
        salt, key = _b64_decode(match[5]), _b64_decode(match[6])
    except ValueError:
        raise ValueError(f"{_HELP}; its salt or hash is not valid base64") from None
    if version != 19:
        raise ValueError(f"argon2id version must be 19 (got v={version})")
    if not 1 <= p <= 16 or not 1 <= t <= 64:
        raise ValueError(f"argon2id t must be 1-64 and p 1-16 (got t={t}, p={p})")
    if m < ARGON2_MIN_MEMORY_KIB or m * t < ARGON2_MIN_WORK:
        raise ValueError(f"argon2id parameters m={m}, t={t} are too weak; use at least "
                         f"m={ARGON2_MIN_MEMORY_KIB} (KiB) and m*t of {ARGON2_MIN_WORK}")
    if m > ARGON2_MAX_MEMORY_KIB or m * t > ARGON2_MAX_WORK:
        raise ValueError(f"argon2id parameters m={m}, t={t} cost too much for every login; use at most "
                         f"{ARGON2_MAX_MEMORY_KIB // 1024} MiB and m*t of {ARGON2_MAX_WORK}")
    return PasswordHash(Argon2Params(m, t, p), salt, key)


def _parse_scrypt(text: str) -> PasswordHash:
    """A scrypt hash as clickguard wrote them before argon2id."""
    match = _SCRYPT.fullmatch(text)
    if match is None:
        raise ValueError(_HELP)
    n, r, p = int(match[1]), int(match[2]), int(match[3])
    try:
        salt, key = b64url_decode(match[4]), b64url_decode(match[5])
    except TokenError:
        raise ValueError(f"{_HELP}; its salt or hash is not valid base64") from None
    if n < MIN_N or n & (n - 1):
        raise ValueError(f"scrypt n must be a power of 2 of at least {MIN_N} (got n={n})")
    if not 1 <= r <= 64 or not 1 <= p <= 16:
        raise ValueError(f"scrypt r must be 1-64 and p 1-16 (got r={r}, p={p})")
    if 128 * n * r > MAX_MEMORY or n * r * p > MAX_WORK:
        raise ValueError(f"scrypt parameters n={n}, r={r}, p={p} cost too much for every login; "
                         f"use at most {MAX_MEMORY // 2**20} MiB (128*n*r bytes)")
    return PasswordHash(ScryptParams(n, r, p), salt, key)


def _b64_decode(text: str) -> bytes:
    """Standard base64 without padding, as PHC strings carry it; ValueError when it is not."""
    if len(text) % 4 == 1:
        raise ValueError("not base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def format_hash(stored: PasswordHash) -> str:
    """A hash as the string `parse_hash` reads back."""
    params = stored.params
    if isinstance(params, Argon2Params):
        salt, key = (base64.b64encode(b).decode().rstrip("=") for b in (stored.salt, stored.key))
        m, t, p = params
        return f"${SCHEME}$v=19$m={m},t={t},p={p}${salt}${key}"
    n, r, p = params
    return f"scrypt$n={n},r={r},p={p}${b64url_encode(stored.salt)}${b64url_encode(stored.key)}"


def is_outdated(stored: PasswordHash) -> bool:
    """Whether a hash should be made again: scrypt, or argon2id with less memory x passes than today's."""
    params = stored.params
    if not isinstance(params, Argon2Params):
        return True
    return params.memory_kib * params.time_cost < DEFAULT_PARAMS.memory_kib * DEFAULT_PARAMS.time_cost
