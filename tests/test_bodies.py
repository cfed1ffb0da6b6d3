"""Content-Encoding undone within caps: every coding browsers accept, stacks, bombs, broken bodies."""

from __future__ import annotations

import gzip
import random
import resource
import zlib
from collections.abc import Callable

import brotli  # type: ignore[import-untyped]
import pytest
from backports import zstd

from clickguard.inspection.bodies import BodyDecoder, content_codings, decode_body

PAGE = b"<html><body>" + b"<p>hello, camera</p>" * 2000 + b"</body></html>"  # 40 KiB
# Fixed noise (not os.urandom): random bytes after a cut deflate stream now and then decode to
# garbage first, and a test must give the same answer every run.
NOISE = random.Random(20261203).randbytes(256)


def raw_deflate(data: bytes) -> bytes:
    """DEFLATE without the zlib wrapper, as old servers send Content-Encoding: deflate."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


def encode(data: bytes, header: str) -> bytes:
    """data with the codings of a Content-Encoding header applied in order."""
    for coding in content_codings(header):
        data = ENCODERS[coding](data)
    return data


@pytest.mark.parametrize("header", ["gzip", "x-gzip", "deflate", "br", "zstd", "gzip, br", "br, gzip",
                                    "deflate, zstd, gzip", "identity", "", "GZIP", "gzip,identity"])
def test_every_coding_and_stack_decodes(header: str) -> None:
    assert decode_body(encode(PAGE, header), header, max_decoded=1 << 20) == (PAGE, None)


def test_raw_deflate_decodes_as_browsers_accept_it() -> None:
    assert decode_body(raw_deflate(PAGE), "deflate", max_decoded=1 << 20) == (PAGE, None)


@pytest.mark.parametrize("header", ["gzip", "deflate", "br", "zstd", "gzip, br"])
def test_fed_a_byte_at_a_time_the_same(header: str) -> None:
    body = encode(PAGE, header)
    decoder = BodyDecoder(header, max_decoded=1 << 20)
    out = b"".join(decoder.feed(body[i:i + 1]) for i in range(len(body)))
    assert (out, decoder.truncated) == (PAGE, None)


def test_concatenated_gzip_members_and_zstd_frames_are_read_on() -> None:
    assert decode_body(gzip.compress(b"one ") + gzip.compress(b"two"), "gzip", max_decoded=100) == (
        b"one two", None)
    assert decode_body(zstd.compress(b"one ") + zstd.compress(b"two"), "zstd", max_decoded=100) == (
        b"one two", None)


@pytest.mark.parametrize("header", ["gzip", "deflate", "br", "zstd", "gzip, br", ""])
def test_the_decoded_cap_keeps_the_start_and_says_so(header: str) -> None:
    assert decode_body(encode(PAGE, header), header, max_decoded=1000) == (PAGE[:1000], "decoded cap")
    # Exactly at the cap is the whole body, not a cut one.
    assert decode_body(encode(PAGE, header), header, max_decoded=len(PAGE)) == (PAGE, None)


@pytest.mark.parametrize("header", ["gzip", "deflate", "br", "zstd", "br, gzip"])
def test_a_bomb_stops_at_the_ratio_cap(header: str) -> None:
    """16 MiB of zeros compress to a few KiB (gzip 1000x, brotli and zstd far more)."""
    bomb = encode(bytes(16 << 20), header)
    decoded, why = decode_body(bomb, header, max_decoded=16 << 20, max_ratio=100)
    # The cap applies past the first 256 KiB (small bodies compress far better than any ratio).
    assert why == "ratio cap" and len(decoded) <= max(256 << 10, 100 * len(bomb)) + (64 << 10)
    assert decoded == bytes(len(decoded))


def test_a_bomb_costs_bounded_memory() -> None:
    """A 256 MiB gzip bomb (about 250 KiB): decoding it under a 1 MiB cap never holds the whole of it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    bomb = b"".join([compressor.compress(block) for _ in range(256)] + [compressor.flush()])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decoded, why = decode_body(bomb, "gzip", max_decoded=1 << 20, max_ratio=10_000)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB
    assert (len(decoded), why) == (1 << 20, "decoded cap")
    assert grown < 64 * 1024


@pytest.mark.parametrize(("body", "header"), [
    (gzip.compress(PAGE)[: len(gzip.compress(PAGE)) // 2] + NOISE[:200], "gzip"),
    (b"not compressed at all" * 10, "gzip"),
    (brotli.compress(PAGE)[:-40] + b"\xff" * 50, "br"),
    (b"\x28\xb5\x2f\xfd" + NOISE[:100], "zstd"),
])
def test_an_undecodable_body_keeps_what_decoded(body: bytes, header: str) -> None:
    decoded, why = decode_body(body, header, max_decoded=1 << 20)
    assert why == "undecodable" and PAGE.startswith(decoded)


def test_a_coding_no_browser_knows_leaves_the_bytes_as_they_are() -> None:
    decoder = BodyDecoder("compress", max_decoded=100)
    assert decoder.feed(b"\x7fELF....") == b"\x7fELF...." and decoder.unknown == ["compress"]


def test_content_codings() -> None:
    assert content_codings(" GZIP , br,identity ") == ["gzip", "br"]
    assert content_codings(None) == content_codings("") == []
