"""IPv6 addresses that carry a listed IPv4 address, through the real proxy: blocked before connecting.

NAT64, 6to4, Teredo, IPv4-mapped and IPv4-compatible addresses reach (or are routed by)
the IPv4 host inside them (`clickguard.urls.embedded_ipv4`), so a Thingbot listed by its
IPv4 address must not pass when a link spells it as IPv6. The listed address here is
127.0.0.77 (7f00:4d in hex), where an upstream listens: the IPv4-mapped form really
reaches it if the proxy lets the request through, the others have no route on the test
machine, so a proxy that let them through would answer 502, not with its block page.
"""

from __future__ import annotations

import pytest

from tests.harness import HTML, Proxy, ProxyPool, upstream

LISTED = "127.0.0.77"
POLICY = """\
feeds:
  - {name: thingbots, format: ip, path: thingbots.txt}
"""
FILES = {"thingbots.txt": f"# test feed\n{LISTED}\n"}

# (IPv6 host, how the finding names it); Teredo's client field is the address with every bit
# flipped (80ff:ffb2), its server field the address as it is.
FORMS = [
    ("64:ff9b::7f00:4d", "the NAT64 form of 127.0.0.77"),
    ("64:ff9b:1::7f00:4d", "the local-use NAT64 form of 127.0.0.77"),
    ("2002:7f00:4d::1", "the 6to4 form of 127.0.0.77"),
    ("::ffff:127.0.0.77", "the IPv4-mapped form of 127.0.0.77"),
    ("::127.0.0.77", "the IPv4-compatible form of 127.0.0.77"),
    ("2001:0:4136:e378:8000:63bf:80ff:ffb2", "the Teredo client 127.0.0.77"),
    ("2001:0:7f00:4d::", "the Teredo server 127.0.0.77"),
]


@pytest.fixture
def proxy(shared_proxy: ProxyPool) -> Proxy:
    """The module's proxy: 127.0.0.77 listed by an ip feed."""
    return shared_proxy(POLICY, files=FILES)


@pytest.mark.parametrize(("host", "words"), FORMS)
def test_ipv6_host_embedding_a_listed_ipv4_is_blocked_before_connecting(proxy: Proxy, host: str,
                                                                         words: str) -> None:
    with upstream(LISTED) as bad:
        r = proxy.get(f"http://[{host}]:{bad.port}/bins/mips", HTML)
        assert r.status == 403, r.text
        assert r.headers["x-clickguard-action"] == "block"
        assert words in r.text
        assert bad.requests == []  # never reached the server
    (record,) = [a for a in proxy.audit() if a["ref"] == r.headers["x-clickguard-ref"]]
    assert (record["action"], record["reasons"]) == ("block", ["landing.thingbot"])
    assert record["url"].endswith(f":{bad.port}/bins/mips")


def test_the_mapped_form_of_an_unlisted_address_still_connects(proxy: Proxy) -> None:
    """The control: the same spelling of an address no feed lists reaches its server."""
    with upstream("127.0.0.78") as good:
        r = proxy.get(f"http://[::ffff:127.0.0.78]:{good.port}/page", HTML)
        assert r.status == 200, r.text
        assert good.requests == ["/page"]
