"""A response body as the browser will get it: Content-Encoding undone incrementally, within caps.

The server picks the framing and the encoding, so decoding is where a hostile
server attacks first: a decompression bomb (a few hundred KiB of gzip that
expand to gigabytes), an encoding the inspector does not undo (the payload is
sniffed while still compressed), or a stack of them. `BodyDecoder` undoes every
coding browsers accept, in the order the header lists them reversed:

``gzip`` / ``x-gzip``
    zlib with a gzip wrapper; concatenated members are read on, as zlib's own
    tools and browsers do.
``deflate``
    zlib-wrapped as RFC 9110 says, or raw DEFLATE as old servers send it; told
    apart by the zlib header's check bits, as browsers do.
``br``
    Brotli (`brotli.Decompressor` with its output limit).
``zstd``
    Zstandard (`backports.zstd`, what mitmproxy itself uses), frames read on.
``identity``
    nothing to undo.

Bytes come in as the network delivers them (`feed`), decoded bytes come out, and
no stage ever produces more than it is asked for: every decompressor is driven
with an output limit, so memory stays within the caps whatever the ratio. Two
caps, `max_decoded` (bytes of decoded body kept) and `max_ratio` (decoded bytes
per encoded byte, checked once a little output exists), end decoding early;
then `truncated` says which ("decoded cap", "ratio cap"). A body that stops
decoding (a coding not known, corrupt data) keeps what decoded before and
says "undecodable". Either way the caller judges what was seen and records why
it saw no more. Nothing here raises on hostile input.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli  # type: ignore[import-untyped]
from backports import zstd

# Decoded bytes each stage hands on per step: small enough that a stack of stages holds little.
_STEP = 64 * 1024
# The ratio cap applies once this much was decoded: tiny bodies compress far better than any ratio.
_RATIO_FLOOR = 256 * 1024
DEFAULT_MAX_RATIO = 200  # HTML and scripts compress 5–20x; bombs go to 1000x and beyond
# gzip members or zstd frames one body may hold: servers send one or a few; each costs a decoder and
# a copy of what follows it, so thousands of empty ones would cost the reader, not the server.
MAX_MEMBERS = 256

KNOWN_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd", "identity"})


def content_codings(header: str | None) -> list[str]:
    """The codings a Content-Encoding header lists, in the order they were applied (lower case)."""
    if not header:
        return []
    return [c for c in (part.strip().lower() for part in header.split(",")) if c and c != "identity"]


class _Stage(Protocol):
    """One decoding step: encoded bytes pushed in, at most n decoded bytes pulled out at a time."""

    def push(self, data: bytes) -> None: ...

    def pull(self, n: int) -> bytes: ...


def _next_member(count: int) -> int:
    """The count of members (or frames) once one more starts; ValueError past MAX_MEMBERS (undecodable)."""
    if count >= MAX_MEMBERS:
        raise ValueError(f"more than {MAX_MEMBERS} members")
    return count + 1


class _Zlib:
    """gzip (multi-member) or deflate (zlib-wrapped or raw, told by the first two bytes)."""

    def __init__(self, coding: str) -> None:
        self.gzip = coding in ("gzip", "x-gzip")
        self.pending = b""
        self.decoder: zlib._Decompress | None = zlib.decompressobj(31) if self.gzip else None
        self.members = 1

    def push(self, data: bytes) -> None:
        self.pending += data

    def _start_deflate(self) -> bool:
        if len(self.pending) < 2:
            return False
        cmf, flg = self.pending[0], self.pending[1]
        wrapped = cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0
        self.decoder = zlib.decompressobj(15 if wrapped else -15)
        return True

    def pull(self, n: int) -> bytes:
        if self.decoder is None and not self._start_deflate():
            return b""
        assert self.decoder is not None
        while True:
            if self.decoder.eof:
                rest = self.decoder.unused_data + self.pending
                if not (self.gzip and rest.lstrip(b"\0")):
                    self.pending = b""
                    return b""  # trailing garbage or padding after the stream, as browsers ignore it
                self.members = _next_member(self.members)
                self.decoder, self.pending = zlib.decompressobj(31), rest.lstrip(b"\0")  # the next member
            out = self.decoder.decompress(self.pending, n)
            self.pending = self.decoder.unconsumed_tail
            # An empty member read on into the next: b"" would say "no more", and hide what follows.
            if out or not self.decoder.eof:
                return out


class _Brotli:
    """Brotli, with the decoder's own output limit."""

    def __init__(self) -> None:
        self.decoder = brotli.Decompressor()
        self.pending = b""

    def push(self, data: bytes) -> None:
        self.pending += data

    def pull(self, n: int) -> bytes:
        if self.decoder.is_finished():
            self.pending = b""
            return b""
        if self.decoder.can_accept_more_data():
            data, self.pending = self.pending, b""
            if not data:
                return b""
            return bytes(self.decoder.process(data, output_buffer_limit=n))
        return bytes(self.decoder.process(b"", output_buffer_limit=n))


