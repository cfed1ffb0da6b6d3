"""Signed tokens: round trip, every way a token can be refused, and the signing key file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clickguard.errors import TokenError
from clickguard.tokens import KEY_BYTES, load_or_create_key, sign, verify

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NOW = 1_700_000_000.0
EXPIRES = NOW + 600
B64_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
PAYLOAD: dict[str, Any] = {"u": "http://203.0.113.9/i", "c": "10.0.0.5", "usr": "ana", "codes": ["x.y"]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token() -> str:
    return sign(PAYLOAD, KEY, expires=EXPIRES)


def _signed_body(body: bytes) -> str:
    """A token correctly signed with KEY around an arbitrary body, as a forger with the key would."""
    encoded = _b64(body)
    return f"{encoded}.{_b64(hmac.new(KEY, encoded.encode(), hashlib.sha256).digest()[:16])}"


@pytest.mark.parametrize(
    ("payload", "now"),
    [
        (PAYLOAD, NOW),
        ({}, NOW),
        ({"u": "http://bücher.example/ä?q=<>&\"'", "n": None, "list": [1, 2.5, True]}, NOW),
        (PAYLOAD, EXPIRES),  # valid up to and including its expiry second
    ],
)
def test_round_trip(payload: dict[str, Any], now: float) -> None:
    token = sign(payload, KEY, expires=EXPIRES)
    assert "=" not in token and "+" not in token and "/" not in token  # URL-safe as it is
    assert verify(token, KEY, now=now) == {**payload, "exp": int(EXPIRES)}


def _tamper_payload(token: str) -> str:
    encoded, _, mac = token.partition(".")
    body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    forged = body.replace(b"203.0.113.9", b"203.0.113.8")
    return f"{_b64(forged)}.{mac}"


def _flip_first(part: int) -> Callable[[str], str]:
    def tamper(token: str) -> str:
        parts = token.split(".")
        parts[part] = ("B" if parts[part][0] == "A" else "A") + parts[part][1:]
        return ".".join(parts)
    return tamper


@pytest.mark.parametrize(
    ("make", "key", "now", "message"),
    [
        (_tamper_payload, KEY, NOW, "signature does not verify"),
        (_flip_first(0), KEY, NOW, "signature does not verify"),
        (_flip_first(1), KEY, NOW, "signature does not verify"),
        (lambda t: t.partition(".")[0], KEY, NOW, "truncated"),  # no dot
        (lambda t: t.partition(".")[0] + ".", KEY, NOW, "truncated"),  # empty mac
        (lambda t: "." + t.partition(".")[2], KEY, NOW, "truncated"),  # empty payload
        (lambda t: "", KEY, NOW, "truncated"),
        (lambda t: ".", KEY, NOW, "truncated"),
        (lambda t: t[:-4], KEY, NOW, "signature does not verify"),  # mac cut short
        (lambda t: t[:-5], KEY, NOW, "not valid base64|does not verify"),  # to a length base64 cannot have
        (lambda t: t, OTHER_KEY, NOW, "signature does not verify"),
        (lambda t: t, KEY, EXPIRES + 1, "expired"),
        # characters outside the alphabet: refused, as bad base64 or as a MAC that does not match
        (lambda t: t.partition(".")[0] + ".!!!!", KEY, NOW, "not valid base64|does not verify"),
        (lambda t: t.partition(".")[0] + ".#$%&", KEY, NOW, "not valid base64|does not verify"),
        (lambda t: t.partition(".")[0] + ".AAAAA", KEY, NOW, "not valid base64|does not verify"),
        (lambda t: "é" + t, KEY, NOW, "not ours"),
        (lambda t: _signed_body(b"not json"), KEY, NOW, "not JSON"),
        (lambda t: _signed_body(b"\xff\xfe"), KEY, NOW, "not JSON"),
        (lambda t: _signed_body(b"[1, 2]"), KEY, NOW, "malformed"),
        (lambda t: _signed_body(b'{"u": "x"}'), KEY, NOW, "malformed"),  # no exp
        (lambda t: _signed_body(b'{"exp": "9999999999"}'), KEY, NOW, "malformed"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_refused(make: Callable[[str], str], key: bytes, now: float, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        verify(make(_token()), key, now=now)


@pytest.mark.parametrize(
    "make",
    [
        # a 16-byte MAC is 22 base64 characters; the last one's four low bits carry nothing
        lambda t: t[:-1] + B64_ALPHABET[B64_ALPHABET.index(t[-1]) + 1],
        lambda t: t + "==",
    ],
)
def test_altered_token_spelling_refused(make: Callable[[str], str]) -> None:
    token = sign({"u": "x"}, KEY, expires=EXPIRES)
    altered = make(token)
    assert altered != token
    with pytest.raises(TokenError):
        verify(altered, KEY, now=NOW)


def test_key_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "certs" / "signing.key"
    key = load_or_create_key(path)
    assert len(key) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    created = path.read_text()
    assert load_or_create_key(path) == key
    assert path.read_text() == created


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not hex at all\n", "not a hex-encoded key"),
        ("abc\n", "not a hex-encoded key"),  # odd number of digits
        ("", "shorter than 16 bytes"),
        ("00ff\n", "shorter than 16 bytes"),
    ],
)
def test_corrupted_key_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "signing.key"
    path.write_text(content)
    with pytest.raises(TokenError, match=message):
        load_or_create_key(path)


def test_binary_garbage_key_file(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TokenError, match="not a hex-encoded key"):
        load_or_create_key(path)


def test_the_key_and_its_folder_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create_key(tmp_path / "certs" / "clickguard.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "certs").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "certs" / "clickguard.key").stat().st_mode) == 0o600
