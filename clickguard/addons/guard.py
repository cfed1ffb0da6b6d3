"""Judges every request before it leaves the proxy, and the address the proxy connects to."""

from __future__ import annotations

import asyncio
import ipaddress
import time
import urllib.parse
import weakref
from collections.abc import Coroutine

from mitmproxy import connection, http, tcp
from mitmproxy.proxy import server_hooks

from clickguard import audit
from clickguard.check import Decision, check, with_origin
from clickguard.clicks import ClickMark
from clickguard.errors import URLError
from clickguard.pages import Page, block_page, warn_page
from clickguard.resolver import ResolveError
from clickguard.runtime import Runtime
from clickguard.tokens import sign
from clickguard.urls import NormalizedURL, normalize_url, parent_domains
from clickguard.verdict import Finding, Verdict

METADATA_KEY = "clickguard"


def is_navigation(headers: http.Headers) -> bool:
    """True for a top-level or frame navigation (what a person sees), by Fetch Metadata or Accept."""
    mode = headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate" or headers.get("sec-fetch-dest") in ("document", "iframe", "frame")
    return "text/html" in headers.get("accept", "")


def client_of(flow: http.HTTPFlow) -> tuple[str, str | None]:
    """The client's address and, when the proxy authenticated it, the user name."""
    auth = flow.metadata.get("proxyauth")
    user = auth[0] if isinstance(auth, tuple) and auth else None
    return str(flow.client_conn.peername[0]), user


async def _wait(task: asyncio.Task[None]) -> None:
    """Await a pending audit write (it logs its own failures)."""
    await task


def respond(flow: http.HTTPFlow, page: Page) -> None:
    """Answer the flow with a generated page."""
    flow.response = http.Response.make(page.status, page.body, page.headers)


