"""Feed parsers: text of a reputation feed in, indicators out.

Every parser is a pure function from text to a `ParsedFeed`. A malformed line
is skipped and recorded in `ParsedFeed.skipped` (line number and reason); it is
never fatal. Only an unknown format raises `FeedError`: a feed whose every line was
skipped still comes back, and the caller decides whether to keep its last good copy.
"""

from __future__ import annotations

import csv
import gc
import io
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from itertools import accumulate, repeat
from operator import length_hint
from socket import AF_INET, inet_ntop, inet_pton
from types import MappingProxyType
from typing import NamedTuple, cast

from clickguard.errors import FeedError, Problem, URLError
from clickguard.urls import DEFAULT_PORTS, normalize_host, normalize_url
from clickguard.vocab import Kind as Kind


class Indicator(NamedTuple):
    """One entry of a feed."""

    kind: Kind
    value: str
    tags: tuple[str, ...] = ()  # lower-case, e.g. ("elf", "mips", "mozi"); "port:8080" for IP:port


class SkippedLine(NamedTuple):
    """A line a parser could not use."""

    line: int
    reason: str


class ParsedFeed(NamedTuple):
    """What a parser made of a feed's text."""

    indicators: list[Indicator]
    skipped: list[SkippedLine]
    # Untagged dotted-quad IPv4 addresses, packed 4 big-endian bytes each: big feeds are
    # mostly these, and an object per address would cost a million allocations at load
    # (and, freed after the index is built, leave the memory they took in pieces).
    plain_ipv4_packed: bytes = b""

    @property
    def plain_ipv4(self) -> list[str]:
        """The untagged IPv4 addresses as canonical dotted quads (made on each call)."""
        return [inet_ntop(AF_INET, self.plain_ipv4_packed[i:i + 4])
                for i in range(0, len(self.plain_ipv4_packed), 4)]

    def all(self) -> list[Indicator]:
        """Every indicator, the plain IPv4 addresses as Indicators first."""
        return [*_plain_ips(self.plain_ipv4), *self.indicators]

    @property
    def size(self) -> int:
        """How many indicators the feed gave."""
        return len(self.plain_ipv4_packed) // 4 + len(self.indicators)


# --- parsers ---------------------------------------------------------------------------------

type FeedParser = Callable[[str], ParsedFeed]

_SHOWN = 80  # longest piece of a bad line quoted back in a SkippedLine reason


def _lines(text: str) -> list[str]:
    """The text's lines, numbered as an editor numbers them (no BOM, CRLF as LF)."""
    lines = _plain_text(text).split("\n")
    if not lines[-1]:
        lines.pop()  # the newline ending the last line does not start another
    return lines


