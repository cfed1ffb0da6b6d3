"""The e-mail's origin: Received headers in the shapes real MTAs write, and whole messages."""

from __future__ import annotations

import ipaddress
import random
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from clickguard.errors import InputError
from clickguard.mail.origin import (
    Hop,
    Origin,
    TrustedBoundary,
    find_origin,
    origin_of_message,
    parse_received,
)

# --- one header at a time --------------------------------------------------------------------

# (from_host, from_ip, helo, by_host)
type Parts = tuple[str | None, str | None, str | None, str | None]

# (id, header value, parts)
HEADERS: list[tuple[str, str, Parts]] = [
    ("postfix", "from mail.example.net (mail.example.net [203.0.113.9])\r\n\tby mx1.corp.example (Postfix) "
     "with ESMTPS id 4TQ2Xk1v2Wz9sQ\r\n\tfor <alice@corp.example>; Mon, 15 Jan 2024 09:12:01 +0000 (UTC)",
     ("mail.example.net", "203.0.113.9", None, "mx1.corp.example")),
    ("postfix-unknown-tls", "from helo.example (unknown [198.51.100.7])\r\n\t(using TLSv1.3 with cipher "
     "TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n\t key-exchange X25519 server-signature RSA-PSS (2048 bits) "
     "server-digest SHA256)\r\n\t(No client certificate requested)\r\n\tby mx1.corp.example (Postfix) with "
     "ESMTPS id 4TQ2; Mon, 15 Jan 2024 09:12:01 +0000 (UTC)",
     ("helo.example", "198.51.100.7", None, "mx1.corp.example")),
    ("postfix-ipv6", "from mail.example.org (mail.example.org [IPv6:2001:db8:1::25])\n\tby mx1.corp.example "
     "(Postfix) with ESMTP id 4TQ3; Mon, 15 Jan 2024 09:12:01 +0000 (UTC)",
     ("mail.example.org", "2001:db8:1::25", None, "mx1.corp.example")),
    ("postfix-literal-helo", "from [192.168.1.20] (unknown [203.0.113.77])\n\tby mx1.corp.example (Postfix) "
     "with ESMTP id 4TQ4; Mon, 15 Jan 2024 09:12:01 +0000",
     (None, "203.0.113.77", None, "mx1.corp.example")),
    ("postfix-authenticated", "from laptop.example (unknown [198.51.100.23])\n\t(Authenticated sender: "
     "bob@corp.example)\n\tby smtp.corp.example (Postfix) with ESMTPSA id 4TQ5;"
     " Mon, 15 Jan 2024 09:12:01 +0000",
     ("laptop.example", "198.51.100.23", None, "smtp.corp.example")),
    ("postfix-reinjection", "from localhost (localhost [127.0.0.1])\n\tby mx1.corp.example (Postfix) with "
     "ESMTP id 4TQ6; Mon, 15 Jan 2024 09:12:02 +0000",
     ("localhost", "127.0.0.1", None, "mx1.corp.example")),
    ("amavis", "from mx1.corp.example ([127.0.0.1])\n\tby localhost (mx1.corp.example [127.0.0.1]) "
     "(amavisd-new, port 10024)\n\twith ESMTP id aBcD for <alice@corp.example>;"
     " Mon, 15 Jan 2024 09:12:02 +0000",
     ("mx1.corp.example", "127.0.0.1", None, "localhost")),
    ("postfix-local",
     "by mx1.corp.example (Postfix, from userid 1001)\n\tid 4TQ7; Mon, 15 Jan 2024 09:12:01 +0000",
     (None, None, None, "mx1.corp.example")),
    ("exim", "from mail.example.com ([203.0.113.9] helo=mail.example.com)\n\tby mx.example.org with esmtps  "
     "(TLS1.3) tls TLS_AES_256_GCM_SHA384\n\t(Exim 4.96)\n\t(envelope-from <a@example.com>)\n\t"
     "id 1rPq3v-0004Xy-2L\n\tfor bob@example.org; Mon, 15 Jan 2024 09:12:01 +0000",
     ("mail.example.com", "203.0.113.9", "mail.example.com", "mx.example.org")),
    ("exim-no-rdns", "from [198.51.100.7] (port=55123 helo=desktop-4f2a)\n\tby mx.example.org with esmtp "
     "(Exim 4.94.2)\n\t(envelope-from <x@example.net>)\n\tid 1rPq3w-0001Ab-Q0;"
     " Mon, 15 Jan 2024 09:12:01 +0000",
     (None, "198.51.100.7", "desktop-4f2a", "mx.example.org")),
    ("exim-port-literal-helo", "from host.example.net ([203.0.113.50]:41820 helo=[10.0.0.7])\n\tby "
     "mx.example.org with esmtpsa (TLS1.2) (Exim 4.92)\n\tid 1rPq3x; Mon, 15 Jan 2024 09:12:01 +0000",
     ("host.example.net", "203.0.113.50", "[10.0.0.7]", "mx.example.org")),
    ("exim-ipv6", "from [2001:db8:5::1] (helo=mx.example.net)\n\tby mail.example.org with esmtps (TLS1.3) "
     "(Exim 4.97)\n\tid 1rPq3y; Mon, 15 Jan 2024 09:12:01 +0000",
     (None, "2001:db8:5::1", "mx.example.net", "mail.example.org")),
    ("exim-local", "from www-data by web.example.org with local (Exim 4.92)\n\t(envelope-from "
     "<www-data@web.example.org>)\n\tid 1rPq3z-0001; Mon, 15 Jan 2024 09:12:01 +0000",
     ("www-data", None, None, "web.example.org")),
    ("sendmail", "from relay.example.com (relay.example.com [192.0.2.44])\n\tby mail.example.org "
     "(8.15.2/8.15.2) with ESMTPS id 40F9C1aX012345\n\t(version=TLSv1.2 cipher=ECDHE-RSA-AES256-GCM-SHA384 "
     "bits=256 verify=NOT)\n\tfor <carol@example.org>; Mon, 15 Jan 2024 09:12:01 GMT",
     ("relay.example.com", "192.0.2.44", None, "mail.example.org")),
    ("sendmail-may-be-forged", "from helo.example (dsl-198-51-100-3.isp.example [198.51.100.3] (may be "
     "forged))\n\tby mail.example.org (8.14.7/8.14.7) with ESMTP id 40F9C1; Mon, 15 Jan 2024 09:12:01 GMT",
     ("helo.example", "198.51.100.3", None, "mail.example.org")),
    ("sendmail-ident", "from fred.example (fred@fred.example [192.0.2.61])\n\tby mail.example.org "
     "(8.15.2/8.15.2) with ESMTP id 40F9C2; Mon, 15 Jan 2024 09:12:01 GMT",
     ("fred.example", "192.0.2.61", None, "mail.example.org")),
    ("sendmail-ipv6-long", "from host6.example (host6.example [IPv6:2001:db8:0:0:0:0:0:42])\n\tby "
     "mail.example.org (8.17.1/8.17.1) with ESMTP id 40F9C3; Mon, 15 Jan 2024 09:12:01 GMT",
     ("host6.example", "2001:db8::42", None, "mail.example.org")),
    ("exchange-internal", "from EXCH01.corp.example (10.1.2.3) by EXCH02.corp.example (10.1.2.4)\r\n with "
     "Microsoft SMTP Server (version=TLS1_2,\r\n cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id "
     "15.1.2507.35; Mon, 15 Jan 2024 09:12:01 +0000",
     ("exch01.corp.example", "10.1.2.3", None, "exch02.corp.example")),
    ("exchange-ipv6-zone", "from EXCH01.corp.example (fe80::5d1c:2a3b:4c5d:6e7f%12) by "
     "EXCH02.corp.example\r\n (fe80::1%13) with Microsoft SMTP Server (version=TLS1_2,\r\n "
     "cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) "
     "id 15.1.2507.35 via Mailbox Transport; Mon, 15 Jan 2024 09:12:01 +0000",
     ("exch01.corp.example", "fe80::5d1c:2a3b:4c5d:6e7f", None, "exch02.corp.example")),
    ("exchange-mapi", "from EXCH01.corp.example ([::1]) by EXCH01.corp.example ([::1]) with mapi id\r\n "
     "15.01.2507.035; Mon, 15 Jan 2024 09:12:01 +0000",
     ("exch01.corp.example", "::1", None, "exch01.corp.example")),
    ("exchange-loopback-bare", "from EXCH01.corp.example (::1) by EXCH01.corp.example (::1) with Microsoft "
     "SMTP Server\r\n (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.35;",
     ("exch01.corp.example", "::1", None, "exch01.corp.example")),
    ("exchange-bare-ipv6-trailing-zeros", "from EXCH01.corp.example (2001:db8:ffff::) by EXCH02.corp.example",
     ("exch01.corp.example", "2001:db8:ffff::", None, "exch02.corp.example")),
    ("o365-inbound", "from NAM12-DM6-obe.outbound.protection.outlook.com\r\n (mail-dm6nam12on2101.outbound."
     "protection.outlook.com [203.0.113.101])\r\n by mx1.corp.example (Postfix) with ESMTPS id 4TQ8; "
     "Mon, 15 Jan 2024 09:12:01 +0000",
     ("nam12-dm6-obe.outbound.protection.outlook.com", "203.0.113.101", None, "mx1.corp.example")),
    ("o365-internal-ipv6", "from BN6PR11CA0012.namprd11.prod.outlook.com (2001:db8:405:4a::22) by\r\n "
     "DM6PR11MB4563.namprd11.prod.outlook.com (2001:db8:5:1a8::14) with Microsoft SMTP\r\n Server "
     "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7181.19;\r\n Mon, 15 Jan 2024 "
     "09:12:01 +0000",
     ("bn6pr11ca0012.namprd11.prod.outlook.com", "2001:db8:405:4a::22", None,
      "dm6pr11mb4563.namprd11.prod.outlook.com")),
    ("o365-frontdoor", "from mail.example.com (203.0.113.9) by\r\n DM6NAM10FT012.mail.protection.outlook.com "
     "(10.13.152.191) with Microsoft SMTP Server id\r\n 15.20.7181.13 via Frontend Transport;"
     " Mon, 15 Jan 2024 09:12:01 +0000",
     ("mail.example.com", "203.0.113.9", None, "dm6nam10ft012.mail.protection.outlook.com")),
    ("ms-smtpsvc", "from mail.example.net ([192.0.2.17]) by exch2003.corp.example with Microsoft "
     "SMTPSVC(6.0.3790.4675);\r\n\t Mon, 15 Jan 2024 09:12:01 +0000",
     ("mail.example.net", "192.0.2.17", None, "exch2003.corp.example")),
    ("gmail-inbound", "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41])\n        by "
     "mx.google.com with SMTPS id a1sor1234567wrx.12.2024.01.15.01.02.03\n        for <bob@example.org>\n"
     "        (Google Transport Security);\n        Mon, 15 Jan 2024 01:02:03 -0800 (PST)",
     ("mail-sor-f41.google.com", "209.85.220.41", None, "mx.google.com")),
    ("gmail-submission", "from [192.168.1.5] ([203.0.113.200])\n        by smtp.gmail.com with ESMTPSA id "
     "x12-20020a05600c4e0c00b0040e5a93ae53sm123456wmq.10.2024.01.15.01.02.03\n        for <bob@example.org>\n"
     "        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);\n        Mon, 15 Jan 2024",
     (None, "203.0.113.200", None, "smtp.gmail.com")),
    ("gmail-internal", "by 2002:a05:6a10:9e8c:b0:4f1:2345:6789 with SMTP id v12csp1234567pxc;\n        "
     "Mon, 15 Jan 2024 01:02:03 -0800 (PST)",
     (None, None, None, "2002:a05:6a10:9e8c:b0:4f1:2345:6789")),
    ("gmail-ipv6-sender", "from mail.example.org (mail.example.org. [2001:db8:4860::5])\n        by "
     "mx.google.com with ESMTPS id b2si123.2024.01.15.01.02.03\n        for <bob@example.org>;",
     ("mail.example.org", "2001:db8:4860::5", None, "mx.google.com")),
    ("qmail", "from unknown (HELO mail.example.net) (203.0.113.9)\n  by mx.example.org with SMTP; "
     "15 Jan 2024 09:12:01 -0000",
     ("unknown", "203.0.113.9", "mail.example.net", "mx.example.org")),
    ("qmail-invoked-network", "(qmail 28314 invoked from network); 15 Jan 2024 09:12:01 -0000",
     (None, None, None, None)),
    ("qmail-invoked-uid", "(qmail 1234 invoked by uid 89); 15 Jan 2024 09:12:01 -0000",
     (None, None, None, None)),
    ("qmail-helo-is-ip", "from dsl.example.net (HELO 198.51.100.200) (198.51.100.45)\n  by mx.example.org "
     "with SMTP; 15 Jan 2024 09:12:01 -0000",
     ("dsl.example.net", "198.51.100.45", "198.51.100.200", "mx.example.org")),
    ("qmail-ident-literal", "from unknown (HELO box) (postmaster@[192.0.2.80])\n  by mx.example.org with "
     "SMTP; 15 Jan 2024 09:12:01 -0000",
     ("unknown", "192.0.2.80", "box", "mx.example.org")),
    ("courier-mapped", "from mail.example.net ([::ffff:203.0.113.9])\n  (AUTH: LOGIN carol, TLS: "
     "TLSv1.2,256bits,ECDHE-RSA-AES256-GCM-SHA384)\n  by mail.example.org with ESMTPSA; Mon, 15 Jan 2024",
     ("mail.example.net", "203.0.113.9", None, "mail.example.org")),
    ("mapped-with-prefix", "from a.example (a.example [IPv6:::ffff:198.51.100.1]) by b.example",
     ("a.example", "198.51.100.1", None, "b.example")),
    ("bare-ip-from", "from 198.51.100.9 by mx.example.org with SMTP; Mon, 15 Jan 2024 09:12:01 +0000",
     (None, "198.51.100.9", None, "mx.example.org")),
    ("bracketed-zone", "from h.example ([fe80::1%eth0]) by mx.example.org; Mon, 15 Jan 2024",
     ("h.example", "fe80::1", None, "mx.example.org")),
    ("bare-ip-port", "from host.example (203.0.113.9:25312) by mx.example.org; Mon, 15 Jan 2024",
     ("host.example", "203.0.113.9", None, "mx.example.org")),
    ("with-field-name", "Received: from a.example (a.example [192.0.2.5]) by b.example",
     ("a.example", "192.0.2.5", None, "b.example")),
    ("upper-case", "FROM Mail.Example.COM (Mail.Example.COM [192.0.2.3]) BY MX.Example.ORG.",
     ("mail.example.com", "192.0.2.3", None, "mx.example.org")),
    ("escaped-paren", "from a.example (odd\\) name [192.0.2.9]) by b.example",
     ("a.example", "192.0.2.9", None, "b.example")),
    ("date-tail-ignored", "from a.example (a.example [192.0.2.1]) by b.example; Mon, 15 Jan 2024 from "
     "c.example ([198.51.100.1]) by evil.example",
     ("a.example", "192.0.2.1", None, "b.example")),
    ("second-from-ignored", "from a.example (a.example [192.0.2.1]) from c.example ([198.51.100.1]) "
     "by b.example", ("a.example", "192.0.2.1", None, "b.example")),
    ("invalid-ips", "from x.example (x.example [999.1.1.1]) (203.000.113.09) by y.example",
     ("x.example", None, None, "y.example")),
    ("junk-keyword-only", "from", (None, None, None, None)),
    ("junk-unclosed", "((((( unclosed comment [203.0.113.9] by x", (None, None, None, None)),
    ("junk-from-unclosed", "from (((((", (None, None, None, None)),
    ("junk-empty", "", (None, None, None, None)),
    ("junk-brackets", "from ]]][[[ (][) by ;;;", ("]]][[[", None, None, None)),
]


