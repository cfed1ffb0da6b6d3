"""The proxy's hooks in-process, with mitmproxy's own test helpers: no sockets, milliseconds a test.

The real-proxy tests (test_proxy.py, test_inspection.py, test_clicks.py) show the
behaviour end to end; these drive `Clickguard`'s hooks on `tflow` flows inside a
`taddons` context, over a policy in a temporary directory, to pin what the hooks
decide, answer, record and leave in `flow.metadata`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.io import tnetstring
from mitmproxy.test import taddons, tflow, tutils

from clickguard import reasons
from clickguard.decision.check import Decision
from clickguard.decision.verdict import Finding, Verdict
from clickguard.mail.clicks import ClickMark
from clickguard.proxy.addon import Clickguard
from clickguard.proxy.continuation import Continuation, continue_token, read_continue_token
from clickguard.proxy.guard import METADATA_KEY, FlowState, flow_state
from clickguard.tokens import b64url_decode, sign
from clickguard.urls import normalize_url

LISTED = "203.0.113.77"  # in the thingbot feed: blocked
WARNED = "198.51.100.50"  # in the phishing feed, which the policy only warns about
UNLISTED = "192.0.2.10"
CLICK_HOST = "clickguard.local"
CLIENT = "127.0.0.1"  # tflow's client address
PAGE = {"Accept": "text/html"}  # a browser's navigation, which gets an audit record when allowed

POLICY = f"""\
click_host: {CLICK_HOST}
feeds:
  - {{name: bots, format: ip, path: bots.txt, category: thingbot}}
  - {{name: lures, format: ip, path: lures.txt, category: phishing}}
actions:
  landing.phishing: warn
audit:
  log: audit.jsonl
  store: off
"""


@pytest.fixture
async def addon(tmp_path: Path) -> AsyncIterator[Clickguard]:
    """The Clickguard addon configured as `clickguard run` would, on a policy in tmp_path."""
    (tmp_path / "bots.txt").write_text(f"{LISTED}\n")
    (tmp_path / "lures.txt").write_text(f"{WARNED}\n")
    (tmp_path / "policy.yaml").write_text(POLICY)
    guard = Clickguard()
    with taddons.context(guard) as context:  # type: ignore[no-untyped-call]
        context.configure(guard, clickguard_policy=str(tmp_path / "policy.yaml"),
                          clickguard_state_dir=str(tmp_path / "var"), confdir=str(tmp_path / "certs"))
        yield guard
        await guard.done()


def flow_to(url: str, headers: dict[str, str] | None = None) -> http.HTTPFlow:
    """A live flow of a GET request for url, from tflow's client."""
    fields = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    return tflow.tflow(req=http.Request.make("GET", url, b"", http.Headers(fields)))


async def hook(result: Any) -> None:
    """Await what a hook returned, if it returned something to await."""
    if result is not None:
        await result


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    """The records the addon's audit log holds (each is on disk before its hook returns)."""
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def continue_href(page: bytes) -> str | None:
    """The continue link of a warn page, or None if it offers none."""
    found = re.search(rb'id="continue" href="([^"]+)"', page)
    return found[1].decode().replace("&amp;", "&") if found else None