def _plain_text(text: str) -> str:
    """The text without a BOM and with CRLF as LF."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text


_CHUNK = 1 << 20  # characters of text split into lines at a time by _line_chunks


def _line_chunks(text: str) -> Iterator[tuple[int, list[str]]]:
    """The lines `_lines` gives, about _CHUNK characters of them at a time, with the first one's number.

    A million-line feed then never has a million line strings alive at once: each chunk's
    are freed before the next is split, and the memory is reused instead of left in pieces.
    """
    text = _plain_text(text).removesuffix("\n")  # that newline does not start another line
    start, number = 0, 1
    while start < len(text):
        end = text.find("\n", start + _CHUNK)
        if end < 0:
            end = len(text)
        lines = text[start:end].split("\n")
        yield number, lines
        number += len(lines)
        start = end + 1


def _shown(value: str) -> str:
    """A piece of a bad line, quoted and cut short for a SkippedLine reason."""
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "…")


def _is_ipv4(value: str) -> bool:
    """Whether value is a dotted-quad IPv4 address, which is then already canonical."""
    # inet_pton accepts only four decimal octets without leading zeros (glibc and BSD alike),
    # exactly the strings ipaddress would print, so no round trip is needed.
    try:
        inet_pton(AF_INET, value)
    except (OSError, ValueError):  # ValueError: embedded NUL
        return False
    return True


def _address(value: str) -> str:
    """The canonical form of one IPv4 or IPv6 address; ValueError if it is not one."""
    if _is_ipv4(value):
        return value
    if "%" in value:  # a zone index names an interface of the feed's author, not a host
        raise ValueError(f"scoped IPv6 address {_shown(value)}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"not an IP address: {_shown(value)}") from None


def _address_or_network(value: str) -> tuple[Kind, str]:
    """Kind and canonical value of an address or CIDR (host bits cleared; /32 and /128 are IPs)."""
    if "/" not in value:
        return Kind.IP, _address(value)
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an IP network: {_shown(value)}") from None
    if network.prefixlen == network.max_prefixlen:
        return Kind.IP, str(network.network_address)
    return Kind.CIDR, str(network)


def _plain_ips(values: list[str]) -> Iterator[Indicator]:
    """Untagged IP indicators for already validated, canonical addresses."""
    # What Indicator._make does, minus a Python frame per entry: this is the 1M-line hot path.
    return cast(
        Iterator[Indicator],
        map(tuple.__new__, repeat(Indicator), zip(repeat(Kind.IP), values, repeat(()))),
    )


def _parse_ip(text: str) -> ParsedFeed:
    """One IPv4/IPv6 address or CIDR a line; `#` starts a comment."""
    indicators: list[Indicator] = []
    skipped: list[SkippedLine] = []
    packed = io.BytesIO()  # the plain dotted quads, 4 bytes each
    for first, lines in _line_chunks(text):
        pending = iter(lines)
        while True:
            try:
                # Validate and pack in C up to the first line that is not a plain dotted quad
                # (a comment, a CIDR, IPv6, a bad line); most real lists hold nothing else.
                # What was written before that line stays written.
                packed.writelines(map(inet_pton, repeat(AF_INET), pending))
                break
            except (OSError, ValueError):
                # map has taken the odd line from the list iterator, which knows what is left.
                odd = len(lines) - length_hint(pending) - 1
            value = lines[odd].partition("#")[0].strip()
            if not value:
                continue
            try:
                kind, canonical = _address_or_network(value)
            except ValueError as e:
                skipped.append(SkippedLine(first + odd, str(e)))
                continue
            indicators.append(Indicator(kind, canonical))
    return ParsedFeed(indicators, skipped, packed.getvalue())


def _parse_ipsum(text: str, min_count: int = 1) -> ParsedFeed:
    """`IP<TAB>count` lines (ipsum.txt), or one IP a line with no count (ipsum's levels/N.txt)."""
    indicators: list[Indicator] = []
    skipped: list[SkippedLine] = []
    count_tags: dict[str, tuple[str, ...]] = {}  # one shared tuple per count, not one per line
    for number, line in enumerate(_lines(text), 1):
        fields = line.partition("#")[0].split()
        if not fields:
            continue
        if len(fields) > 2:
            skipped.append(SkippedLine(number, f"expected 'IP<TAB>count', got {_shown(line)}"))
            continue
        try:
            address = _address(fields[0])
        except ValueError as e:
            skipped.append(SkippedLine(number, str(e)))
            continue
        if len(fields) == 1:
            # A levels/N.txt file was already cut at N upstream, and its count is unknown here,
            # so min_count has nothing to compare against: the line is kept.
            indicators.append(Indicator(Kind.IP, address))
            continue
        count = fields[1]
        if not (count.isascii() and count.isdigit()):
            skipped.append(SkippedLine(number, f"count is not a whole number: {_shown(count)}"))
            continue
        if int(count) < min_count:
            continue  # below the operator's threshold: dropped on purpose, not a bad line
        tags = count_tags.get(count)
        if tags is None:
            tags = count_tags[count] = (f"count:{int(count)}",)
        indicators.append(Indicator(Kind.IP, address, tags))
    return ParsedFeed(indicators, skipped)


class _UrlhausColumns(NamedTuple):
    """Where the columns clickguard reads sit in a URLhaus CSV row."""

    url: int = 2  # upstream's order: id,dateadded,url,url_status,last_online,threat,tags,...
    tags: int | None = 6

    @property
    def needed(self) -> int:
        """How many fields a row needs to hold both columns."""
        return max(self.url, -1 if self.tags is None else self.tags) + 1


def _urlhaus_header(row: list[str]) -> _UrlhausColumns | None:
    """The column layout if row is URLhaus's column header (`id,dateadded,url,...`), else None."""
    names = [field.strip().lower() for field in row]
    if not names or names[0] != "id" or "url" not in names:
        return None
    return _UrlhausColumns(names.index("url"), names.index("tags") if "tags" in names else None)


def _parse_urlhaus_csv(text: str) -> ParsedFeed:
    """URLhaus CSV export, with its `#` banner or with a bare header line."""
    columns = _UrlhausColumns()
    indicators: list[Indicator] = []
    skipped: list[SkippedLine] = []
    host_tags: dict[tuple[Kind, str], dict[str, None]] = {}  # insertion-ordered tag sets
    parsed_tags: dict[str, tuple[str, ...]] = {}  # a few hundred distinct tag strings
    for number, line in enumerate(_lines(text), 1):
        if line.startswith("#"):
            # The banner's last line is the commented column header; honour it if present.
            # Any other banner line is a comment, whatever it holds.
            if line.lstrip("# \t\"").lower().startswith("id"):
                try:
                    columns = _urlhaus_header(_csv_row(line.lstrip("#"))) or columns
                except csv.Error as e:
                    skipped.append(SkippedLine(number, f"bad CSV in the column header: {e}"))
            continue
        if not line.strip():
            continue
        try:
            row = _csv_row(line)
        except csv.Error as e:
            skipped.append(SkippedLine(number, f"bad CSV: {e}"))
            continue
        header = _urlhaus_header(row)
        if header is not None:  # the bare header line of a banner-less copy
            columns = header
            continue
        if len(row) < columns.needed:
            reason = f"expected {columns.needed} columns or more, got {len(row)}"
            skipped.append(SkippedLine(number, reason))
            continue
        try:
            url = normalize_url(row[columns.url])
        except URLError as e:
            skipped.append(SkippedLine(number, f"bad URL {_shown(row[columns.url])}: {e}"))
            continue
        raw_tags = "" if columns.tags is None else row[columns.tags]
        tags = parsed_tags.get(raw_tags)
        if tags is None:
            tags = parsed_tags[raw_tags] = _urlhaus_tags(raw_tags)
        indicators.append(Indicator(Kind.URL, url.url, tags))
        key = (Kind.IP, _address(url.host)) if url.is_ip else (Kind.HOST, url.host)
        host_tags.setdefault(key, {}).update(dict.fromkeys(tags))
    indicators += [Indicator(kind, value, tuple(tags)) for (kind, value), tags in host_tags.items()]
    return ParsedFeed(indicators, skipped)


def _csv_row(line: str) -> list[str]:
    """The fields of one CSV line; csv.Error if it is not one whole, well-quoted record.

    Each line is read on its own: with one reader over the whole feed an unterminated
    quote would run on into the lines after it and swallow them unseen. URLhaus never
    quotes a line break (its URLs are percent-encoded), so a record is always one line.
    """
    return next(csv.reader((line,), strict=True), [])


def _urlhaus_tags(raw: str) -> tuple[str, ...]:
    """URLhaus's comma-separated tags, lower-cased and de-duplicated; `None` means none."""
    if raw.strip() == "None":
        return ()
    return tuple(dict.fromkeys(t for t in (part.strip().lower() for part in raw.split(",")) if t))


def _parse_spamhaus_drop(text: str) -> ParsedFeed:
    """Spamhaus DROP as NDJSON (drop_v4.json) or as text (`CIDR ; SBLnnn`, `;` comments)."""
    lines = _lines(text)
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.startswith("{"):
        return _parse_spamhaus_ndjson(lines)
    indicators: list[Indicator] = []
    skipped: list[SkippedLine] = []
    for number, line in enumerate(lines, 1):
        value, _, comment = line.partition("#")[0].partition(";")
        value = value.strip()
        if not value:
            continue
        try:
            kind, canonical = _address_or_network(value)
        except ValueError as e:
            skipped.append(SkippedLine(number, str(e)))
            continue
        sblid = comment.strip().lower()
        indicators.append(Indicator(kind, canonical, (sblid,) if sblid else ()))
    return ParsedFeed(indicators, skipped)


def _parse_spamhaus_ndjson(lines: list[str]) -> ParsedFeed:
    """drop_v4.json: one `{"cidr", "sblid", "rir"}` object a line, then a metadata object."""
    indicators: list[Indicator] = []
    skipped: list[SkippedLine] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if _nested_too_deeply(line):
            skipped.append(SkippedLine(number, f"JSON nested more than {_JSON_DEPTH} levels deep"))
            continue
        try:
            record = json.loads(line)
        except ValueError:
            skipped.append(SkippedLine(number, f"not JSON: {_shown(line)}"))
            continue
        if not isinstance(record, dict):
            skipped.append(SkippedLine(number, f"not a JSON object: {_shown(line)}"))
            continue
        if record.get("type") == "metadata":
            # The count guards against a truncated download that still parses line by line.
            records = record.get("records")
            if records != len(indicators):
                skipped.append(SkippedLine(
                    number, f"metadata says {records!r} records, {len(indicators)} were parsed"))
            continue
        cidr = record.get("cidr")
        if not isinstance(cidr, str):
            skipped.append(SkippedLine(number, "object has no string 'cidr'"))
            continue
        try:
            kind, canonical = _address_or_network(cidr.strip())
        except ValueError as e:
            skipped.append(SkippedLine(number, str(e)))
            continue
        sblid = record.get("sblid")
        tags = (sblid.strip().lower(),) if isinstance(sblid, str) and sblid.strip() else ()
        indicators.append(Indicator(kind, canonical, tags))
    return ParsedFeed(indicators, skipped)


_JSON_DEPTH = 32  # a DROP record is one flat object; json.loads recurses once per level
# A string, escapes and all (to the end of the line if unterminated), and what is not a bracket.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nested_too_deeply(line: str) -> bool:
    """Whether a JSON line opens more than _JSON_DEPTH arrays or objects inside each other.

    Checked before json.loads, whose recursion would otherwise raise RecursionError.
    Brackets inside strings do not count; up to the first thing that is not JSON (where
    json.loads stops anyway) the count is the depth json.loads would reach. Linear, in C.
    """
    if line.count("[") + line.count("{") <= _JSON_DEPTH:
        return False  # the common case
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", line))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > _JSON_DEPTH


def _port_tag(port: str) -> tuple[str, ...]:
    """The `port:N` tag for a decimal port; () if out of range; ValueError if not a number."""
    if not (port.isascii() and port.isdigit()):
        raise ValueError(f"bad port {_shown(port)}")
    # elf_gafgyt lists a few C2 addresses with ports such as 79548: the address is still the
    # trail author's finding, only the port is a typo, so the address stays and the tag goes.
    return (f"port:{int(port)}",) if 0 < int(port) < 65536 else ()


def _parse_maltrail(text: str) -> ParsedFeed:
    """Maltrail trail file: `/path`, domain, IPv4, `IPv4:port` or full URL a line; `#` comments."""
    indicators: list[Indicator] = []
    skipped: list[SkippedLine] = []
    for number, line in enumerate(_lines(text), 1):
        value = line.strip()  # some upstream lines carry stray leading or trailing blanks
        if not value or value.startswith("#"):
            continue
        try:
            indicators += _maltrail_entry(value)
        except ValueError as e:  # URLError is a ValueError
            skipped.append(SkippedLine(number, str(e)))
    return ParsedFeed(indicators, skipped)


def _maltrail_entry(value: str) -> list[Indicator]:
    """The indicators one maltrail data line stands for; ValueError if it is none of the kinds."""
    if value.startswith("/"):
        return [Indicator(Kind.PATH, value)]
    if "://" in value:
        url = normalize_url(value)
        found = [Indicator(Kind.URL, url.url)]
        if url.is_ip and url.path in ("", "/") and not url.query:
            # A bare `http://IP[:port]` names the server itself, so the address is listed too.
            tags = () if url.port == DEFAULT_PORTS[url.scheme] else _port_tag(str(url.port))
            found.append(Indicator(Kind.IP, _address(url.host), tags))
        return found
    if _is_ipv4(value):
        return [Indicator(Kind.IP, value)]
    host, colon, port = value.rpartition(":")
    if colon and ":" not in host:
        if not _is_ipv4(host):
            raise ValueError(f"expected IPv4:port, got {_shown(value)}")
        return [Indicator(Kind.IP, host, _port_tag(port))]
    if colon:
        return [Indicator(Kind.IP, _address(value))]  # IPv6 (maltrail has none today)
    domain = normalize_host(value)
    # A name ending in a number is an IPv4 address to a browser ("1.2.3" is 1.2.0.3).
    return [Indicator(Kind.IP, domain) if _is_ipv4(domain) else Indicator(Kind.DOMAIN, domain)]


# Names a hosts file maps to itself or to loopback by convention; they are not blocklist entries.
_HOSTS_FILE_NAMES = frozenset({
    "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost",
    "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters",
    "ip6-allhosts", "0.0.0.0",
})
# The addresses blocklists published as hosts files point their names at.
_SINK_ADDRESSES = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1"})


def _parse_domains(text: str) -> ParsedFeed:
    """One domain a line (`*.example.com` allowed), or hosts-file lines `0.0.0.0 example.com`."""
    indicators: list[Indicator] = []
    skipped: list[SkippedLine] = []
    for number, line in enumerate(_lines(text), 1):
        fields = line.partition("#")[0].split()
        if not fields:
            continue
        if len(fields) > 1:
            if fields[0] not in _SINK_ADDRESSES:
                skipped.append(SkippedLine(number, f"expected a domain or '0.0.0.0 domain', "
                                                   f"got {_shown(line.strip())}"))
                continue
            names = [name for name in fields[1:] if name.lower() not in _HOSTS_FILE_NAMES]
        else:
            names = fields
        for name in names:
            try:
                indicators.append(Indicator(Kind.DOMAIN, _domain(name)))
            except ValueError as e:
                skipped.append(SkippedLine(number, str(e)))
    return ParsedFeed(indicators, skipped)


def _domain(name: str) -> str:
    """The canonical domain a domain-list entry names; ValueError for an address or a bad name."""
    # `*.example.com` covers the subdomains of example.com, which a DOMAIN entry does anyway.
    domain = normalize_host(name.removeprefix("*."))
    if ":" in domain or _is_ipv4(domain):
        raise ValueError(f"an IP address is not a domain: {_shown(name)}")
    return domain


def _parse_urls(text: str) -> ParsedFeed:
    """One URL a line (OpenPhish feed.txt); a line starting with `#` is a comment."""
    indicators: list[Indicator] = []
    skipped: list[SkippedLine] = []
    for number, line in enumerate(_lines(text), 1):
        # Only whole-line comments: inside a URL `#` starts a fragment, not a comment.
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        try:
            indicators.append(Indicator(Kind.URL, normalize_url(value).url))
        except URLError as e:
            skipped.append(SkippedLine(number, f"bad URL {_shown(value)}: {e}"))
    return ParsedFeed(indicators, skipped)


FORMATS: Mapping[str, FeedParser] = MappingProxyType({
    "ip": _parse_ip,
    "ipsum": _parse_ipsum,
    "urlhaus_csv": _parse_urlhaus_csv,
    "spamhaus_drop": _parse_spamhaus_drop,
    "maltrail": _parse_maltrail,
    "domains": _parse_domains,
    "urls": _parse_urls,
})

_ADDRESSES = frozenset({Kind.IP, Kind.CIDR})

DEFAULT_KINDS: Mapping[str, frozenset[Kind]] = MappingProxyType({
    "ip": _ADDRESSES,
    "ipsum": frozenset({Kind.IP}),
    # No HOST: URLhaus lists malware files hosted on github.com, drive.google.com,
    # img1.wsimg.com and the like, and indexing its host names would block those whole sites.
    # Its IP-literal hosts are the devices serving the payload themselves. IT can opt in to HOST.
    "urlhaus_csv": frozenset({Kind.URL, Kind.IP}),
    "spamhaus_drop": _ADDRESSES,
    "maltrail": frozenset({Kind.PATH, Kind.DOMAIN, Kind.IP, Kind.URL}),
    "domains": frozenset({Kind.DOMAIN}),
    "urls": frozenset({Kind.URL}),
})


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector for the duration of the block."""
    # A big feed makes a million long-lived tuples; the collection passes they trigger find
    # no garbage yet cost a third of the parse time. gc.disable() is process-wide, so cycles
    # made elsewhere meanwhile wait the second or so until collection resumes; the previous
    # state comes back even if a parser fails.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_feed(fmt: str, text: str, *, min_count: int = 1) -> ParsedFeed:
    """Parse a feed's text in the named format; only an unknown format raises (`FeedError`)."""
    parser = FORMATS.get(fmt)
    if parser is None:
        known = ", ".join(FORMATS)
        raise FeedError([Problem("<feed>", None, "format",
                                 f"unknown feed format {fmt!r} (known: {known})")])
    with _gc_paused():
        if fmt == "ipsum":
            return _parse_ipsum(text, min_count)  # the only format that carries a count
        return parser(text)