class _Zstd:
    """Zstandard, frames read on one after another."""

    def __init__(self) -> None:
        self.decoder = zstd.ZstdDecompressor()
        self.pending = b""
        self.members = 1

    def push(self, data: bytes) -> None:
        self.pending += data

    def pull(self, n: int) -> bytes:
        while True:
            if self.decoder.eof:
                rest = self.decoder.unused_data + self.pending
                if not rest:
                    return b""
                self.members = _next_member(self.members)
                self.decoder, self.pending = zstd.ZstdDecompressor(), rest
            if self.decoder.needs_input:
                data, self.pending = self.pending, b""
                if not data:
                    return b""
            else:
                data = b""
            out = bytes(self.decoder.decompress(data, n))
            # An empty (or skippable) frame read on into the next, as for gzip members.
            if out or not self.decoder.eof:
                return out


def _stage(coding: str) -> _Stage | None:
    """The decoder of one coding; None for one browsers do not know either."""
    if coding in ("gzip", "x-gzip", "deflate"):
        return _Zlib(coding)
    if coding == "br":
        return _Brotli()
    if coding == "zstd":
        return _Zstd()
    return None


class BodyDecoder:
    """Undoes a body's Content-Encoding as it arrives, keeping at most max_decoded decoded bytes."""

    def __init__(self, content_encoding: str | None, *, max_decoded: int,
                 max_ratio: float = DEFAULT_MAX_RATIO) -> None:
        self.max_decoded = max_decoded
        self.max_ratio = max_ratio
        self.codings = content_codings(content_encoding)
        self.encoded = 0  # bytes fed
        self.decoded = 0  # bytes handed out
        self.truncated: str | None = None  # "decoded cap", "ratio cap" or "undecodable" once it stopped
        stages = [_stage(c) for c in reversed(self.codings)]
        self._stages: list[_Stage] = [s for s in stages if s is not None]
        if len(self._stages) != len(stages):
            # A coding the browser would not undo either: it gets bytes it cannot use; judge them raw.
            self._stages = []
            self.unknown = [c for c in self.codings if c not in KNOWN_CODINGS]
        else:
            self.unknown = []

    @property
    def done(self) -> bool:
        """True once no more decoded bytes will come (a cap was reached or decoding failed)."""
        return self.truncated is not None

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes that data yields, within the caps (b"" once done)."""
        if self.truncated is not None:
            return b""
        self.encoded += len(data)
        if not self._stages:
            return self._take([data])
        self._stages[0].push(data)
        parts: list[bytes] = []
        try:
            while self.decoded + sum(map(len, parts)) < self.max_decoded:
                part = self._pull(len(self._stages) - 1, _STEP)
                if not part:
                    break
                parts.append(part)
                if self._too_expanded(sum(map(len, parts))):
                    break
        except (zlib.error, brotli.error, zstd.ZstdError, EOFError, ValueError):
            out = self._take(parts)
            self.truncated = self.truncated or "undecodable"
            self._stages = []
            return out
        return self._take(parts)

    def _pull(self, index: int, n: int) -> bytes:
        """Up to n decoded bytes out of stage index, feeding it from the stage before as needed."""
        stage = self._stages[index]
        out = stage.pull(n)
        while not out and index > 0:
            fed = self._pull(index - 1, _STEP)
            if not fed:
                return b""
            stage.push(fed)
            out = stage.pull(n)
        return out

    def _too_expanded(self, pending: int) -> bool:
        """Whether the decoded size so far breaks the ratio cap (sets truncated)."""
        total = self.decoded + pending
        if total > _RATIO_FLOOR and total > self.max_ratio * max(self.encoded, 1):
            self.truncated = "ratio cap"
            return True
        return False

    def _take(self, parts: list[bytes]) -> bytes:
        """Hand out parts up to the decoded cap (sets truncated when it is reached)."""
        out = b"".join(parts)
        room = self.max_decoded - self.decoded
        if len(out) >= room and (len(out) > room or self._stages):
            if len(out) > room or self._more_follows():
                self.truncated = self.truncated or "decoded cap"
            out = out[:room]
        self.decoded += len(out)
        return out

    def _more_follows(self) -> bool:
        """At the cap exactly: whether the stages hold more output (then the body is cut)."""
        try:
            return bool(self._pull(len(self._stages) - 1, 1))
        except (zlib.error, brotli.error, zstd.ZstdError, EOFError, ValueError):
            return False


def decode_body(body: bytes, content_encoding: str | None, *, max_decoded: int,
                max_ratio: float = DEFAULT_MAX_RATIO) -> tuple[bytes, str | None]:
    """A whole encoded body decoded within the caps: (decoded bytes, why decoding stopped early or None)."""
    decoder = BodyDecoder(content_encoding, max_decoded=max_decoded, max_ratio=max_ratio)
    out: list[bytes] = []
    # Fed in slices so the ratio cap sees the input grow as a stream's would.
    for start in range(0, len(body), _STEP):
        out.append(decoder.feed(body[start:start + _STEP]))
        if decoder.done:
            break
    if not body:
        out.append(decoder.feed(b""))
    return b"".join(out), decoder.truncated