async def test_a_listed_host_gets_the_block_page(addon: Clickguard, tmp_path: Path) -> None:
    flow = flow_to(f"http://{LISTED}/bins/mips", PAGE)
    await hook(addon.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert flow.response.headers["X-Clickguard-Action"] == "block"
    state = flow.metadata[METADATA_KEY]
    assert isinstance(state, FlowState)
    assert state.summary() == {"action": "block", "reasons": [reasons.LANDING_THINGBOT]}
    assert not state.inspect  # a blocked request's answer is our page: nothing to inspect
    (record,) = audit_lines(tmp_path)
    assert (record["event"], record["action"], record["host"], record["reasons"]) == \
        ("decision", "block", LISTED, [reasons.LANDING_THINGBOT])
    assert record["ref"] == flow.response.headers["X-Clickguard-Ref"]


async def test_an_unlisted_host_passes_untouched(addon: Clickguard, tmp_path: Path) -> None:
    flow = flow_to(f"http://{UNLISTED}/", PAGE)
    await hook(addon.request(flow))
    assert flow.response is None
    state = flow_state(flow)
    assert state is not None
    assert (state.verdict.action, state.mark, state.inspect, state.streamed) == ("allow", None, True, False)
    # The navigation's record is written while the request travels; the response waits for it.
    assert state.record is not None
    flow.response = tutils.tresp(headers=http.Headers(content_type="text/plain"), content=b"hello")
    await hook(addon.response(flow))
    assert state.record.done()
    assert [(r["event"], r["action"], r["url"]) for r in audit_lines(tmp_path)] == \
        [("decision", "allow", f"http://{UNLISTED}/")]
    assert flow.response.content == b"hello"


async def test_a_request_that_is_no_navigation_is_not_recorded(addon: Clickguard, tmp_path: Path) -> None:
    flow = flow_to(f"http://{UNLISTED}/app.js", {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"})
    await hook(addon.request(flow))
    state = flow_state(flow)
    assert flow.response is None and state is not None
    # A script is no navigation: not recorded, and inspected only for payloads, only if its
    # server turns out a suspect when its headers arrive (issue 10: a suspect's fetch was never sniffed).
    assert (state.record, state.inspect, state.payloads_only) == (None, True, True)
    flow.response = tutils.tresp(headers=http.Headers(server="nginx", content_type="text/javascript"),
                                 content=b"x")
    flow.request.host = "shop.example"  # a named, ordinary server: today's scope, not inspected
    state.decision = state.decision._replace(url=normalize_url("http://shop.example/app.js"))
    await hook(addon.responseheaders(flow))
    assert not state.inspect
    assert audit_lines(tmp_path) == []


async def test_the_click_host_is_served_not_judged(addon: Clickguard) -> None:
    flow = flow_to(f"http://{CLICK_HOST}/")
    await hook(addon.request(flow))
    assert flow.response is not None and flow.response.status_code == 200
    assert METADATA_KEY not in flow.metadata


async def test_a_saved_or_copied_flow_keeps_the_verdict_as_plain_data(addon: Clickguard) -> None:
    flow = flow_to(f"http://{LISTED}/x")
    await hook(addon.request(flow))
    state = flow.get_state()  # what `-w` saves and a duplicate is made from
    assert state["metadata"][METADATA_KEY] == {"action": "block", "reasons": [reasons.LANDING_THINGBOT]}
    saved = tnetstring.loads(tnetstring.dumps(state))
    assert isinstance(saved, dict) and saved["metadata"][METADATA_KEY]["action"] == "block"
    copy = flow.copy()  # type: ignore[no-untyped-call]
    assert flow_state(copy) is None and copy.metadata[METADATA_KEY]["action"] == "block"


async def test_a_warn_page_offers_continue_and_the_link_continues(addon: Clickguard, tmp_path: Path) -> None:
    url = f"http://{WARNED}/login"
    flow = flow_to(url, PAGE)
    await hook(addon.request(flow))
    assert flow.response is not None and flow.response.headers["X-Clickguard-Action"] == "warn"
    href = continue_href(flow.response.content or b"")
    assert href is not None and href.startswith(f"http://{CLICK_HOST}/continue?t=")
    warn_ref = flow.response.headers["X-Clickguard-Ref"]

    onward = flow_to(href, PAGE)
    await hook(addon.request(onward))
    assert onward.response is not None and onward.response.status_code == 303
    assert onward.response.headers["Location"] == url
    continued = audit_lines(tmp_path)[-1]
    assert (continued["event"], continued["action"], continued["warn_ref"], continued["reasons"]) == \
        ("continue", "allow", warn_ref, ["landing.phishing"])
    # The grant holds: the same page now passes, recorded as continued.
    again = flow_to(url, PAGE)
    await hook(addon.request(again))
    assert again.response is None


@pytest.mark.parametrize(("codes", "offered"), [
    ([reasons.ORIGIN_THINGBOT], True),
    ([reasons.ORIGIN_THINGBOT, reasons.LINK_BAD_SIGNATURE], False),  # one reason that may not be continued
    ([reasons.LINK_BAD_SIGNATURE], False),
])
async def test_continue_is_offered_only_if_every_reason_may_be_continued(
        addon: Clickguard, codes: list[str], offered: bool) -> None:
    url = f"http://{UNLISTED}/"
    flow = flow_to(url, PAGE)
    verdict = Verdict("warn", tuple(Finding(code, "as the test says") for code in codes))
    await addon.guard.stop(flow, url, Decision(normalize_url(url), verdict, ()), verdict, CLIENT, None,
                           "decision")
    assert flow.response is not None and flow.response.headers["X-Clickguard-Action"] == "warn"
    body = flow.response.content or b""
    assert (continue_href(body) is not None) is offered
    assert (b"does not offer to continue" in body) is not offered


async def _continue_with(addon: Clickguard, token: str) -> http.HTTPFlow:
    """Follow a continue link carrying token."""
    flow = flow_to(f"http://{CLICK_HOST}/continue?t={urllib.parse.quote(token)}", PAGE)
    await hook(addon.request(flow))
    assert flow.response is not None
    return flow


async def test_an_old_positional_continue_token_keeps_its_click(addon: Clickguard, tmp_path: Path) -> None:
    # A continue link as the previous release signed it: no version, the click as a list.
    url = f"http://{UNLISTED}/after"
    token = sign({"u": url, "c": CLIENT, "usr": None, "ref": "w1", "codes": [reasons.ORIGIN_THINGBOT],
                  "click": ["c1", "198.51.100.7", "h:5f3a", 0]}, addon.runtime.key, expires=time.time() + 600)
    flow = await _continue_with(addon, token)
    assert flow.response is not None
    assert (flow.response.status_code, flow.response.headers["Location"]) == (303, url)
    record = audit_lines(tmp_path)[-1]
    assert {k: record.get(k) for k in ("event", "click_id", "origin_ip", "warn_ref", "hop", "host")} == \
        {"event": "continue", "click_id": "c1", "origin_ip": "198.51.100.7", "warn_ref": "w1", "hop": None,
         "host": UNLISTED}
    # The browser's next request continues the click, one hop further, with all its context.
    assert addon.runtime.trail.follow(CLIENT, None, url) == ClickMark("c1", "198.51.100.7", "h:5f3a", 1)


@pytest.mark.parametrize(("payload", "why"), [
    ({"v": 3, "click": {"id": "c1", "hop": 0, "origin": None, "recipient": None, "via": "x"}},
     "of a version this clickguard does not know (3)"),
    ({"v": 2, "click": {"id": "c1", "hop": 0, "origin": None, "recipient": None, "via": "x"}},
     "unknown click fields ['via']"),
    ({"click": ["c1", "198.51.100.7", 0]}, "not the four fields of a click"),
])
async def test_a_continue_token_that_would_lose_context_is_refused(
        addon: Clickguard, tmp_path: Path, payload: dict[str, object], why: str) -> None:
    token = sign({"u": f"http://{UNLISTED}/", "c": CLIENT, "usr": None, "ref": "w1", "codes": [], **payload},
                 addon.runtime.key, expires=time.time() + 600)
    flow = await _continue_with(addon, token)
    assert flow.response is not None and flow.response.headers["X-Clickguard-Action"] == "block"
    record = audit_lines(tmp_path)[-1]
    assert (record["event"], record["reasons"]) == ("continue", [reasons.LINK_BAD_SIGNATURE])
    assert record["details"][0]["detail"].startswith("continue link refused: ")
    assert why in record["details"][0]["detail"]
    assert addon.runtime.trail.follow(CLIENT, None, f"http://{UNLISTED}/") is None


@pytest.mark.parametrize("click", [None, ClickMark("c9", None, None, 3),
                                   ClickMark("c1", "192.0.2.1", "a@b", 0)])
def test_continue_tokens_carry_named_versioned_fields(click: ClickMark | None) -> None:
    key = b"k" * 32
    grant = Continuation("http://x.example/", CLIENT, "ana", "w1", ("origin.thingbot",), click)
    token = continue_token(grant, key, expires=time.time() + 60)
    assert read_continue_token(token, key, now=time.time()) == grant
    payload = json.loads(b64url_decode(token.partition(".")[0]))
    assert payload["v"] == 2
    if click is None:
        assert "click" not in payload
    else:
        assert payload["click"] == {"id": click.click_id, "origin": click.origin_ip,
                                    "recipient": click.recipient, "hop": click.hop}


def test_importing_the_addon_touches_no_file(tmp_path: Path) -> None:
    """`mitmdump -s` imports the addon module, which builds the addon: that must read and write nothing."""
    script = textwrap.dedent("""
        import json, os, sys
        touched = []
        def audit(event, args):
            if event in ("open", "os.mkdir", "os.rename", "os.replace", "os.remove") and args[0] is not None:
                touched.append(os.fsdecode(args[0]) if not isinstance(args[0], int) else "")
        sys.addaudithook(audit)
        import clickguard.proxy.addon
        print(json.dumps({"touched": touched, "path": sys.path}))
    """)
    empty = tmp_path / "cwd"
    empty.mkdir()
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", script], cwd=empty, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    found = json.loads(done.stdout)
    # Python opens modules and its packages' metadata; nothing else may be touched: not the working
    # directory (var/learned.json), not the home directory (~/.mitmproxy), not a data file.
    others = [p for p in found["touched"] if p not in found["path"] and not p.endswith((".py", ".pyc"))
              and not os.path.join(empty, p).startswith((sys.prefix, sys.base_prefix))]
    assert others == []
    assert list(empty.iterdir()) == [] and not (tmp_path / "home").exists()