def test_enough_header_shapes() -> None:
    assert len(HEADERS) >= 30


@pytest.mark.parametrize(("value", "expected"), [(v, e) for _i, v, e in HEADERS],
                         ids=[i for i, _v, _e in HEADERS])
def test_parse_received(value: str, expected: Parts) -> None:
    assert parse_received(value, line=3) == Hop(*expected, line=3)


@pytest.mark.parametrize(("value", "expected"), [(v, e) for _i, v, e in HEADERS],
                         ids=[i for i, _v, _e in HEADERS])
def test_parse_received_unfolded(value: str, expected: Parts) -> None:
    """Unfolding (as the email package's default policy does) changes nothing."""
    assert parse_received(" ".join(value.split())) == Hop(*expected, line=0)


def test_parse_received_never_raises_on_random_text() -> None:
    rng = random.Random(4711)
    alphabet = "from by with ()[];:.@=helo IPv6 \t\r\n0123456789abcdef%\\"
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        hop = parse_received(value)
        if hop.from_ip is not None:
            ipaddress.ip_address(hop.from_ip)  # only real addresses come out


# --- the walk from the top -------------------------------------------------------------------

CORP = {"trusted_relays": ["mx1.corp.example", "mailbox.corp.example"],
        "internal_networks": ["10.0.0.0/8", "2001:db8:ffff::/48"]}
