"""Undoing what obfuscators do to a URL or to code: the decoders, string tricks and the packer.

Each function takes values already known (`Val`) and gives the value a browser would
compute: `atob`, `unescape`, `decodeURIComponent`, `String.fromCharCode` and their
encoding counterparts; `split/reverse/join`, `replace`, `slice` and the other string and
array methods; and the code Dean Edwards' packer rebuilds before handing it to `eval`.
A value built this way is marked obfuscated when the decoding hid something.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import quote, unquote

from clickguard.inspection.navigation.script_values import FRAGMENT, NUMBER, PH, Val, unknown

# The global functions that decode (or encode) a string, read by `decode_call`.
DECODERS = frozenset({"atob", "unescape", "decodeURIComponent", "decodeURI", "encodeURIComponent",
                      "encodeURI", "escape"})


_PERCENT_UNESCAPE = re.compile(r"%(?:u([0-9a-fA-F]{4})|([0-9a-fA-F]{2}))")


def _hides_alnum(encoded: str, decoded: str) -> bool:
    """Whether percent-decoding revealed letters or digits (an encoding of what needs none)."""
    def alnum(text: str) -> int:
        return sum(c.isascii() and c.isalnum() for c in text)

    # every "%XX" contributes two hex digits to the encoded count, decoded or not
    return alnum(decoded) > alnum(encoded) - 2 * encoded.count("%")


def decode_call(name: str, args: list[Val]) -> Val:
    """A decoding (or encoding) global applied to known arguments."""
    first = args[0] if args else Val("undefined")
    text = first.text
    if name == "atob":
        if PH in text:
            return Val(PH, True)
        compact = "".join(text.split())
        try:
            data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        except (binascii.Error, ValueError):
            return Val(PH, True)
        return Val(data.decode("latin-1"), True)
    if name == "fromCharCode":
        if not args or any(PH in a.text for a in args):
            return Val(PH, True)
        try:
            return Val("".join(chr(int(float(a.text)) & 0xFFFF) for a in args), True)
        except ValueError:
            return Val(PH, True)
    if name == "unescape":
        decoded = _PERCENT_UNESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), text)
        return Val(decoded, first.obfuscated or _hides_alnum(text, decoded))
    if name in ("decodeURIComponent", "decodeURI"):
        try:
            decoded = unquote(text, errors="strict")
        except UnicodeDecodeError:
            return unknown(first)
        return Val(decoded, first.obfuscated or _hides_alnum(text, decoded))
    if PH in text:
        return unknown(first)
    safe = "-_.!~*'()" if name == "encodeURIComponent" else "-_.!~*'();/?:@&=+$,#" \
        if name == "encodeURI" else "@*_+-./"
    return Val(quote(text, safe=safe, errors="surrogatepass"), first.obfuscated)


def string_method(value: Val, name: str, args: list[Val]) -> Val:
    """value.name(*args) for the string and array methods obfuscators use."""
    obfuscated = value.obfuscated or any(a.obfuscated for a in args)
    if any(PH in a.text or FRAGMENT in a.text for a in args):
        return Val(PH, obfuscated)
    if value.items is not None:
        if name == "join":
            return Val((args[0].text if args else ",").join(value.items), obfuscated)
        if name == "reverse":
            return Val(PH, True, tuple(reversed(value.items)))
        if name == "concat":
            return Val(PH, obfuscated, value.items + tuple(a.text for a in args))
        return Val(PH, obfuscated)
    text = value.text
    if PH in text or FRAGMENT in text:
        return Val(PH, obfuscated)
    numbers = [int(float(a.text)) if NUMBER.fullmatch(a.text) else None for a in args]
    if name == "split" and args:
        separator = args[0].text
        return Val(PH, obfuscated, tuple(text) if separator == "" else tuple(text.split(separator)))
    if name == "concat":
        return Val(text + "".join(a.text for a in args), obfuscated)
    if name in ("replace", "replaceAll") and len(args) == 2:
        return Val(text.replace(args[0].text, args[1].text, 1 if name == "replace" else -1), obfuscated)
    if name in ("toString", "valueOf", "trim", "toLowerCase", "toUpperCase"):
        return Val(text.strip() if name == "trim" else text.lower() if name == "toLowerCase"
                   else text.upper() if name == "toUpperCase" else text, obfuscated)
    if name in ("slice", "substring", "substr") and args and None not in numbers:
        begin = numbers[0] or 0
        if name == "substr":
            stop = begin + numbers[1] if len(numbers) > 1 and numbers[1] is not None else None
            if begin < 0:
                begin = max(len(text) + begin, 0)
                stop = begin + numbers[1] if len(numbers) > 1 and numbers[1] is not None else None
            return Val(text[begin:stop], obfuscated)
        stop = numbers[1] if len(numbers) > 1 else None
        if name == "substring":
            begin = max(begin, 0)
            stop = None if stop is None else max(stop, 0)
            if stop is not None and stop < begin:
                begin, stop = stop, begin
        return Val(text[begin:stop], obfuscated)
    if name == "charAt" and numbers and numbers[0] is not None:
        return Val(text[numbers[0]:numbers[0] + 1], obfuscated)
    return Val(PH, obfuscated)


_PACKER_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def unpack(args: list[Val]) -> Val:
    """The code Dean Edwards' packer rebuilds from the arguments of its function(p,a,c,k,e,d)."""
    if len(args) < 4 or PH in args[0].text or args[3].items is None:
        return Val(PH, True)
    try:
        radix = int(args[1].text)
    except ValueError:
        return Val(PH, True)
    words = args[3].items
    if not 2 <= radix <= 62:
        return Val(PH, True)

    def word(match: re.Match[str]) -> str:
        number = 0
        for char in match.group():
            at = _PACKER_DIGITS.find(char)
            if not 0 <= at < radix:
                return match.group()
            number = number * radix + at
        return words[number] if number < len(words) and words[number] else match.group()

    return Val(re.sub(r"\b\w+\b", word, args[0].text), True)
