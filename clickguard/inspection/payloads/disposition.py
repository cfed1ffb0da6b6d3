"""The download's file name as a browser reads it (RFC 6266 and RFC 8187, tolerating what Chromium does)."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote, unquote_to_bytes

from clickguard.inspection.payloads.file_names import safe_name

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_ENCODED_WORD = re.compile(r"=\?([^?]+)\?([bBqQ])\?([^?]*)\?=")


def _parameters(text: str) -> list[tuple[str, str, bool]]:
    """Name, value and whether it was quoted, for each ``name=value`` between semicolons."""
    params: list[tuple[str, str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        end_of_name = i
        while end_of_name < n and text[end_of_name] not in "=;":
            end_of_name += 1
        name = text[i:end_of_name].strip().lower()
        if end_of_name >= n or text[end_of_name] == ";":  # a word without "=": skipped
            i = end_of_name + 1
            continue
        j = end_of_name + 1
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == '"':
            chars: list[str] = []
            j += 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(text[j])
                j += 1
            value, quoted = "".join(chars), True  # an unterminated quote runs to the end
            semicolon = text.find(";", j)
        else:
            semicolon = text.find(";", j)
            value, quoted = text[j : n if semicolon < 0 else semicolon].strip(), False
        params.append((name, value, quoted))
        i = n if semicolon < 0 else semicolon + 1
    return params


def _utf8_seen_as_latin1(text: str) -> str:
    """Text whose UTF-8 bytes were read one byte a character, put right; other text unchanged."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def _decode_encoded_word(charset: str, encoding: str, data: str) -> str | None:
    """One RFC 2047 encoded word, or None when it does not decode."""
    try:
        if encoding in "bB":
            raw = base64.b64decode(data, validate=True)
        else:
            raw = binascii.a2b_qp(data.replace("_", " ").encode("ascii"), header=True)
        return raw.decode(charset)
    except (binascii.Error, ValueError, LookupError):  # UnicodeError is a ValueError
        return None


def _decode_filename(value: str) -> str | None:
    """A ``filename=`` value as Chromium reads it: raw UTF-8, RFC 2047 words, or %-escaped UTF-8."""
    if not value.isascii():
        return _utf8_seen_as_latin1(value)
    words = [_ENCODED_WORD.fullmatch(word) for word in value.split()]
    if words and all(words):
        decoded = [_decode_encoded_word(*m.groups()) for m in words if m]
        return "".join(d for d in decoded if d is not None) if None not in decoded else None
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return None  # as Chromium: an escape that is not UTF-8 voids the parameter


def _decode_ext_value(value: str, quoted: bool) -> str | None:
    """A ``filename*=`` value (RFC 8187: charset'language'%-encoded), or None when invalid."""
    parts = value.split("'")
    if quoted or len(parts) != 3 or not parts[0] or not parts[2] or not parts[2].isascii():
        return None
    try:
        return unquote_to_bytes(parts[2]).decode(parts[0])
    except (LookupError, ValueError):
        return None


def filename_from(url_path: str, content_disposition: str | None) -> tuple[str | None, bool]:
    """The download's file name and whether it is an attachment (RFC 6266, else the URL's last segment)."""
    attachment = False
    name: str | None = None
    if content_disposition:
        header = content_disposition
        kind, _, rest = header.partition(";")
        kind = kind.strip()
        if kind and TOKEN.fullmatch(kind):  # else malformed: the whole header is parameters (inline)
            attachment = kind.lower() != "inline"  # unknown types count as attachment (RFC 6266 4.2)
            header = rest
        plain: str | None = None
        extended: str | None = None
        for key, value, quoted in _parameters(header):
            if key == "filename" and not plain:
                plain = _decode_filename(value)
            elif key == "filename*" and not extended:
                extended = _decode_ext_value(value, quoted)
        name = safe_name(extended) or safe_name(plain)
    if name is None:
        segment = url_path.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1].split(";", 1)[0]
        name = safe_name(unquote(segment, errors="replace").replace("/", "_"))
    return name, attachment