NONE: dict[str, list[str]] = {"trusted_relays": [], "internal_networks": []}

MAILBOX = "from mx1.corp.example (mx1.corp.example [10.0.0.5]) by mailbox.corp.example with LMTP id x; Mon"
MX1_FROM = "from {name} ({name} [{ip}]) by mx1.corp.example (Postfix) with ESMTP id y; Mon"

# (id, headers, trust, expected ip, expected boundary line, reason must contain)
WALKS: list[tuple[str, list[str], dict[str, list[str]], str | None, int | None, str]] = [
    ("one-hop", [MX1_FROM.format(name="mail.example.net", ip="203.0.113.9")], CORP,
     "203.0.113.9", 1, "handed to mx1.corp.example by 203.0.113.9"),
    ("internal-chain", [MAILBOX, MX1_FROM.format(name="mail.example.net", ip="203.0.113.9")], CORP,
     "203.0.113.9", 2, "handed to mx1.corp.example by 203.0.113.9"),
    ("forged-below-with-internal-ip",
     [MAILBOX, MX1_FROM.format(name="bot.example", ip="198.51.100.66"),
      "from fake.corp.example (fake.corp.example [10.9.9.9]) by bot.example; Mon",
      "from innocent.example (innocent.example [192.0.2.1]) by fake.corp.example; Mon"], CORP,
     "198.51.100.66", 2, "by 198.51.100.66"),
    ("forged-below-claiming-our-relay",
     [MX1_FROM.format(name="bot.example", ip="198.51.100.66"),
      "from mx1.corp.example (mx1.corp.example [10.0.0.5]) by mx1.corp.example (Postfix); Mon",
      "from innocent.example (innocent.example [192.0.2.1]) by mx1.corp.example (Postfix); Mon"], CORP,
     "198.51.100.66", 1, "by 198.51.100.66"),
    ("downstream-headers-above-skipped",
     ["from mailbox.corp.example by laptop.corp.example with POP3 (fetchmail-6.4.37); Mon",
      MAILBOX, MX1_FROM.format(name="mail.example.net", ip="203.0.113.9")], CORP,
     "203.0.113.9", 3, "203.0.113.9"),
    ("ipv6-origin", [MAILBOX, "from mail.example.org (mail.example.org [IPv6:2001:db8:1::25]) by "
                              "mx1.corp.example (Postfix) with ESMTP id z; Mon"], CORP,
     "2001:db8:1::25", 2, "by 2001:db8:1::25"),
    ("ipv6-internal-then-mapped", [
        "from mx1.corp.example ([2001:db8:ffff::5]) by mailbox.corp.example with LMTP; Mon",
        "from a.example ([::ffff:203.0.113.4]) by mx1.corp.example; Mon"], CORP,
     "203.0.113.4", 2, "by 203.0.113.4"),
    ("every-relay-internal", [MAILBOX, "from laptop.corp.example (laptop.corp.example [10.20.0.9]) by "
                                       "mx1.corp.example (Postfix) with ESMTPSA; Mon"], CORP,
     None, 2, "every relay is internal"),
    ("local-submission", [MAILBOX, "by mx1.corp.example (Postfix, from userid 1001) id 4; Mon"], CORP,
     None, 1, "every relay is internal"),
    ("untrusted-names-no-ip", [MAILBOX, "from stranger.example by mx1.corp.example with SMTP; Mon"], CORP,
     None, 2, "first untrusted hop names no IP"),
    ("named-internal-no-ip", ["from mx1.corp.example by mailbox.corp.example with LMTP; Mon",
                              MX1_FROM.format(name="mail.example.net", ip="192.0.2.8")], CORP,
     "192.0.2.8", 2, "by 192.0.2.8"),
    ("private-beyond-boundary", [MAILBOX, MX1_FROM.format(name="nat.example", ip="192.168.7.7")], CORP,
     None, 2, "private address"),
    ("no-trusted-header", [MX1_FROM.format(name="a.example", ip="203.0.113.9").replace("mx1.", "mx9.")],
     CORP, None, None, "no Received header was added by a trusted relay"),
    ("no-header", [], CORP, None, None, "no Received header"),
    ("junk-only-no-config", ["garbage", "(qmail 1 invoked from network); Mon"], NONE,
     None, None, "no Received header names a sender"),
    ("no-config-top-header", [MX1_FROM.format(name="a.example", ip="203.0.113.9"),
                              MX1_FROM.format(name="b.example", ip="198.51.100.1")], NONE,
     "203.0.113.9", 1, "handed to mx1.corp.example by 203.0.113.9"),
    ("no-config-private-top", [MX1_FROM.format(name="a.example", ip="10.1.1.1"),
                               MX1_FROM.format(name="b.example", ip="198.51.100.1")], NONE,
     None, 1, "private address"),
    ("networks-only", [MAILBOX, MX1_FROM.format(name="b.example", ip="198.51.100.1")],
     {"trusted_relays": [], "internal_networks": ["10.0.0.0/8"]}, "198.51.100.1", 2, "by 198.51.100.1"),
    ("loopback-amavis", [
        "from localhost (localhost [127.0.0.1]) by mx1.corp.example (Postfix) with ESMTP id 1; Mon",
        "from mx1.corp.example ([127.0.0.1]) by localhost (amavisd-new, port 10024) with ESMTP id 2; Mon",
        MX1_FROM.format(name="bot.example", ip="203.0.113.66")], CORP, "203.0.113.66", 3, "203.0.113.66"),
    ("qmail-invoked-noise", [
        "(qmail 28314 invoked from network); 15 Jan 2024 09:12:01 -0000",
        "from unknown (HELO mail.example.net) (203.0.113.9) by mx1.corp.example with SMTP; 15 Jan 2024"],
     CORP, "203.0.113.9", 2, "by 203.0.113.9"),
    ("relay-address-listed", [
        MX1_FROM.format(name="dmz.corp.example", ip="198.51.100.20"),
        "from a.example (a.example [203.0.113.9]) by dmz.corp.example (Postfix); Mon"],
     {"trusted_relays": ["mx1.corp.example", "198.51.100.20"], "internal_networks": []},
     "203.0.113.9", 2, "handed to dmz.corp.example by 203.0.113.9"),
    ("relay-name-is-not-its-address", [
        MX1_FROM.format(name="dmz.corp.example", ip="198.51.100.20"),
        "from a.example (a.example [203.0.113.9]) by dmz.corp.example (Postfix); Mon"],
     {"trusted_relays": ["mx1.corp.example", "dmz.corp.example"], "internal_networks": []},
     "198.51.100.20", 1, "by 198.51.100.20"),
    ("domain-covers-subdomains", [MAILBOX, MX1_FROM.format(name="a.example", ip="203.0.113.9")],
     {"trusted_relays": ["corp.example"], "internal_networks": ["10.0.0.0/8"]}, "203.0.113.9", 2, ""),
    ("wildcard", [MAILBOX, MX1_FROM.format(name="a.example", ip="203.0.113.9")],
     {"trusted_relays": ["*.corp.example"], "internal_networks": ["10.0.0.0/8"]}, "203.0.113.9", 2, ""),
    ("lookalike-domain-untrusted", [MX1_FROM.format(name="a.example", ip="203.0.113.9")
                                    .replace("mx1.corp.example", "mx1.notcorp.example")],
     {"trusted_relays": ["corp.example"], "internal_networks": []}, None, None, "no Received header was"),
]


