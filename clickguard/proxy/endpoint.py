"""The proxy's own pages on the click host: click links, the warn page's "continue", the dashboard."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Coroutine

from mitmproxy import http

from clickguard import reasons
from clickguard.audit import writer as audit
from clickguard.decision.check import check, with_origin
from clickguard.decision.verdict import Finding
from clickguard.errors import TokenError, URLError
from clickguard.mail.clicks import ClickMark
from clickguard.mail.home_line import describe
from clickguard.mail.links import verify_click_link
from clickguard.proxy.continuation import read_continue_token
from clickguard.proxy.guard import Guard, client_of, judge_of, respond
from clickguard.proxy.ops import pac_page
from clickguard.proxy.records import Event, audit_record
from clickguard.proxy.runtime import Runtime
from clickguard.urls import normalize_url
from clickguard.web import dashboard
from clickguard.web.pac import PAC_PATHS
from clickguard.web.pages import Page, Viewer, block_page, message_page, not_recorded_page, viewer


class Endpoint:
    """Serves requests for the click host from inside the proxy; they never reach the network."""

    def __init__(self, runtime: Runtime, guard: Guard) -> None:
        self.runtime = runtime
        self.guard = guard  # judges clicks the way it judges requests
        self.dashboard = dashboard.Dashboard(runtime)  # /admin; its login state lives as long as the proxy
        runtime.sharing.also(self.dashboard.share)  # sessions and lock-outs across nodes (cluster.redis)

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
        if path.startswith("/v1/") and flow.request.method in ("GET", "HEAD"):
            await self._click(flow)
        elif path == "/continue" and flow.request.method in ("GET", "HEAD"):
            await self._continue(flow, urllib.parse.parse_qs(query).get("t", [""])[0])
        elif path in PAC_PATHS and flow.request.method in ("GET", "HEAD"):
            respond(flow, pac_page(self.runtime))  # to anyone: a browser reads it before it knows the proxy
        elif path == "/admin" or path.startswith("/admin/"):
            await self._admin(flow, path, query)
        elif path == "/":
            respond(flow, _info_page(self._viewer(flow)))
        else:
            respond(flow, message_page("Not found", "clickguard has no page at this address.",
                                       audit.new_ref(), viewer=self._viewer(flow)))
            flow.response.status_code = 404  # type: ignore[union-attr]

    def _viewer(self, flow: http.HTTPFlow) -> Viewer:
        """The policy's pages in the language the browser asks for (Accept-Language)."""
        return viewer(self.runtime.judge.policy.pages, flow.request.headers)

    async def _admin(self, flow: http.HTTPFlow, path: str, query: str) -> None:
        """The admin dashboard (clickguard/web/dashboard.py) answers, https only; this translates the flow."""
        headers = flow.request.headers
        # HTTP/2 may split Cookie into several fields; they join with "; ", every other with ", ".
        joined = {name.lower(): ("; " if name.lower() == "cookie" else ", ").join(headers.get_all(name))
                  for name in headers}
        scheme = flow.request.scheme
        # Over http the dashboard only redirects or refuses: a form (a password) is not even handed over.
        body = (flow.request.raw_content or b"") if scheme == "https" else b""
        answer = await self.dashboard.handle(dashboard.Request(
            flow.request.method, path, query, joined, body, client_of(flow)[0], scheme))
        flow.response = http.Response.make(answer.status, answer.body,
                                           [(k.encode(), v.encode()) for k, v in answer.headers])

    async def _click(self, flow: http.HTTPFlow) -> None:
        """A click link: verify it, judge its target with the mail's origin, redirect or stop.

        The target itself is never fetched here: the browser follows the redirect, so
        one-time links (password resets, sign-in links) are used once, by the user.
        """
        rt = self.runtime
        judge = judge_of(rt, flow)  # the policy of the user's group (policy groups:)
        client, user = client_of(flow)
        ref = audit.new_ref()
        try:
            target, context = verify_click_link(flow.request.url, rt.key,
                                                click_host=judge.policy.click_host)
            url = normalize_url(target)
        except (TokenError, URLError) as e:
            await self._refuse(flow, "click", f"click link refused: {e}", ref)
            return
        mark = ClickMark(ref, context.origin_ip, context.recipient, 0, context.home_line)
        decision = await check(judge, url, rt.resolver)
        if context.origin_ip:
            # The home-line evidence was judged from the mail's Received: header at rewrite time.
            decision = with_origin(judge, decision, context.origin_ip,
                                   home_line=describe(context.home_line) or None)
        if not await self.guard.enforce(flow, decision, client, user, "click", mark):
            return  # the warn or block page is the answer
        rt.trail.expect(client, user, url.url, mark._replace(hop=1))
        await rt.sharing.settled()  # the next hop may reach another node: it must know the click by then
        flow.response = _redirect(url.url)

    async def _refuse(self, flow: http.HTTPFlow, event: Event, reason: str, ref: str) -> None:
        """A signed link that does not verify: audit it, then show the block page (link.bad_signature)."""
        client, user = client_of(flow)
        finding = Finding(reasons.LINK_BAD_SIGNATURE, reason)
        await self.guard.recorded(audit_record(event, client, user, flow.request.url, "block", [finding],
                                               ref=ref))
        respond(flow, block_page(flow.request.url, [finding], ref, self._viewer(flow)))

    async def _continue(self, flow: http.HTTPFlow, token: str) -> None:
        """Verify a warn page's continue token, grant the client the host, redirect to the URL."""
        rt = self.runtime
        client, user = client_of(flow)
        ref = audit.new_ref()
        try:
            grant = read_continue_token(token, rt.key, now=time.time())
            if grant.client != client or grant.user != user:
                raise TokenError("this continue link was issued to another client")
            url = normalize_url(grant.url)
        except (TokenError, URLError) as e:
            await self._refuse(flow, "continue", f"continue link refused: {e}", ref)
            return
        judge = judge_of(rt, flow)
        policy = judge.policy
        mark = grant.click
        if not await self.guard.recorded(audit_record(
                "continue", client, user, url.url, "allow",
                [Finding(c, "the user chose to continue past the warning") for c in grant.codes],
                host=url.host, mark=mark, ref=ref, warn_ref=grant.ref, group=judge.group)):
            respond(flow, not_recorded_page(url.url, ref, self._viewer(flow)))
            return
        rt.grants.grant(client, user, url.host, time.time() + policy.warn.continue_minutes * 60)
        if mark is not None:
            rt.trail.expect(client, user, url.url, mark._replace(hop=mark.hop + 1))
        await rt.sharing.settled()  # the grant holds on every node before the browser goes on
        flow.response = _redirect(url.url)



def _redirect(url: str) -> http.Response:
    """303 to a URL this proxy signed or judged: never a target taken from the request (no open redirect)."""
    return http.Response.make(303, b"", {"Location": url, "Cache-Control": "no-store",
                                         "Referrer-Policy": "no-referrer"})


def _info_page(shown_to: Viewer) -> Page:
    """What the click host's root shows: that the proxy is in the path."""
    page = message_page("clickguard is protecting this browser",
                        "Requests from this browser pass through clickguard.", audit.new_ref(),
                        action="allow", viewer=shown_to)
    headers = {k: v for k, v in page.headers.items() if k != "X-Clickguard-Action"}
    return Page(200, headers, page.body)
