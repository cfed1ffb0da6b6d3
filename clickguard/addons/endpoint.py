"""The proxy's own pages on the click host: the warn page's "continue" (later: click links)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Coroutine

from mitmproxy import http

from clickguard import audit
from clickguard.addons.guard import client_of, respond
from clickguard.errors import TokenError, URLError
from clickguard.pages import Page, block_page, message_page
from clickguard.runtime import Runtime
from clickguard.tokens import verify
from clickguard.urls import normalize_url
from clickguard.verdict import Finding


class Endpoint:
    """Serves requests for the click host from inside the proxy; they never reach the network."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def request(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        """Answer requests addressed to the click host (a coroutine for mitmproxy to await)."""
        # Not `async def`: every request passes through here, and only the click host's
        # need to await anything.
        if flow.response or flow.error or not flow.live:
            return None
        if flow.request.host != self.runtime.judge.policy.click_host:
            return None
        return self._serve(flow)

    async def _serve(self, flow: http.HTTPFlow) -> None:
        """Serve one request for the click host."""
        path, _, query = flow.request.path.partition("?")
        if path == "/continue" and flow.request.method in ("GET", "HEAD"):
            await self._continue(flow, urllib.parse.parse_qs(query).get("t", [""])[0])
        elif path == "/":
            respond(flow, _info_page())
        else:
            respond(flow, message_page("Not found", "clickguard has no page at this address.",
                                       audit.new_ref()))
            flow.response.status_code = 404  # type: ignore[union-attr]

    async def _continue(self, flow: http.HTTPFlow, token: str) -> None:
        """Verify a warn page's continue token, grant the client the host, redirect to the URL."""
        rt = self.runtime
        client, user = client_of(flow)
        ref = audit.new_ref()
        try:
            payload = verify(token, rt.key, now=time.time())
            if payload.get("c") != client or payload.get("usr") != user:
                raise TokenError("this continue link was issued to another client")
            url = normalize_url(str(payload.get("u", "")))
        except (TokenError, URLError) as e:
            finding = Finding("link.bad_signature", f"continue link refused: {e}")
            await self.runtime.record(audit.record(ref=ref, event="continue", client=client, user=user,
                                           url=flow.request.url, action="block",
                                           findings=[finding]))
            respond(flow, block_page(flow.request.url, [finding], ref))
            return
        policy = rt.judge.policy
        rt.grants.grant(client, user, url.host, time.time() + policy.warn.continue_minutes * 60)
        codes = [str(c) for c in payload.get("codes", [])]
        await self.runtime.record(audit.record(
            ref=ref, event="continue", client=client, user=user, url=url.url, action="allow",
            findings=[Finding(c, "the user chose to continue past the warning") for c in codes],
            warn_ref=payload.get("ref"), host=url.host))
        # Only a URL this proxy signed can be a target here: no open redirect.
        flow.response = http.Response.make(303, b"", {
            "Location": url.url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})



def _info_page() -> Page:
    """What the click host's root shows: that the proxy is in the path."""
    page = message_page("clickguard is protecting this browser",
                        "Requests from this browser pass through clickguard.", audit.new_ref(),
                        action="allow")
    headers = {k: v for k, v in page.headers.items() if k != "X-Clickguard-Action"}
    return Page(200, headers, page.body)