@pytest.mark.parametrize(("headers", "trust", "ip", "line", "reason"),
                         [w[1:] for w in WALKS], ids=[w[0] for w in WALKS])
def test_find_origin(headers: list[str], trust: dict[str, list[str]], ip: str | None, line: int | None,
                     reason: str) -> None:
    origin = find_origin(headers, **trust)
    assert origin.ip == ip
    assert (origin.hop.line if origin.hop else None) == line
    assert reason in origin.reason


def test_boundary_accepts_policy_network_objects() -> None:
    boundary = TrustedBoundary(["mx1.corp.example", ipaddress.ip_network("198.51.100.0/28")],
                               [ipaddress.ip_network("10.0.0.0/8"), " 2001:db8:ffff::/48 "])
    assert boundary.is_trusted_ip("198.51.100.3") and not boundary.is_trusted_ip("198.51.100.16")
    assert boundary.is_trusted_ip("2001:db8:ffff:1::1") and boundary.is_trusted_ip("127.0.0.2")
    assert not boundary.is_trusted_ip("not an address")
    assert boundary.is_relay_name("mx1.corp.example") and boundary.is_relay_name("a.mx1.corp.example")
    assert not boundary.is_relay_name("corp.example") and not boundary.is_relay_name("xmx1.corp.example")


