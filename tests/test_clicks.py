"""Click links through the real proxy: verified, judged with the mail's origin, followed hop by hop.

Most tests share one proxy (`proxy`); each reads only the audit records of its own click,
found by the e-mail origin or the reference its page shows.
"""

from __future__ import annotations

import email
import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clickguard.mail.links import verify_click_link
from clickguard.tokens import load_or_create_key
from tests.harness import (
    HTML,
    THINGBOT_ORIGIN,
    Proxy,
    ProxyPool,
    click_link,
    continue_link,
    start_proxy,
    upstream,
    write_policy,
)

POLICY = """\
feeds:
  - {name: thingbots, format: ip, path: thingbots.txt}
"""


@pytest.fixture
def proxy(shared_proxy: ProxyPool) -> Proxy:
    """The module's proxy; its feed lists the Thingbot origin address and 127.0.0.3 (no target uses it)."""
    return shared_proxy(POLICY, files={"thingbots.txt": f"{THINGBOT_ORIGIN}\n127.0.0.3\n"})


def from_origin(proxy: Proxy, origin: str) -> list[dict[str, Any]]:
    """The audit records of clicks on links from mail with this origin (each test uses its own)."""
    return [record for record in proxy.audit() if record.get("origin_ip") == origin]


def test_clean_click_redirects_and_the_hop_carries_the_click(proxy: Proxy, certs: Path) -> None:
    with upstream("127.0.0.2") as site:
        target = f"{site.base}/reset-password?token=one-time"
        r = proxy.get(click_link(certs, target, "192.0.2.10"), HTML)
        assert r.status == 303 and r.headers["location"] == target
        assert site.requests == []  # the proxy never fetched the target itself
        r = proxy.get(target, HTML)
        assert r.status == 200 and site.requests == ["/reset-password?token=one-time"]
        click, hop = from_origin(proxy, "192.0.2.10")
        assert (click["event"], click["hop"], click["action"]) == ("click", 0, "allow")
        assert (hop["event"], hop["hop"], hop["click_id"]) == ("hop", 1, click["ref"])
        assert click["origin_ip"] == hop["origin_ip"] == "192.0.2.10"