class Guard:
    """Judges requests (and tunnels, and server connections) and blocks or warns."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Server connections whose actual peer address turned out to be listed.
        self._tainted: weakref.WeakKeyDictionary[connection.Server, Verdict] = \
            weakref.WeakKeyDictionary()
        # Audit records of allowed navigations, written while the request travels upstream;
        # the response waits for its record, so nothing reaches the user before it is on disk.
        self._pending: weakref.WeakKeyDictionary[http.HTTPFlow, asyncio.Task[None]] = \
            weakref.WeakKeyDictionary()
        # Clicked navigations in flight: a redirect they get makes its target the next hop.
        self._marks: weakref.WeakKeyDictionary[http.HTTPFlow, ClickMark] = weakref.WeakKeyDictionary()

    async def request(self, flow: http.HTTPFlow) -> None:
        """Judge a request before it is sent anywhere."""
        if flow.response or flow.error or not flow.live:
            return
        rt = self.runtime
        judge = rt.judge
        if flow.request.host == judge.policy.click_host:
            return  # the proxy's own pages, served by the endpoint addon
        client, user = client_of(flow)
        if judge.client_exempt(client):
            return
        try:
            url = normalize_url(flow.request.url)
        except URLError as e:
            verdict = judge.decide([], incomplete=f"the address cannot be parsed: {e}")
            if verdict.action != "allow":
                await self.stop(flow, flow.request.url, None, verdict, client, user, "decision")
            return
        decision = await check(judge, url, rt.resolver)
        if decision.addresses and all(judge.destination_exempt(a) for a in decision.addresses):
            return
        mark = rt.trail.follow(client, user, url.url)
        if mark is not None and mark.origin_ip:
            decision = with_origin(judge, decision, mark.origin_ip)
        flow.metadata[METADATA_KEY] = {"action": decision.verdict.action,
                                       "reasons": decision.verdict.codes}
        if await self.enforce(flow, decision, client, user, "hop" if mark else "decision", mark) and mark:
            self._marks[flow] = mark

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        """Judge a CONNECT to a host whose TLS the policy does not intercept (host and address only)."""
        if flow.response or flow.error or not flow.live:
            return
        judge = self.runtime.judge
        excluded = judge.policy.intercept.exclude
        if not excluded:
            return
        try:
            url = normalize_url(f"https://{flow.request.host}:{flow.request.port}/")
        except URLError:
            return
        if not any(d in excluded for d in parent_domains(url.host)):
            return  # intercepted: each request inside the tunnel is judged with its full URL
        client, user = client_of(flow)
        if judge.client_exempt(client):
            return
        decision = await check(judge, url, self.runtime.resolver)
        await self.enforce(flow, decision, client, user, "tunnel")

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Judge the addresses a server name resolves to right before connecting to it."""
        server = data.server
        if server.address is None or server.via is not None or server.error:
            return
        host = str(server.address[0])
        judge = self.runtime.judge
        if host == judge.policy.click_host or judge.client_exempt(str(data.client.peername[0])):
            return
        try:
            url = normalize_url(f"http://{host}/")
        except URLError:
            return
        if url.is_ip:
            addresses: tuple[str, ...] = (url.host,)
        else:
            try:
                addresses = await self.runtime.resolver.resolve(url.host)
            except ResolveError:
                return  # mitmproxy's own connect will fail and say so
        verdict = self._address_verdict(url, addresses)
        if verdict.action == "block":
            server.error = "clickguard: " + "; ".join(f.detail for f in verdict.findings)

    async def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Judge the address actually connected to, when it is not one already judged for its host."""
        peer, target = data.server.peername, data.server.address
        if not peer or not target:
            return
        judge = self.runtime.judge
        if judge.client_exempt(str(data.client.peername[0])):
            return
        address = ipaddress.ip_address(str(peer[0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        try:
            url = normalize_url(f"http://{target[0]}/")
        except URLError:
            return
        judged = (url.host,) if url.is_ip else self.runtime.resolver.cached(url.host) or ()
        if str(address) in judged:
            return  # judged with its host name before connecting
        # DNS answered the proxy's connect differently from the check: judge what it got.
        verdict = self._address_verdict(url, (str(address),))
        if verdict.action == "block":
            self._tainted[data.server] = verdict

    def _address_verdict(self, url: NormalizedURL, addresses: tuple[str, ...]) -> Verdict:
        """The verdict on addresses alone (allow list and destination exemptions apply)."""
        judge = self.runtime.judge
        if all(judge.destination_exempt(a) for a in addresses):
            return Verdict("allow")
        findings = judge.address_findings(addresses, host=None if url.is_ip else url.host)
        return judge.decide(findings, allowed_by=judge.allowed_by(url, addresses))

    def response(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        """Hold a response until its audit record is on disk; stop one from a tainted connection."""
        # Not `async def`: this runs for every response and rarely has to wait for anything.
        pending = self._pending.pop(flow, None) if self._pending else None
        if self._tainted and flow.server_conn in self._tainted and flow.live:
            return self._stop_tainted(flow, self._tainted[flow.server_conn])
        mark = self._marks.pop(flow, None) if self._marks else None
        if mark is not None and flow.response is not None:
            self._expect_next_hop(flow, mark)
        if pending is not None and not pending.done():
            return _wait(pending)
        return None

    def _expect_next_hop(self, flow: http.HTTPFlow, mark: ClickMark) -> None:
        """A redirect on a clicked navigation: its target is the click's next hop."""
        assert flow.response is not None
        location = flow.response.headers.get("location")
        if not location or not 300 <= flow.response.status_code < 400:
            return
        try:
            target = normalize_url(urllib.parse.urljoin(flow.request.url, location))
        except (URLError, ValueError):
            return
        client, user = client_of(flow)
        self.runtime.trail.expect(client, user, target.url, mark._replace(hop=mark.hop + 1))

    async def _stop_tainted(self, flow: http.HTTPFlow, verdict: Verdict) -> None:
        """Replace the response of a tainted connection with the block page."""
        client, user = client_of(flow)
        flow.response = None
        await self.stop(flow, flow.request.url, None, verdict, client, user, "connected")

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        """Kill a passed-through tunnel whose peer address turned out to be listed."""
        if flow.server_conn in self._tainted:
            flow.kill()

    async def enforce(self, flow: http.HTTPFlow, decision: Decision, client: str,
                      user: str | None, event: str, mark: ClickMark | None = None) -> bool:
        """Audit and pass the flow (True), or answer it with the block or warn page (False)."""
        verdict = decision.verdict
        rt = self.runtime
        host = decision.url.host
        navigation = event != "decision" or mark is not None or is_navigation(flow.request.headers)
        continued = verdict.action == "warn" and rt.grants.active(client, user, host)
        if verdict.action == "allow" or continued:
            if navigation:
                entry = self._record(event, client, user, decision.url.url, "allow", verdict.findings,
                                     decision, mark, continued=continued or None,
                                     allowed_by=verdict.allowed_by)
                if event == "decision":
                    self._pending[flow] = asyncio.create_task(rt.record(entry))
                else:
                    await rt.record(entry)
            return True
        await self.stop(flow, decision.url.url, decision, verdict, client, user, event, mark)
        return False

    async def stop(self, flow: http.HTTPFlow, url: str, decision: Decision | None, verdict: Verdict,
                   client: str, user: str | None, event: str, mark: ClickMark | None = None) -> None:
        """Audit, then answer with the block or warn page (the record is on disk first)."""
        entry = self._record(event, client, user, url, verdict.action, verdict.findings, decision, mark,
                             navigation=is_navigation(flow.request.headers))
        await self.runtime.record(entry)
        ref = str(entry["ref"])
        if verdict.action == "block" or decision is None:
            respond(flow, block_page(url, verdict.findings, ref))
            return
        respond(flow, warn_page(url, verdict.findings, ref, self._continue_url(
            flow, url, verdict.findings, ref, client, user, mark)))

    @staticmethod
    def _record(event: str, client: str, user: str | None, url: str, action: str,
                findings: tuple[Finding, ...], decision: Decision | None, mark: ClickMark | None,
                **extra: object) -> dict[str, object]:
        """One audit record, with the click a navigation continues (id, origin, hop) when known."""
        # The click's own record is the one its id names.
        ref = mark.click_id if mark is not None and mark.hop == 0 else audit.new_ref()
        return audit.record(
            ref=ref, event=event, client=client, user=user, url=url, action=action,
            findings=findings, origin_ip=mark.origin_ip if mark else None,
            host=decision.url.host if decision else None,
            addresses=list(decision.addresses) if decision and decision.addresses else None,
            click_id=mark.click_id if mark else None, hop=mark.hop if mark else None,
            recipient=mark.recipient if mark else None, **extra)

    def _continue_url(self, flow: http.HTTPFlow, url: str, findings: tuple[Finding, ...], ref: str,
                      client: str, user: str | None, mark: ClickMark | None) -> str | None:
        """The signed, short-lived continue link for a warn page, or None if policy offers none."""
        policy = self.runtime.judge.policy
        if not policy.warn.allow_continue:
            return None
        payload: dict[str, object] = {"u": url, "c": client, "usr": user, "ref": ref,
                                      "codes": list(dict.fromkeys(f.code for f in findings))}
        if mark is not None:
            payload["click"] = list(mark)
        token = sign(payload, self.runtime.key,
                     expires=time.time() + policy.warn.token_minutes * 60)
        scheme = "https" if flow.request.scheme == "https" else "http"
        return f"{scheme}://{policy.click_host}/continue?t={urllib.parse.quote(token)}"