def test_wildcard_is_subdomains_only() -> None:
    boundary = TrustedBoundary(["*.corp.example"])
    assert boundary.is_relay_name("mx1.corp.example") and not boundary.is_relay_name("corp.example")


@pytest.mark.parametrize(("relays", "networks", "field"), [
    (["mx1 corp.example"], [], "email.trusted_relays"),
    (["*"], [], "email.trusted_relays"),
    (["mx1.corp.example"], ["10.0.0.0/33"], "email.internal_networks"),
    (["mx1.corp.example"], ["intranet"], "email.internal_networks"),
])
def test_bad_configuration_names_its_field(relays: list[str], networks: list[str], field: str) -> None:
    with pytest.raises(InputError) as raised:
        TrustedBoundary(relays, networks)
    assert raised.value.problems[0].field == field


# --- whole messages --------------------------------------------------------------------------

MESSAGES: list[tuple[str, bytes, dict[str, list[str]], str | None, str]] = [
    ("postfix-mailbox-and-sender-relays", b"""\
Return-Path: <news@shop.example.net>
Delivered-To: alice@corp.example
Received: from mx1.corp.example (mx1.corp.example [10.0.0.5])
\tby mailbox.corp.example with LMTP
\tid 6Jd0Kx2GpWVhLQAA0J78UA
\t(envelope-from <news@shop.example.net>)
\tfor <alice@corp.example>; Mon, 15 Jan 2024 09:12:03 +0000
Received: from out.shop.example.net (out.shop.example.net [203.0.113.9])
\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)
\t(No client certificate requested)
\tby mx1.corp.example (Postfix) with ESMTPS id 4TQ2Xk1v2Wz9sQ
\tfor <alice@corp.example>; Mon, 15 Jan 2024 09:12:01 +0000 (UTC)
Received: from app01.shop.example.net (app01.shop.example.net [192.0.2.10])
\tby out.shop.example.net (Postfix) with ESMTP id 4TQ2Xj
\tfor <alice@corp.example>; Mon, 15 Jan 2024 09:12:00 +0000 (UTC)
From: Shop <news@shop.example.net>
To: alice@corp.example
Subject: Deals
Message-ID: <a1@shop.example.net>

Hello http://shop.example.net/deal
""", CORP, "203.0.113.9", "handed to mx1.corp.example by 203.0.113.9"),
    ("crlf-folded-exim", (
        b"Received: from mx1.corp.example ([10.0.0.5])\r\n"
        b"        by mailbox.corp.example with LMTP id Q; Mon, 15 Jan 2024 09:12:03 +0000\r\n"
        b"Received: from dsl-198-51-100-3.isp.example\r\n"
        b"\t([198.51.100.3]:41820\r\n"
        b"\t helo=router.lan)\r\n"
        b"\tby mx1.corp.example with esmtp (Exim 4.96)\r\n"
        b"\t(envelope-from <x@isp.example>)\r\n"
        b"\tid 1rPq3w-0001Ab-Q0\r\n"
        b"\tfor alice@corp.example;\r\n"
        b"\tMon, 15 Jan 2024 09:12:01 +0000\r\n"
        b"Subject: hi\r\n\r\nbody\r\n"), CORP, "198.51.100.3", "by 198.51.100.3"),
    ("forged-below-trusted-relay", b"""\
Received: from bot.example (bot.example [198.51.100.66])
\tby mx1.corp.example (Postfix) with SMTP id 4TQ9; Mon, 15 Jan 2024 09:12:01 +0000
Received: from intranet.corp.example (intranet.corp.example [10.1.1.1])
\tby mailhub.example.com (Postfix) with ESMTP id FAKE1; Mon, 15 Jan 2024 09:11:00 +0000
Received: from bank.example (bank.example [192.0.2.200])
\tby mx1.corp.example (Postfix) with ESMTP id FAKE2; Mon, 15 Jan 2024 09:10:00 +0000
Subject: Your account

Click http://192.0.2.200/login
""", CORP, "198.51.100.66", "handed to mx1.corp.example by 198.51.100.66"),
    ("ipv6-origin-exim", b"""\
Received: from [2001:db8:5::1] (helo=camera.example.net)
\tby mx1.corp.example with esmtp (Exim 4.97)
\t(envelope-from <cam@camera.example.net>)
\tid 1rPq3y-0000Zz-1A; Mon, 15 Jan 2024 09:12:01 +0000
Subject: snapshot

see attachment
""", CORP, "2001:db8:5::1", "by 2001:db8:5::1"),
    ("no-received-at-all", b"""\
From: someone@example.org
To: alice@corp.example
Subject: composed locally

hi
""", CORP, None, "no Received header"),
    ("non-utf8-header-bytes", (
        b"Received: from mx1.corp.example (mx1.corp.example [10.0.0.5])\n"
        b"\tby mailbox.corp.example with LMTP id Q; Mon, 15 Jan 2024\n"
        b"Received: from m\xe4il.example (unknown [203.0.113.44]) (Gr\xfc\xdfe \xff\xfe)\n"
        b"\tby mx1.corp.example (Postfix) with ESMTP id 4TR; Mon, 15 Jan 2024\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe?= \xe9t\xe9\n"
        b"Content-Type: text/plain; charset=iso-8859-1\n\n"
        b"Gr\xfc\xdfe\n"), CORP, "203.0.113.44", "by 203.0.113.44"),
    ("office365-chain", (
        b"Received: from DM6PR11MB4563.namprd11.prod.outlook.com (2001:db8:ffff:1a8::14) by\r\n"
        b" PH0PR11MB5000.namprd11.prod.outlook.com with HTTPS; Mon, 15 Jan 2024 09:12:05\r\n +0000\r\n"
        b"Received: from BN6PR11CA0012.namprd11.prod.outlook.com (2001:db8:ffff:4a::22) by\r\n"
        b" DM6PR11MB4563.namprd11.prod.outlook.com (2001:db8:ffff:1a8::14) with Microsoft SMTP\r\n"
        b" Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7181.19;\r\n"
        b" Mon, 15 Jan 2024 09:12:04 +0000\r\n"
        b"Received: from BN8NAM11FT012.eop-nam11.prod.protection.outlook.com\r\n"
        b" (2001:db8:ffff:40b::42) by BN6PR11CA0012.outlook.office365.com\r\n"
        b" (2001:db8:ffff:4a::22) with Microsoft SMTP Server (version=TLS1_2,\r\n"
        b" cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7181.25 via Frontend\r\n"
        b" Transport; Mon, 15 Jan 2024 09:12:03 +0000\r\n"
        b"Received: from nas.example.net (203.0.113.23) by\r\n"
        b" BN8NAM11FT012.mail.protection.outlook.com (10.13.176.50) with Microsoft SMTP\r\n"
        b" Server id 15.20.7181.13 via Frontend Transport; Mon, 15 Jan 2024 09:12:02 +0000\r\n"
        b"Received: from relay.example.org (relay.example.org [192.0.2.1]) by nas.example.net; Mon\r\n"
        b"Subject: invoice\r\n\r\nbody\r\n"),
     {"trusted_relays": ["outlook.com", "office365.com"], "internal_networks": ["2001:db8:ffff::/48"]},
     "203.0.113.23", "handed to bn8nam11ft012.mail.protection.outlook.com by 203.0.113.23"),
    ("gmail-workspace", b"""\
Received: by 2002:a05:6a10:9e8c:b0:4f1:2345:6789 with SMTP id v12csp1234567pxc;
        Mon, 15 Jan 2024 01:02:04 -0800 (PST)
X-Received: by 2002:a17:906:1234:b0:a2c:1111:2222 with SMTP id x1mr123.4.1705309324;
        Mon, 15 Jan 2024 01:02:04 -0800 (PST)
Received: from tv.example.net (tv.example.net. [198.51.100.150])
        by mx.google.com with ESMTPS id a1si1234567wrx.12.2024.01.15.01.02.03
        for <bob@example.org>
        (version=TLS1_2 cipher=ECDHE-ECDSA-AES128-GCM-SHA256 bits=128/128);
        Mon, 15 Jan 2024 01:02:03 -0800 (PST)
Received: from [192.168.1.50] (unknown [10.0.0.3]) by tv.example.net; Mon
Subject: promo

x
""", {"trusted_relays": ["mx.google.com"], "internal_networks": []},
     "198.51.100.150", "handed to mx.google.com by 198.51.100.150"),
    ("qmail-invoked", b"""\
Received: (qmail 28315 invoked by uid 89); 15 Jan 2024 09:12:02 -0000
Received: from unknown (HELO 203.0.113.250) (192.0.2.77)
  by mx1.corp.example with SMTP; 15 Jan 2024 09:12:01 -0000
Subject: x

y
""", CORP, "192.0.2.77", "by 192.0.2.77"),
    ("amavis-loopback-lf", b"""\
Received: from localhost (localhost [127.0.0.1])
\tby mx1.corp.example (Postfix) with ESMTP id 4TQA; Mon, 15 Jan 2024 09:12:02 +0000
Received: from mx1.corp.example ([127.0.0.1])
\tby localhost (mx1.corp.example [127.0.0.1]) (amavisd-new, port 10024)
\twith ESMTP id aBcD; Mon, 15 Jan 2024 09:12:02 +0000
Received: from dvr.example.net (dvr.example.net [IPv6:::ffff:203.0.113.5])
\tby mx1.corp.example (Postfix) with ESMTP id 4TQB; Mon, 15 Jan 2024 09:12:01 +0000
Subject: x

y
""", CORP, "203.0.113.5", "by 203.0.113.5"),
    ("every-relay-internal", b"""\
Received: from EXCH01.corp.example ([::1]) by EXCH01.corp.example ([::1]) with mapi id
 15.01.2507.035; Mon, 15 Jan 2024 09:12:01 +0000
Subject: internal memo

x
""", {"trusted_relays": ["corp.example"], "internal_networks": []}, None, "every relay is internal"),
    ("broken-headers", b"Received: from\x00\x01 ((((\nReceived\nnot a header at all\n\n\xff\xfe", CORP,
     None, "no Received header"),
    ("empty", b"", CORP, None, "no Received header"),
]