def test_click_from_thingbot_origin_warns_and_continues(proxy: Proxy, certs: Path) -> None:
    with upstream("127.0.0.2") as site:
        target = f"{site.base}/invoice"
        r = proxy.get(click_link(certs, target, THINGBOT_ORIGIN), HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "warn"
        assert "origin.thingbot" in r.text and THINGBOT_ORIGIN in r.text
        r = proxy.get(continue_link(r.text), HTML)
        assert r.status == 303 and r.headers["location"] == target
        assert proxy.get(target, HTML).status == 200
        records = from_origin(proxy, THINGBOT_ORIGIN)
        assert [(a["event"], a["action"]) for a in records] == [
            ("click", "warn"), ("continue", "allow"), ("hop", "allow")]
        assert records[-1]["origin_ip"] == THINGBOT_ORIGIN
        assert records[-1]["click_id"] == records[0]["ref"]


def test_stricter_option_blocks_thingbot_mail_to_unknown_hosts(tmp_path: Path, certs: Path) -> None:
    """origin.unknown_landing: block: Thingbot mail may link to a known domain (warn), nothing else."""
    (tmp_path / "thingbots.txt").write_text(f"{THINGBOT_ORIGIN}\n")
    policy = write_policy(tmp_path, POLICY + "actions: {origin.unknown_landing: block}\n"
                                             "email: {known_domains: [localhost]}\n")
    proxy = start_proxy(tmp_path, policy, certs)
    try:
        with upstream("127.0.0.2") as site:
            r = proxy.get(click_link(certs, f"{site.base}/invoice", THINGBOT_ORIGIN), HTML)
            assert r.headers["x-clickguard-action"] == "block"
            assert "origin.unknown_landing" in r.text
            known = f"http://localhost:{site.port}/invoice"
            r = proxy.get(click_link(certs, known, THINGBOT_ORIGIN), HTML)
            assert r.headers["x-clickguard-action"] == "warn"
            assert [a["reasons"] for a in proxy.audit()] == [
                ["origin.thingbot", "origin.unknown_landing"], ["origin.thingbot"]]
            assert site.requests == []
    finally:
        proxy.stop()


def test_click_to_listed_target_is_blocked(proxy: Proxy, certs: Path) -> None:
    r = proxy.get(click_link(certs, "http://127.0.0.3:8080/Mozi.m", None), HTML)
    assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
    assert proxy.audit_of_ref(r.headers["x-clickguard-ref"])[-1]["reasons"] == ["landing.thingbot"]


@pytest.mark.parametrize("damage", [
    lambda link: link.replace("/invoice", "/invoices"),   # target changed
    lambda link: link[:40] + ("A" if link[40] != "A" else "B") + link[41:],  # token changed
    lambda link: link.split("/v1/")[0] + "/v1/",          # truncated
])
def test_tampered_click_link_is_blocked(proxy: Proxy, certs: Path, damage) -> None:
    with upstream("127.0.0.2") as site:
        r = proxy.get(damage(click_link(certs, f"{site.base}/invoice", None)), HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
        assert "link.bad_signature" in r.text
        assert site.requests == []
        assert proxy.audit_of_ref(r.headers["x-clickguard-ref"])[-1]["reasons"] == ["link.bad_signature"]


def test_redirect_chain_after_a_click_keeps_the_origin(proxy: Proxy, certs: Path) -> None:
    with upstream("127.0.0.4") as final:
        routes = {"/start": (302, {"Location": "/next"}, b""),
                  "/next": (301, {"Location": f"{final.base}/landing"}, b"")}
        with upstream("127.0.0.2", routes) as site:
            r = proxy.get(click_link(certs, f"{site.base}/start", "192.0.2.77"), HTML)
            for _ in range(3):  # the browser follows each redirect through the proxy
                r = proxy.get(r.headers["location"] if r.headers["location"].startswith("http")
                              else site.base + r.headers["location"], HTML)
            assert r.status == 200 and r.body == final.body_for("/landing")
    records = from_origin(proxy, "192.0.2.77")
    assert [(a["event"], a.get("hop")) for a in records] == [
        ("click", 0), ("hop", 1), ("hop", 2), ("hop", 3)]
    assert {a["click_id"] for a in records[1:]} == {records[0]["ref"]}
    assert {a["origin_ip"] for a in records} == {"192.0.2.77"}
    assert records[-1]["url"] == f"{final.base}/landing"


def test_meta_refresh_and_script_hops_after_a_click_keep_the_origin(proxy: Proxy, certs: Path) -> None:
    """A landing page that moves on by meta refresh, then by script: both hops carry the click."""
    with upstream("127.0.0.4") as final:
        routes = {
            "/start": (200, {"Content-Type": "text/html"},
                       b'<meta http-equiv="refresh" content="0;url=/step">'),
            "/step": (200, {"Content-Type": "text/html"},
                      f"<script>location.replace('{final.base}/landing')</script>".encode()),
        }
        with upstream("127.0.0.2", routes) as site:
            r = proxy.get(click_link(certs, f"{site.base}/start", "192.0.2.78"), HTML)
            assert proxy.get(r.headers["location"], HTML).status == 200
            assert proxy.get(f"{site.base}/step", HTML).status == 200  # what the browser does next
            assert proxy.get(f"{final.base}/landing", HTML).status == 200
    hops = [(a["event"], a.get("hop"), a.get("origin_ip")) for a in from_origin(proxy, "192.0.2.78")]
    assert hops == [("click", 0, "192.0.2.78"), ("hop", 1, "192.0.2.78"), ("hop", 2, "192.0.2.78"),
                    ("hop", 3, "192.0.2.78")]


MAIL = b"""\
Received: from mx1.corp.example (mx1.corp.example [10.0.0.5])
\tby mailbox.corp.example with LMTP; Mon, 15 Jan 2024 09:12:03 +0000
Received: from router.example.net (dsl-7.example.net [198.51.100.7])
\tby mx1.corp.example (Postfix) with ESMTP id 4TQ5; Mon, 15 Jan 2024 09:12:01 +0000
Received: from forged.example ([203.0.113.250]) by forged.example; Mon, 15 Jan 2024 09:11:00 +0000
From: Parcel Service <info@parcel.example>
To: alice@corp.example
Subject: Your parcel
Message-ID: <abc123@parcel.example>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Track it <a href=3D"TARGET">here</a>.</p>
"""


def test_mail_rewritten_by_the_cli_then_clicked_through_the_proxy(tmp_path: Path, certs: Path) -> None:
    """A Thingbot-origin mail: rewrite with `clickguard rewrite`, click in the proxy, warned."""
    (tmp_path / "thingbots.txt").write_text(f"{THINGBOT_ORIGIN}\n")
    policy = write_policy(tmp_path, POLICY + "email: {trusted_relays: [mx1.corp.example], "
                                             "internal_networks: [10.0.0.0/8]}\n")
    with upstream("127.0.0.2") as site:
        target = f"{site.base}/track"
        (tmp_path / "in.eml").write_bytes(MAIL.replace(b"TARGET", target.encode()))
        done = subprocess.run(
            [sys.executable, "-m", "clickguard.cli", "rewrite", str(tmp_path / "in.eml"), "-o",
             str(tmp_path / "out.eml"), "--policy", str(policy), "--certs", str(certs)],
            capture_output=True, text=True, check=True, cwd=tmp_path)
        assert "1 messages, 1 links rewritten, 0 passed through unchanged" in done.stderr
        html = email.message_from_bytes((tmp_path / "out.eml").read_bytes()).get_payload(decode=True)
        assert isinstance(html, bytes)
        found = re.search(rb'href="([^"]+)"', html)
        assert found is not None
        link = found.group(1).decode()
        assert link.startswith("https://clickguard.local/v1/") and link.endswith(target)
        decoded = subprocess.run([sys.executable, "-m", "clickguard.cli", "decode", "--json", link,
                                  "--certs", str(certs), "--policy", str(policy)],
                                 capture_output=True, text=True, check=True, cwd=tmp_path)
        context = json.loads(decoded.stdout)["context"]
        assert context["origin_ip"] == THINGBOT_ORIGIN  # not the forged header below the relay
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            r = proxy.get(link, HTML)
            assert r.headers["x-clickguard-action"] == "warn"  # default policy: origin.thingbot warns
            # The relay's header also shows a home line (a "dsl" reverse name, a router's HELO).
            assert proxy.audit()[-1]["reasons"] == ["origin.thingbot", "origin.home_line",
                                                    "origin.unknown_landing"]
            assert proxy.audit()[-1]["origin_ip"] == THINGBOT_ORIGIN
        finally:
            proxy.stop()


def test_click_over_tls_as_a_browser_sends_it(proxy: Proxy, certs: Path) -> None:
    """Browsers CONNECT to the click host and send the click inside TLS (intercepted by the proxy)."""
    link = click_link(certs, "http://127.0.0.2:8000/doc", None)
    path = "/" + link.split("/", 3)[3]
    r = proxy.get_tls("clickguard.local", 443, path, HTML)
    assert r.status == 303 and r.headers["location"] == "http://127.0.0.2:8000/doc"
    [record] = [a for a in proxy.audit() if a["url"] == "http://127.0.0.2:8000/doc"]  # no upstream has 8000
    assert record["event"] == "click"


WEBMAIL_PAGE = (
    '<html><head><title>Inbox</title></head><body>\n<div class="msg">Hello, see '
    '<a href="https://shop.example/offer?a=1&amp;b=2">the offer</a>, '
    '<a href="#reply">reply</a>, <a href="mailto:x@shop.example">mail</a>.</div>\n</body></html>\n'
)


def test_webmail_pages_get_click_links_other_pages_do_not(tmp_path: Path, certs: Path) -> None:
    (tmp_path / "thingbots.txt").write_text("")
    policy = write_policy(tmp_path, POLICY + "click_links: {rewrite_hosts: [localhost]}\n")
    page = (200, {"Content-Type": "text/html; charset=utf-8"}, WEBMAIL_PAGE.encode())
    with upstream("127.0.0.1", {"/inbox": page}) as webmail, upstream("127.0.0.2", {"/inbox": page}) as other:
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            rewritten = proxy.get(f"http://localhost:{webmail.port}/inbox", HTML).text
            untouched = proxy.get(f"{other.base}/inbox", HTML).text
        finally:
            proxy.stop()
    assert untouched == WEBMAIL_PAGE
    links = re.findall(r'href="([^"]+)"', rewritten)
    assert links[0].startswith("https://clickguard.local/v1/")
    assert links[1:] == ["#reply", "mailto:x@shop.example"]
    key = load_or_create_key(certs / "clickguard.key")
    target, _context = verify_click_link(html.unescape(links[0]), key, click_host="clickguard.local")
    assert target == "https://shop.example/offer?a=1&b=2"
    # everything but the rewritten href is byte for byte the page the server sent
    assert rewritten.replace(links[0], "X") == WEBMAIL_PAGE.replace(
        "https://shop.example/offer?a=1&amp;b=2", "X")


def test_a_webmail_page_that_is_not_utf8_gets_every_link_wrapped(tmp_path: Path, certs: Path) -> None:
    """A byte that is not UTF-8 in one href (mitmproxy keeps it as a lone surrogate) neither stops
    the page's rewriting nor lets that link through unchecked: it is wrapped as the browser reads it."""
    (tmp_path / "thingbots.txt").write_text("")
    policy = write_policy(tmp_path, POLICY + "click_links: {rewrite_hosts: [localhost]}\n")
    body = (b'<p>caf\xe9 <a href="http://bad-byte.example/\xff">x</a> '
            b'<a href="https://shop.example/offer">y</a></p>\n')
    page = (200, {"Content-Type": "text/html; charset=utf-8"}, body)
    with upstream("127.0.0.1", {"/inbox": page}) as webmail:
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            rewritten = proxy.get(f"http://localhost:{webmail.port}/inbox", HTML).body
        finally:
            proxy.stop()
    links = re.findall(rb'href="([^"]+)"', rewritten)
    assert len(links) == 2 and all(link.startswith(b"https://clickguard.local/v1/") for link in links)
    key = load_or_create_key(certs / "clickguard.key")
    targets = [verify_click_link(link.decode(), key, click_host="clickguard.local")[0] for link in links]
    assert targets == ["http://bad-byte.example/\ufffd", "https://shop.example/offer"]
    assert rewritten.startswith(b"<p>caf\xe9 <a href=")  # the text's own bytes are kept as they were


@pytest.mark.parametrize(("email_policy", "expected_origin"), [
    # Mail reaches most organisations through a relay on a private address: by default that is ours.
    ("email: {trusted_relays: [mailbox.corp.example]}\n", THINGBOT_ORIGIN),
    ("email: {trusted_relays: [mailbox.corp.example], private_relays_internal: false}\n", None),
], ids=["private-relay-internal-by-default", "turned-off"])
def test_a_relay_on_a_private_address_counts_as_internal_by_default(
        tmp_path: Path, certs: Path, email_policy: str, expected_origin: str | None) -> None:
    """Only the mailbox server is named; mx1 at 10.0.0.5 is trusted for its private address alone."""
    (tmp_path / "thingbots.txt").write_text(f"{THINGBOT_ORIGIN}\n")
    policy = write_policy(tmp_path, POLICY + email_policy)
    (tmp_path / "in.eml").write_bytes(MAIL.replace(b"TARGET", b"http://shop.example/track"))
    cli = [sys.executable, "-m", "clickguard.cli"]
    subprocess.run([*cli, "rewrite", str(tmp_path / "in.eml"), "-o", str(tmp_path / "out.eml"),
                    "--policy", str(policy), "--certs", str(certs)],
                   capture_output=True, text=True, check=True, cwd=tmp_path)
    html = email.message_from_bytes((tmp_path / "out.eml").read_bytes()).get_payload(decode=True)
    assert isinstance(html, bytes)
    found = re.search(rb'href="([^"]+)"', html)
    assert found is not None
    decoded = subprocess.run([*cli, "decode", "--json", found.group(1).decode(), "--certs", str(certs),
                              "--policy", str(policy)],
                             capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(decoded.stdout)["context"].get("origin_ip") == expected_origin
