"""Password hashing for the dashboard's users: argon2id (argon2-cffi) for new hashes, scrypt still checked.

The strings' format and `parse_hash`, which the policy validates a hash with, live
in `clickguard.passhash`; they are imported here too, so the dashboard finds
everything about passwords in one place. Both schemes are checked the same way:
the key is derived again from the password with the stored salt and parameters
(argon2-cffi's `hash_secret_raw`, or `hashlib.scrypt`) and compared in constant
time, so an unknown user's `decoy` costs exactly what a known user's hash does.

A check's working memory (7-256 MiB) goes back to the system when the check ends:
see `_unmap_large_blocks`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import hmac
import platform
import secrets
import unicodedata

from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw

from clickguard.passhash import (
    DEFAULT_PARAMS,
    DEFAULT_SCRYPT_PARAMS,
    KEY_BYTES,
    SALT_BYTES,
    Argon2Params,
    HashParams,
    PasswordHash,
    ScryptParams,
    format_hash,
    is_outdated,
    parse_hash,
)

__all__ = ["DEFAULT_PARAMS", "DEFAULT_SCRYPT_PARAMS", "Argon2Params", "HashParams", "PasswordHash",
           "ScryptParams", "decoy", "hash_password", "is_outdated", "parse_hash", "verify_password"]


# glibc's mallopt(3) parameters, and the values set: blocks of 4 MiB and more are mmap'd (every
# hash's working memory is at least 7 MiB), and an arena keeps at most 8 MiB free at its top
# (twice the mmap threshold, as glibc's own adjustment would set it).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 4 * 2**20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


@functools.cache
def _unmap_large_blocks() -> bool:
    """Fix glibc's mmap threshold below a check's working memory, once a process; whether it was set.

    argon2 (and OpenSSL's scrypt) mallocs its working memory and frees it at the end of the check.
    glibc raises its mmap threshold to the size of the first such block freed (its dynamic
    threshold, up to 32 MiB), so later checks take the block from the checking thread's arena,
    which keeps it: each of the dashboard's password threads held 19 MiB for good (`make soak`:
    +32 MiB). A fixed threshold ends that adjustment: the block is mmap'd for each check and
    unmapped when it is freed. Process-wide, so the trim threshold is fixed with it at what
    glibc's adjustment would pair with it. Not glibc (musl, macOS): nothing to set, False.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the process's own symbols: glibc's mallopt
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _derive(password: str, salt: bytes, params: HashParams, length: int) -> bytes:
    """The key of a password (NFC-normalised UTF-8, so input methods agree on one spelling)."""
    _unmap_large_blocks()
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    if isinstance(params, Argon2Params):
        return hash_secret_raw(secret, salt, time_cost=params.time_cost, memory_cost=params.memory_kib,
                               parallelism=params.parallelism, hash_len=length, type=Type.ID,
                               version=ARGON2_VERSION)
    n, r, p = params
    # OpenSSL needs 128*r*(n+p) bytes and some slack; the default limit (32 MiB) is too low for r>8.
    maxmem = 128 * r * (n + p + 2) + 2**20
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def hash_password(password: str, *, params: HashParams = DEFAULT_PARAMS) -> str:
    """A new hash of a password, with a random salt (argon2id unless given scrypt parameters)."""
    salt = secrets.token_bytes(SALT_BYTES)
    return format_hash(PasswordHash(params, salt, _derive(password, salt, params, KEY_BYTES)))


def verify_password(password: str, stored: PasswordHash) -> bool:
    """True when the password matches the hash (constant-time comparison of the derived keys)."""
    derived = _derive(password, stored.salt, stored.params, len(stored.key))
    return hmac.compare_digest(derived, stored.key)


def decoy(like: PasswordHash) -> PasswordHash:
    """A hash no password matches, at another's cost: checked for unknown users so they cost the same."""
    return PasswordHash(like.params, secrets.token_bytes(len(like.salt)), secrets.token_bytes(len(like.key)))