def test_enough_messages() -> None:
    assert len(MESSAGES) >= 8


@pytest.mark.parametrize(("raw", "trust", "ip", "reason"), [m[1:] for m in MESSAGES],
                         ids=[m[0] for m in MESSAGES])
def test_origin_of_message(raw: bytes, trust: dict[str, list[str]], ip: str | None, reason: str) -> None:
    origin = origin_of_message(raw, **trust)
    assert isinstance(origin, Origin)
    assert origin.ip == ip
    assert reason in origin.reason
    origin.reason.encode("utf-8")  # printable in logs and JSON, whatever bytes the mail held
    if origin.hop is not None:
        for part in origin.hop[:4]:
            assert part is None or isinstance(part.encode("utf-8"), bytes)


# Deep, unclosed or endless comments a sender can write: (make a value of n units, what it parses to).
HOSTILE: list[tuple[str, Callable[[int], str], Callable[[int], Hop]]] = [
    ("unclosed parentheses", lambda n: "from a " + "(" * n, lambda n: Hop("a", None, None, None, 0)),
    ("many comments", lambda n: "from a " + "(x) " * n + "by b", lambda n: Hop("a", None, None, "b", 0)),
    ("unclosed brackets", lambda n: "from " + "[" * n, lambda n: Hop("[" * n, None, None, None, 0)),
    ("endless helo", lambda n: "from a (" + "helo=x " * n + ") by b", lambda n: Hop("a", None, "x", "b", 0)),
    ("escaped parentheses", lambda n: "from a (" + "\\)" * n, lambda n: Hop("a", None, None, None, 0)),
]


