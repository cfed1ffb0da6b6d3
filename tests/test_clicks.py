"""Click links through the real proxy: verified, judged with the mail's origin, followed hop by hop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickguard.links import ClickContext, make_click_link
from clickguard.tokens import load_or_create_key
from tests.harness import Proxy, start_proxy, upstream
from tests.test_proxy import HTML, continue_link, write_policy

THINGBOT_ORIGIN = "198.51.100.7"
POLICY = """\
feeds:
  - {name: thingbots, format: ip, path: thingbots.txt}
"""


@pytest.fixture
def proxy(tmp_path: Path, certs: Path) -> Iterator[Proxy]:
    """A proxy whose feed lists the Thingbot origin address (and nothing the targets use)."""
    (tmp_path / "thingbots.txt").write_text(f"{THINGBOT_ORIGIN}\n127.0.0.3\n")
    p = start_proxy(tmp_path, write_policy(tmp_path, POLICY), certs)
    yield p
    p.stop()


def click_link(certs: Path, target: str, origin: str | None) -> str:
    """A click link signed with the proxy's key, as `clickguard rewrite` would make it."""
    context = ClickContext(origin, "00112233aabbccdd", "user@example.com", "plain", int(time.time()))
    return make_click_link(target, context, load_or_create_key(certs / "clickguard.key"),
                           click_host="clickguard.local")


def test_clean_click_redirects_and_the_hop_carries_the_click(proxy: Proxy, certs: Path) -> None:
    with upstream("127.0.0.2") as site:
        target = f"{site.base}/reset-password?token=one-time"
        r = proxy.get(click_link(certs, target, "192.0.2.10"), HTML)
        assert r.status == 303 and r.headers["location"] == target
        assert site.requests == []  # the proxy never fetched the target itself
        r = proxy.get(target, HTML)
        assert r.status == 200 and site.requests == ["/reset-password?token=one-time"]
        click, hop = proxy.audit()[-2:]
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
        records = proxy.audit()
        assert [(a["event"], a["action"]) for a in records] == [
            ("click", "warn"), ("continue", "allow"), ("hop", "allow")]
        assert records[-1]["origin_ip"] == THINGBOT_ORIGIN
        assert records[-1]["click_id"] == records[0]["ref"]


def test_click_to_listed_target_is_blocked(proxy: Proxy, certs: Path) -> None:
    r = proxy.get(click_link(certs, "http://127.0.0.3:8080/Mozi.m", None), HTML)
    assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
    assert proxy.audit()[-1]["reasons"] == ["landing.thingbot"]


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
        assert proxy.audit()[-1]["reasons"] == ["link.bad_signature"]


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
    records = proxy.audit()
    assert [(a["event"], a.get("hop")) for a in records] == [
        ("click", 0), ("hop", 1), ("hop", 2), ("hop", 3)]
    assert {a["click_id"] for a in records[1:]} == {records[0]["ref"]}
    assert {a["origin_ip"] for a in records} == {"192.0.2.77"}
    assert records[-1]["url"] == f"{final.base}/landing"