def _steps(value: str) -> int:
    """How many Python lines and calls parse_received(value) runs: its cost, counted, not timed."""
    steps = 0

    def count(frame: FrameType, event: str, arg: Any) -> Any:  # a trace function: returns itself
        nonlocal steps
        steps += 1
        return count

    previous = sys.gettrace()
    sys.settrace(count)
    try:
        parse_received(value)
    finally:
        sys.settrace(previous)
    return steps


@pytest.mark.parametrize(("make", "parsed"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_sizes_stay_linear(make: Callable[[int], str], parsed: Callable[[int], Hop]) -> None:
    """Four times the input costs at most four times the steps (a quadratic parse would take sixteen)."""
    small, large = _steps(make(1_000)), _steps(make(4_000))
    assert large <= 4 * small + 100, (small, large)
    assert parse_received(make(100_000)) == parsed(100_000)  # and the parse of a huge one is right


def test_origin_of_message_never_raises_on_garbage() -> None:
    rng = random.Random(1405)
    seed = MESSAGES[0][1]
    for _ in range(300):
        data = bytearray(seed)
        for _ in range(rng.randrange(1, 40)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.randrange(len(data))
        origin = origin_of_message(bytes(data[:cut]), **CORP)
        assert origin.ip is None or ipaddress.ip_address(origin.ip)


@pytest.mark.parametrize("greeting", [
    "mail-wr1-f54.google.com (mail-wr1-f54.google.com [209.85.221.54])",  # a record of a provider's relay
    "x (209.85.221.54)",
    "x ([209.85.221.54] helo=y)",
])
def test_a_greeting_of_several_words_cannot_choose_the_origin(greeting: str) -> None:
    # Postfix takes a HELO of several words as one name and writes its own record after it.
    header = (f"from {greeting} (dsl-7.example.net [198.51.100.7])\n\tby mx1.corp.example (Postfix) "
              "with ESMTP id 4TQ5; Mon, 15 Jan 2024 09:12:01 +0000")
    origin = find_origin([header], trusted_relays=["mx1.corp.example"], internal_networks=[])
    assert origin.ip == "198.51.100.7"
