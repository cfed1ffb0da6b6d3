"""Judges every request before it leaves the proxy, and the address the proxy connects to.

Every name a connection gives is judged: a request by its URL and by its Host header
(inside a tunnel mitmproxy takes the host from the CONNECT); a TLS tunnel passes
uninspected (``intercept.exclude``) only when its CONNECT host and its SNI both name
an excluded domain, and is refused when only one does (`tunnel_passage`); a tunnel
of neither TLS nor HTTP is judged by its host. The proxy connects to the addresses
judged for a name (`Pins`), never to a later DNS answer.

What the hooks of one flow pass each other (the request's decision, the click it
continues, the audit record being written) is one `FlowState`, made by the
request hook and kept in ``flow.metadata["clickguard"]``, as mitmproxy's own
addons leave their marks there.

A response is inspected as the browser will get it, whatever the server chose:

- held (within ``inspect.max_body``, Content-Length or chunked): read in a worker
  process (`clickguard.inspection.pool`: Content-Encoding undone within caps, payload
  sniffed, fingerprints, device evidence, navigations) with a deadline; past it the
  worker is killed, ``on_check_error`` decides and the record says ``"timeout": true``;
  a worker that dies, or a reading that raises, makes it ``"failed": true``, and a
  full queue ``"busy": true``. Only the judging (feeds and learned hosts on what the
  reading found) runs here. The event loop never reads a held body.
- streamed (announced too large, of unknown length and not HTML, or grown past
  ``max_body`` while mitmproxy held it — it then streams mid-body, see
  `_WatchedResponse`): held back until its first bytes, decoded, are sniffed; passed
  on or cut short. mitmproxy's stream callback is synchronous and only runs again
  when more bytes come, so it cannot wait for a worker: these SNIFF_BYTES (4 KiB) are
  read here, on the loop, their navigations within `head_budget` (linear, a small
  floor). Measured: 10–12 ms of CPU for the worst hostile 4 KiB heads tried
  (bench/hostile.py), about what relaying the megabyte that must follow costs
  anyway (bare mitmdump: 9 ms); holding the stream for a worker would leave the
  end of a fast body nothing to wait with.
- a redirect whose body streams passes its Location on as the click's next hop
  when its headers go out, as a held one does when it is delivered.
- a fetch by the page's script (any ``Sec-Fetch-Dest``) from a suspect server (a
  bare address on an odd port, a listed or learned Thingbot, an appliance by its
  headers) is sniffed for payloads too; from ordinary servers only navigations are.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from mitmproxy import connection, http, tcp, tls
from mitmproxy.net.http.url import parse_authority
from mitmproxy.proxy import server_hooks

from clickguard import reasons
from clickguard.decision.check import Decision, check, with_origin
from clickguard.decision.judge import Judge
from clickguard.decision.verdict import Finding, Verdict
from clickguard.errors import AuditError, URLError
from clickguard.inspection.bodies import BodyDecoder
from clickguard.inspection.fingerprints import traits_from
from clickguard.inspection.inline import read_here
from clickguard.inspection.payloads import SNIFF_BYTES
from clickguard.inspection.pool import BodyJob, PoolBusy, ReadingError, ReadingFailed, ReadingTimeout
from clickguard.inspection.response import (
    Inspection,
    Reading,
    address_hint,
    head_budget,
    judge_reading,
    port_hint,
    read_response,
)
from clickguard.intel.resolver import ResolveError
from clickguard.mail.clicks import ClickMark
from clickguard.mail.home_line import describe
from clickguard.proxy.authentication import identity_of
from clickguard.proxy.continuation import Continuation, continue_token
from clickguard.proxy.facts import server_facts
from clickguard.proxy.pins import Pins
from clickguard.proxy.records import Event, audit_record
from clickguard.proxy.runtime import Runtime
from clickguard.urls import NormalizedURL, canonical_ip, normalize_url, parent_domains, url_of
from clickguard.web.pages import Page, block_page, not_recorded_page, viewer, warn_page

METADATA_KEY = "clickguard"
_TAINTED_KEY = "clickguard_tainted"  # a flow answered with the block page because its connection is tainted
logger = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class FlowState:
    """What clickguard's hooks know of one judged flow; in ``flow.metadata["clickguard"]``."""

    decision: Decision  # the request's, with the e-mail origin's findings when a click led here
    verdict: Verdict  # in force: the request's, then its streamed body's once that is sniffed
    mark: ClickMark | None = None  # the click this navigation continues
    inspect: bool = False  # let through and worth inspecting: its response is inspected
    payloads_only: bool = False  # no navigation: inspected for payloads if its server is a suspect
    streamed: bool = False  # the body streams: judged by its headers and first bytes, not in response()
    record: asyncio.Task[bool] | None = None  # the allowed request's audit record, being written
    judge: Judge | None = None  # the judge of the user's or client's group (policy groups:), if any

    def summary(self) -> dict[str, object]:
        """The flow's action and reason codes, as plain data."""
        return {"action": self.verdict.action, "reasons": self.verdict.codes}

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, object]:
        # mitmproxy deep-copies a flow's metadata to save (`-w`) or duplicate the flow: the copy
        # keeps the verdict as plain data; tasks and decisions belong to this proxy's hooks.
        return self.summary()


def flow_state(flow: http.HTTPFlow) -> FlowState | None:
    """The state of a judged flow; None before its request is judged, or for a copy of a flow."""
    state = flow.metadata.get(METADATA_KEY)
    return state if isinstance(state, FlowState) else None


def judge_of(runtime: Runtime, flow: http.HTTPFlow) -> Judge:
    """The judge of the flow's group: the one its request was judged by, else by its user and client now."""
    state = flow_state(flow)
    if state is not None and state.judge is not None:
        return state.judge
    if not runtime.judge.grouped:
        return runtime.judge  # no groups: nothing to look up or allocate
    client, user = client_of(flow)
    return runtime.judge_for(client, user, flow.metadata.get("clickguard_identity"))


# Fetch Metadata destinations that show a page or hand over a file: what inspection is for.
# Scripts, styles, images and the like are not navigations (their bytes are not run as programs).
_INSPECTED_DESTINATIONS = frozenset({"document", "iframe", "frame", "embed", "object"})


# Findings that are the evidence a learned host is remembered with.
_EVIDENCE = frozenset({reasons.LANDING_APPLIANCE, reasons.RESPONSE_REDIRECT, reasons.RESPONSE_DRIVE_BY})


def worth_inspecting(headers: http.Headers) -> bool:
    """Whether a request's response is inspected: navigations, and any client that does not say."""
    destination = headers.get("sec-fetch-dest")
    return destination is None or destination in _INSPECTED_DESTINATIONS


def _payload_findings(inspection: Inspection) -> Inspection:
    """A fetch's inspection: only what its payload shows counts (navigations are the page's business)."""
    if inspection.drive_by is None:
        return inspection._replace(navigations=(), findings=(), hops=())
    kept = tuple(f for f in inspection.findings if f.code != reasons.RESPONSE_REDIRECT)
    return inspection._replace(navigations=(), findings=kept, hops=())


def _not_inspected(judge: Judge, why: str) -> tuple[Inspection, Verdict]:
    """What a response that could not be inspected gets: the policy's on_check_error decides."""
    verdict = judge.decide([], incomplete=why)
    return Inspection(None, False, (), (), None, False, verdict.findings), verdict


def _host_of(name: str) -> str | None:
    """A host name as the judge spells it (lower case, no trailing dot); None when it is no host."""
    try:
        return normalize_url(url_of("https", name, 443)).host
    except URLError:
        return None


def _excluded(excluded: frozenset[str], host: str | None) -> bool:
    """Whether host is an `intercept.exclude` domain or one of its subdomains."""
    return host is not None and any(d in excluded for d in parent_domains(host))


type Passage = Literal["pass", "intercept", "refuse"]


def tunnel_passage(excluded: frozenset[str], connect_host: str, sni: str | None) -> Passage:
    """What becomes of a TLS tunnel, by every name it gives: its CONNECT host and its ClientHello's SNI.

    ``pass`` (uninspected) only when both name an excluded domain, or the CONNECT host
    does and the ClientHello names nothing (the server then only has the address,
    the excluded host's, to choose what it serves). ``intercept`` when neither does.
    ``refuse`` when one does and the other does not: a tunnel dressed as an excluded
    host, or an excluded host fronting another. It is not intercepted instead, as
    that would open the TLS of a host IT excluded so that it stays unopened.
    """
    connect_excluded = _excluded(excluded, _host_of(connect_host))
    sni_excluded = sni is not None and _excluded(excluded, _host_of(sni))
    if connect_excluded and (sni is None or sni_excluded):
        return "pass"
    if not connect_excluded and not sni_excluded:
        return "intercept"
    return "refuse"


def _listed_landing(decision: Decision) -> bool:
    """Whether a feed lists the landing (its codes are landing.<category>, see reasons.feed_code)."""
    return any(f.code.startswith("landing.") for f in decision.verdict.findings)


def _worth_a_record(inspection: Inspection) -> bool:
    """Whether an allowed response's inspection adds to the audit log (a plain off-site redirect does not)."""
    return any(inspection.suspect or f.code != reasons.RESPONSE_REDIRECT for f in inspection.findings)


def _has_body(flow: http.HTTPFlow) -> bool:
    """Whether a response can carry a body worth inspecting."""
    assert flow.response is not None
    status = flow.response.status_code
    return flow.request.method not in ("HEAD", "CONNECT") and status >= 200 and status not in (204, 304)


def is_navigation(headers: http.Headers) -> bool:
    """True for a top-level or frame navigation (what a person sees), by Fetch Metadata or Accept."""
    mode = headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate" or headers.get("sec-fetch-dest") in ("document", "iframe", "frame")
    return "text/html" in headers.get("accept", "")


def request_url(flow: http.HTTPFlow) -> str:
    """The request's absolute URL, an IPv6 host in brackets (mitmproxy's ``Request.url`` leaves it bare)."""
    request = flow.request
    return url_of(request.scheme, request.host, request.port, request.path)


def host_header_url(flow: http.HTTPFlow, url: NormalizedURL) -> NormalizedURL | None:
    """The URL a request's Host header (or :authority) names, when it names another host than url's.

    Inside a tunnel mitmproxy takes a request's host from the CONNECT, and in any request
    the server chooses what to serve by the Host header (or :authority): a tunnel to one
    host carrying another's name in it is judged by both names (domain fronting).
    """
    request = flow.request
    header = request.host_header
    if not header:
        return None
    host = request.host
    if ":" not in host and (header == host or header == f"{host}:{request.port}"):
        return None  # the very name the request goes to (most requests): nothing to parse
    try:
        named_host, port = parse_authority(header, check=True)
        named = normalize_url(url_of(url.scheme, named_host, port or url.port, request.path))
    except (URLError, ValueError):
        return None  # no host the server could find a site by
    return None if named.host == url.host else named


def client_of(flow: http.HTTPFlow) -> tuple[str, str | None]:
    """The client's address and, when the proxy authenticated it, the user name."""
    identity = identity_of(flow)  # identity.proxy_auth; else mitmproxy's own --set proxyauth
    auth = flow.metadata.get("proxyauth")
    user = identity.user if identity else auth[0] if isinstance(auth, tuple) and auth else None
    return str(flow.client_conn.peername[0]), user


async def _wait(task: asyncio.Task[bool]) -> None:
    """Await a pending audit write (it logs its own failures)."""
    await task


def respond(flow: http.HTTPFlow, page: Page) -> None:
    """Answer the flow with a generated page."""
    flow.response = http.Response.make(page.status, page.body, page.headers)


class _Replace:
    """A streamed body swapped for a page: the page goes out once, the server's bytes never."""

    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body

    def __call__(self, data: bytes) -> list[bytes]:
        body, self.body = self.body, None
        return [body] if body else []


class _StreamSniffer:
    """A streamed body held back until its first bytes, decoded, are sniffed and judged; then passed or cut.

    What is held is bounded twice: decoded bytes by SNIFF_BYTES (the decoder's cap),
    raw bytes by `hold` (a body whose encoding yields nothing, or too little, is
    judged on what decoded by then).
    """

    def __init__(self, guard: Guard, flow: http.HTTPFlow, state: FlowState, hold: int) -> None:
        assert flow.response is not None
        self.guard = guard
        self.flow = weakref.ref(flow)  # the flow holds this object: no cycle
        self.state = state
        self.hold = hold
        self.decoder = BodyDecoder(flow.response.headers.get("content-encoding"), max_decoded=SNIFF_BYTES)
        self.held: list[bytes] = []
        self.decoded: list[bytes] = []
        self.size = 0
        self.phase = "holding"  # then "passing" or "cut"

    def __call__(self, data: bytes) -> bytes | list[bytes]:
        if self.phase == "passing":
            return data
        if self.phase == "cut":
            return []
        self.held.append(data)
        self.size += len(data)
        # Decoded in steps: a chunk of a megabyte (mitmproxy's held body, replayed) is sniffed by its start.
        for start in range(0, len(data), 65536):
            if self.decoder.done:
                break
            self.decoded.append(self.decoder.feed(data[start:start + 65536]))
        seen = sum(map(len, self.decoded))
        if data and seen < SNIFF_BYTES and not self.decoder.done and self.size < self.hold:
            return []
        held, self.held = self.held, []
        head, self.decoded = b"".join(self.decoded)[:SNIFF_BYTES], []
        flow = self.flow()
        if flow is None or flow.response is None:
            self.phase = "passing"
            return held
        truncated = self.decoder.truncated if self.decoder.truncated != "decoded cap" else None
        if truncated is None and data and seen < SNIFF_BYTES:
            truncated = "held cap"  # the encoding gave too little for what was held
        inspection, verdict = self.guard.inspect(flow, self.state, head)
        details = self.guard.details(inspection, truncated)
        if verdict.action == "allow":
            self.phase = "passing"
            if self.state.mark is not None:
                self.guard._expect_hops(flow, self.state.mark, inspection.hops)  # a meta refresh in the head
            if _worth_a_record(inspection) and is_navigation(flow.request.headers):
                self.guard.record_streamed(flow, self.state, inspection, verdict, details)
            return held
        # Warn or block: the headers are gone, so no page can be shown. The body stops here.
        self.phase = "cut"
        self.guard.record_streamed(flow, self.state, inspection, verdict._replace(action="block"), details)
        if flow.killable:
            # At the server's end of the body mitmproxy then resets the stream (HTTP/2) or closes
            # the connection without the last chunk (HTTP/1.1): never a clean end a client could keep.
            flow.kill()
        if "content-length" in flow.response.headers or "content-encoding" in flow.response.headers:
            return []  # cut short: the browser reports a failed download (or a broken encoding)
        # A body of unknown length cannot be told from a short one: say in it what happened.
        reasons = ", ".join(verdict.codes)
        return f"clickguard blocked this download ({reasons}).\n".encode()


class _WatchedResponse(http.Response):
    """A held response that mitmproxy may start streaming mid-body: the sniffer goes in when it does.

    mitmproxy holds a body of unknown length (chunked, or read to the close) until
    it outgrows ``stream_large_bodies``, then sets ``stream = True`` and streams it,
    the part held first, without another hook. The held response is given this
    class in `responseheaders`, so that assignment installs the sniffer instead.
    """

    @property  # type: ignore[override]
    def stream(self) -> Callable[[bytes], Iterable[bytes] | bytes] | bool:
        return self.__dict__.get("_clickguard_stream", False)  # type: ignore[no-any-return]

    @stream.setter
    def stream(self, value: Callable[[bytes], Iterable[bytes] | bytes] | bool) -> None:
        if value is True:
            install = self.__dict__.pop("_clickguard_sniffer", None)
            if install is not None:
                value = install()
        self.__dict__["_clickguard_stream"] = value


class Guard:
    """Judges requests (and tunnels, and server connections) and blocks or warns."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Server connections whose actual peer address turned out to be listed. Per connection,
        # not per flow: several flows share one, and the hook that finds it out has no flow
        # (mitmproxy's proxyauth keeps its per-connection state the same way).
        self._tainted: weakref.WeakKeyDictionary[connection.Server, Verdict] = \
            weakref.WeakKeyDictionary()
        # Who opened a tunnel (proxy authentication is on the CONNECT, not on what follows it).
        self._tunnel_users: weakref.WeakKeyDictionary[connection.Client, str] = weakref.WeakKeyDictionary()
        self._background: set[asyncio.Task[Any]] = set()  # learned-host saves, streamed records in flight
        self.pins = Pins()

    async def request(self, flow: http.HTTPFlow) -> None:
        """Judge a request before it is sent anywhere."""
        if flow.response or flow.error or not flow.live:
            return
        rt = self.runtime
        judge = judge_of(rt, flow)
        if flow.request.host == judge.policy.click_host:
            return  # the proxy's own pages, served by the endpoint addon
        client, user = client_of(flow)
        if judge.client_exempt(client):
            return
        try:
            url = normalize_url(request_url(flow))
        except URLError as e:
            verdict = judge.decide([], incomplete=f"the address cannot be parsed: {e}")
            if verdict.action != "allow":
                await self.stop(flow, flow.request.url, None, verdict, client, user, "decision")
            return
        decision = await check(judge, url, rt.resolver)
        if decision.addresses and all(judge.destination_exempt(a) for a in decision.addresses):
            return
        named = host_header_url(flow, url)
        fronted = await check(judge, named, rt.resolver) if named is not None else None
        if fronted is not None and fronted.verdict.action != "allow":
            url, decision = fronted.url, fronted  # the server would serve the host the Host header names
        mark = rt.trail.follow(client, user, url.url)
        if mark is not None and mark.origin_ip:
            decision = with_origin(judge, decision, mark.origin_ip,
                                   home_line=describe(mark.home_line) or None)
        state = flow.metadata[METADATA_KEY] = FlowState(decision, decision.verdict, mark, judge=judge)
        if not await self.enforce(flow, decision, client, user, "hop" if mark else "decision", mark):
            return
        state.inspect = judge.policy.inspect.enabled and decision.verdict.allowed_by is None
        # A fetch, a script or an image: sniffed for payloads if its server turns out a suspect.
        state.payloads_only = not worth_inspecting(flow.request.headers)

    async def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """Pass a tunnel through uninspected only when every name it gives is excluded; refuse a mismatch.

        Decided here, where both the CONNECT host and the SNI are known (mitmproxy's own
        ``ignore_hosts`` passes a tunnel when either name matches). See `tunnel_passage`.
        """
        server = data.context.server
        excluded = self.runtime.judge.policy.intercept.exclude
        if not excluded or server.address is None or data.context.client.tls_established:
            return
        connect_host, port = str(server.address[0]), int(server.address[1])
        sni = data.client_hello.sni
        passage = tunnel_passage(excluded, connect_host, sni)
        if passage == "intercept":
            return
        data.ignore_connection = True
        if passage == "pass":
            return
        detail = (f"the tunnel to {connect_host} names {sni} in its TLS ClientHello; only a tunnel whose "
                  f"names are all excluded from interception passes uninspected")
        # Passed to a connection that never opens: the client's handshake ends, no server is contacted.
        server.error = f"clickguard: {detail}"
        client = str(data.context.client.peername[0])
        user = self._tunnel_users.get(data.context.client)
        findings = (Finding(reasons.POLICY_DENY, detail),)
        await self.recorded(audit_record("tunnel", client, user, url_of("https", connect_host, port, "/"),
                                         "block", findings, host=connect_host, sni=sni))

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        """Judge a CONNECT to a host whose TLS the policy does not intercept (host and address only)."""
        if flow.response or flow.error or not flow.live:
            return
        _, user = client_of(flow)
        if user is not None:
            self._tunnel_users[flow.client_conn] = user  # for the record of a tunnel refused later
        judge = judge_of(self.runtime, flow)
        excluded = judge.policy.intercept.exclude
        if not excluded:
            return
        try:
            url = normalize_url(url_of("https", flow.request.host, flow.request.port))
        except URLError:
            return
        if not _excluded(excluded, url.host):
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
        judge = self._connection_judge(data.client)
        if host == judge.policy.click_host or judge.client_exempt(str(data.client.peername[0])):
            return
        try:
            url = normalize_url(url_of("http", host, 80))
        except URLError:
            return
        if url.is_ip:
            addresses: tuple[str, ...] = (url.host,)
        else:
            try:
                addresses = await self.runtime.resolver.resolve(url.host)
            except ResolveError:
                return  # mitmproxy's own connect will fail and say so
        verdict = self._address_verdict(judge, url, addresses)
        if verdict.action == "block":
            server.error = "clickguard: " + "; ".join(f.detail for f in verdict.findings)
        elif not url.is_ip:
            self.pins.pin(server, host, addresses)  # the connect goes to what was judged here

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        """A connection that failed to open holds no pin."""
        self.pins.release(data.server)

    async def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Judge the address actually connected to, when it is not one already judged for its host.

        With the name pinned (`Pins`) it always is one; this catches a connection whose name
        could not be resolved for the check (and was resolved by the connect itself).
        """
        self.pins.release(data.server)
        peer, target = data.server.peername, data.server.address
        if not peer or not target:
            return
        judge = self._connection_judge(data.client)
        if judge.client_exempt(str(data.client.peername[0])):
            return
        address = canonical_ip(str(peer[0])) or str(peer[0])  # the judge checks embedded IPv4 itself
        try:
            url = normalize_url(url_of("http", str(target[0]), 80))
        except URLError:
            return
        judged = (url.host,) if url.is_ip else self.runtime.resolver.cached(url.host) or ()
        if address in judged:
            return  # judged with its host name before connecting
        # DNS answered the proxy's connect differently from the check: judge what it got.
        verdict = self._address_verdict(judge, url, (address,))
        if verdict.action == "block":
            self._tainted[data.server] = verdict

    def _connection_judge(self, client: connection.Client) -> Judge:
        """The judge of a connection's group, by its address and the user who opened its tunnel."""
        top = self.runtime.judge
        return top.for_client(str(client.peername[0]), self._tunnel_users.get(client)) if top.grouped else top

    def _address_verdict(self, judge: Judge, url: NormalizedURL, addresses: tuple[str, ...]) -> Verdict:
        """The verdict on addresses alone (allow list and destination exemptions apply)."""
        if all(judge.destination_exempt(a) for a in addresses):
            return Verdict("allow")
        findings = judge.address_findings(addresses, host=None if url.is_ip else url.host)
        return judge.decide(findings, allowed_by=judge.allowed_by(url, addresses))

    def _suspect_server(self, flow: http.HTTPFlow, decision: Decision) -> bool:
        """Whether a response's server is a suspect by what is known before its body.

        A bare address on an odd port, a listed or learned Thingbot, or a server
        whose headers fingerprint as an appliance (what `inspect_response` calls one).
        """
        assert flow.response is not None
        url = decision.url
        if url.is_ip and port_hint(url) is not None:
            return True
        if any(f.code.startswith("landing.") for f in decision.verdict.findings):
            return True
        if self.runtime.judge.learned_entry(url.host) is not None:
            return True
        device = self.runtime.fingerprints.match(traits_from(flow.response.headers.items(multi=True), ""))
        return device is not None and (device.strength == "device" or address_hint(url) is not None
                                       or port_hint(url) is not None)

    def responseheaders(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        """Decide how a body is inspected: held whole (response()), or streamed and sniffed on the way."""
        if self._tainted and flow.server_conn in self._tainted and flow.live:
            # Its headers are here, its body not yet: the page goes instead, held or streamed.
            return self._stop_tainted(flow, self._tainted[flow.server_conn])
        state = flow_state(flow)
        response = flow.response
        if state is None or not state.inspect or response is None or not _has_body(flow):
            return None
        if state.payloads_only and not self._suspect_server(flow, state.decision):
            state.inspect = False  # an ordinary server's resource: today's scope (see module docstring)
            return None
        hold = judge_of(self.runtime, flow).policy.inspect.max_body
        large = bool(response.stream)  # mitmproxy streams what announces more than stream_large_bodies
        unknown = "content-length" not in response.headers and not response.headers.get(
            "content-type", "").lower().startswith(("text/html", "application/xhtml"))
        if not (large or unknown):
            # Held whole and inspected in response(); unless it outgrows max_body on the way
            # (chunked, read to the close), when mitmproxy streams it: then it is sniffed.
            def sniffer() -> _StreamSniffer:
                state.streamed = True
                if state.mark is not None:
                    self._expect_next_hop(flow, state.mark)  # its headers go out now
                return _StreamSniffer(self, flow, state, hold)

            response.__class__ = _WatchedResponse
            response.__dict__["_clickguard_sniffer"] = sniffer
            return None
        state.streamed = True
        # What the headers show (an appliance, a download by name) can still get a page.
        inspection, verdict = self.inspect(flow, state, b"")
        if verdict.action != "allow":
            return self._stop_before_body(flow, state, inspection, verdict)
        if state.mark is not None:
            # The headers go out now: a redirect's Location (or a Refresh) is the click's next hop.
            self._expect_hops(flow, state.mark, inspection.hops)
        response.stream = _StreamSniffer(self, flow, state, hold)
        if flow.request.http_version.startswith("HTTP/1") and not unknown:
            # A blocked body is cut short: closing the connection makes that a failed
            # download, not a client waiting for the bytes its Content-Length promised.
            response.headers["connection"] = "close"
        return None

    async def _stop_before_body(self, flow: http.HTTPFlow, state: FlowState, inspection: Inspection,
                                verdict: Verdict) -> None:
        """The block or warn page instead of a streamed body; the server's body is drained unseen."""
        decision = state.decision
        self.learn(flow, decision, inspection, verdict)
        await self.runtime.sharing.settled()  # a host learned: the other nodes refuse it from now on
        client, user = client_of(flow)
        await self.stop(flow, decision.url.url, decision._replace(verdict=verdict), verdict, client, user,
                        "response", state.mark, inspection=inspection.details())
        assert flow.response is not None
        flow.response.stream = _Replace(flow.response.content or b"")

    def response(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        """Inspect a response; hold it until its audit record is on disk; stop a tainted connection's."""
        # Not `async def`: this runs for every response and rarely has to wait for anything.
        state = flow_state(flow)
        pending = state.record if state is not None else None
        if flow.metadata.get(_TAINTED_KEY):
            return None  # answered with the block page at its headers (responseheaders)
        # A streamed body is judged as it passes (responseheaders): nothing more to do for it here.
        if state is not None and not state.streamed and flow.response is not None:
            if state.inspect and _has_body(flow) and not flow.response.stream \
                    and not (state.payloads_only and not flow.response.raw_content):
                return self._inspect_held(flow, state)
            if state.mark is not None:
                self._expect_next_hop(flow, state.mark)
                if self.runtime.sharing.active:  # the next hop may reach another node: it must know
                    return self.runtime.sharing.settled(then=pending)
        if pending is not None and not pending.done():
            return _wait(pending)
        return None

    async def _inspect_held(self, flow: http.HTTPFlow, state: FlowState) -> None:
        """Read a held body in a worker process, within the deadline; judge what it showed and act on it."""
        rt = self.runtime
        judge = judge_of(rt, flow)
        assert flow.response is not None
        response = flow.response
        url = state.decision.url
        job = BodyJob(url, response.status_code, list(response.headers.items(multi=True)),
                      response.raw_content or b"", judge.policy.inspect.max_body, server_facts(flow))
        details: dict[str, object]
        try:
            reading = await self._read(job)
            inspection = judge_reading(judge, reading, url=url, thingbot=_listed_landing(state.decision))
        except ReadingTimeout:
            logger.warning("inspection of %s passed its deadline (%.1f s)", url.url[:200],
                           rt.inspect_deadline)
            inspection, verdict = _not_inspected(
                judge, f"the response was not inspected within {rt.inspect_deadline:g} s")
            details = {"timeout": True, "deadline_s": rt.inspect_deadline}
        except PoolBusy as e:
            logger.warning("inspection of %s not started: %s", url.url[:200], e)
            inspection, verdict = _not_inspected(judge, "the response could not be inspected: every "
                                                        "inspection worker is busy")
            details = {"busy": True}
        except ReadingFailed as e:  # a heuristic tripping on what a server sent: not the user's fault
            # Logged with the worker's traceback so it gets fixed; the policy decides whether what
            # cannot be inspected passes (on_check_error: open) or not (closed).
            logger.error("inspection failed for %s:\n%s", url.url[:200], e)
            inspection, verdict = _not_inspected(judge, "the response could not be inspected")
            details = {"failed": True}
        except ReadingError as e:  # the worker died (a crash, the OOM killer), or the proxy is stopping
            logger.error("inspection failed for %s: %s", url.url[:200], e)
            inspection, verdict = _not_inspected(judge, "the response could not be inspected")
            details = {"failed": True}
        except Exception:  # judging what was read tripped: a bug, logged with its traceback to be fixed
            logger.exception("inspection failed for %s", url.url[:200])
            inspection, verdict = _not_inspected(judge, "the response could not be inspected")
            details = {"failed": True}
        else:
            if state.payloads_only:
                inspection = _payload_findings(inspection)
            verdict = self._decide(flow, state.decision, inspection)
            details = self.details(inspection, reading.truncated)
        if state.mark is not None:
            self._expect_hops(flow, state.mark, inspection.hops)
        if verdict.action != "allow" or (_worth_a_record(inspection) and is_navigation(flow.request.headers)):
            await self._after_inspection(flow, state, inspection, verdict, details)
        elif state.mark is not None:
            self._expect_next_hop(flow, state.mark)
        if state.mark is not None:
            await rt.sharing.settled()  # the next hop may reach another node (cluster.redis)
        if state.record is not None and not state.record.done():
            await state.record

    async def _read(self, job: BodyJob) -> Reading:
        """A held body's reading: here if small and quick (inline.py), else the pool's; ReadingError."""
        rt = self.runtime
        if (reading := read_here(rt.fingerprints, job, rt.tally.inspection.observe)) is not None:
            return reading
        readers = rt.readers
        work = readers.submit(job, rt.inspect_deadline)
        rt.tally.time_reading(work)
        if not readers.up.done():
            # The proxy is starting: the deadline counts once the workers are (pool.py). Shielded:
            # one flow given up on must not cancel what every flow waits for.
            await asyncio.shield(asyncio.wrap_future(readers.up))
        try:
            # The pool keeps the same deadline (and kills the worker at it); this one is the loop's own.
            return await asyncio.wait_for(asyncio.wrap_future(work), rt.inspect_deadline)
        except TimeoutError:
            work.cancel()  # still queued: it never runs
            raise ReadingTimeout("the reading passed its deadline") from None

    @staticmethod
    def details(inspection: Inspection, truncated: str | None) -> dict[str, object]:
        """What the audit record keeps of an inspection, and why it saw less than the body if it did."""
        details = inspection.details()
        if truncated is not None:
            details["truncated"] = truncated
        return details

    def inspect(self, flow: http.HTTPFlow, state: FlowState, body: bytes) -> tuple[Inspection, Verdict]:
        """Inspect a streamed response's headers and first bytes here, on the loop, and decide.

        ``body`` is at most SNIFF_BYTES: its navigations are read within `head_budget`,
        so what this costs the loop stays small whatever the server sent (module docstring).
        """
        rt = self.runtime
        judge = judge_of(rt, flow)
        decision = state.decision
        assert flow.response is not None
        try:
            reading = read_response(rt.fingerprints, url=decision.url, status=flow.response.status_code,
                                    headers=list(flow.response.headers.items(multi=True)), body=body,
                                    server=server_facts(flow), steps=head_budget(len(body)))
            inspection = judge_reading(judge, reading, url=decision.url, thingbot=_listed_landing(decision))
        except Exception:  # a heuristic tripping on what a server sent: not the user's fault
            logger.exception("inspection failed for %s", decision.url.url[:200])
            return _not_inspected(judge, "the response could not be inspected")
        if state.payloads_only:
            inspection = _payload_findings(inspection)
        return inspection, self._decide(flow, decision, inspection)

    def _decide(self, flow: http.HTTPFlow, decision: Decision, inspection: Inspection) -> Verdict:
        """The verdict on what an inspection found (a continue granted on a warning holds)."""
        rt = self.runtime
        judge = judge_of(rt, flow)
        if not inspection.findings:
            return Verdict("allow")
        verdict = judge.decide([*decision.verdict.findings, *inspection.findings],
                               suspect=inspection.suspect)
        client, user = client_of(flow)
        if verdict.action == "warn" and rt.grants.active(client, user, decision.url.host):
            verdict = verdict._replace(action="allow")  # the user chose to continue
        return verdict

    async def _after_inspection(self, flow: http.HTTPFlow, state: FlowState, inspection: Inspection,
                                verdict: Verdict, details: dict[str, object]) -> None:
        """Audit what inspection found; learn and answer with the block or warn page if policy says so."""
        if state.record is not None:
            await state.record  # the request's record goes first
        decision, mark = state.decision, state.mark
        client, user = client_of(flow)
        if verdict.action == "allow":
            entry = audit_record("response", client, user, decision.url.url, "allow", verdict.findings,
                                 decision=decision, mark=mark, inspection=details,
                                 group=judge_of(self.runtime, flow).group)
            if not await self.recorded(entry):
                seen = viewer(self.runtime.judge.policy.pages, flow.request.headers)
                respond(flow, not_recorded_page(decision.url.url, str(entry["ref"]), seen))
            return
        self.learn(flow, decision, inspection, verdict)
        await self.runtime.sharing.settled()  # a host learned: the other nodes refuse it from now on
        flow.response = None
        await self.stop(flow, decision.url.url, decision._replace(verdict=verdict), verdict, client, user,
                        "response", mark, inspection=details)

    def learn(self, flow: http.HTTPFlow, decision: Decision, inspection: Inspection,
              verdict: Verdict) -> None:
        """Remember a suspect host whose redirect or payload was blocked, so its next request is refused."""
        policy = judge_of(self.runtime, flow).policy
        codes = verdict.codes
        if not (policy.inspect.learn and verdict.action == "block" and inspection.suspect
                and (reasons.RESPONSE_REDIRECT in codes or reasons.RESPONSE_DRIVE_BY in codes)):
            return
        evidence = "; ".join(f.detail for f in inspection.findings if f.code in _EVIDENCE)
        learned = self.runtime.learned
        hosts = [decision.url.host]
        peer = flow.server_conn.peername
        # A name is learned as the name: its address may be a shared host's or a CDN's, and a
        # server only claims to be a camera. The address goes too only when a feed lists it already.
        if not decision.url.is_ip and peer and self.runtime.judge.index.match_ip(str(peer[0]).split("%")[0]):
            hosts.append(str(peer[0]))
        for host in hosts:
            learned.learn(host, evidence[:500], decision.url.url, tuple(codes), policy.inspect.learn_for)
        logger.warning("learned %s as a Thingbot: %s", ", ".join(hosts), evidence[:200])
        task = asyncio.create_task(asyncio.to_thread(learned.save, learned.encoded()))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def record_streamed(self, flow: http.HTTPFlow, state: FlowState, inspection: Inspection,
                        verdict: Verdict, details: dict[str, object]) -> None:
        """Audit (and learn from) a streamed body sniffed: passed on, or cut short after its headers."""
        decision = state.decision
        self.learn(flow, decision, inspection, verdict)
        client, user = client_of(flow)
        entry = audit_record("response", client, user, decision.url.url, verdict.action, verdict.findings,
                             decision=decision, mark=state.mark, inspection=details,
                             streamed=True, group=judge_of(self.runtime, flow).group)
        task = asyncio.create_task(self.recorded(entry))  # its body is under way: it cannot be refused
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        state.verdict = verdict

    def _expect_hops(self, flow: http.HTTPFlow, mark: ClickMark, hops: tuple[str, ...]) -> None:
        """Navigations a clicked page makes by itself (meta refresh, script) are the click's next hops."""
        client, user = client_of(flow)
        for hop in hops:
            try:
                target = normalize_url(hop)
            except URLError:
                continue
            self.runtime.trail.expect(client, user, target.url, mark._replace(hop=mark.hop + 1))

    def _expect_next_hop(self, flow: http.HTTPFlow, mark: ClickMark) -> None:
        """A redirect on a clicked navigation: its target is the click's next hop."""
        assert flow.response is not None
        location = flow.response.headers.get("location")
        if not location or not 300 <= flow.response.status_code < 400:
            return
        try:
            target = normalize_url(urllib.parse.urljoin(request_url(flow), location))
        except (URLError, ValueError):
            return
        client, user = client_of(flow)
        self.runtime.trail.expect(client, user, target.url, mark._replace(hop=mark.hop + 1))

    async def _stop_tainted(self, flow: http.HTTPFlow, verdict: Verdict) -> None:
        """The block page instead of a tainted connection's response; the server's body drained unseen."""
        client, user = client_of(flow)
        flow.metadata[_TAINTED_KEY] = True
        flow.response = None
        await self.stop(flow, request_url(flow), None, verdict, client, user, "connected")
        assert flow.response is not None
        flow.response.stream = _Replace(flow.response.content or b"")

    async def tcp_start(self, flow: tcp.TCPFlow) -> None:
        """Judge a tunnel that carries neither TLS nor HTTP by its host, before its server is connected.

        Such a tunnel has no request inside to judge: its CONNECT host is all there is. A
        verdict other than allow refuses it (no page can be shown in a raw stream).
        """
        server = flow.server_conn
        if server.address is None or server.error or server.via is not None:
            return
        judge = self._connection_judge(flow.client_conn)
        client = str(flow.client_conn.peername[0])
        if judge.client_exempt(client):
            return
        try:
            url = normalize_url(url_of("https", str(server.address[0]), int(server.address[1])))
        except URLError:
            return  # mitmproxy's own connect will fail and say so
        if _excluded(judge.policy.intercept.exclude, url.host):
            return  # judged at its CONNECT (http_connect)
        decision = await check(judge, url, self.runtime.resolver)
        verdict = decision.verdict
        if verdict.action == "allow" or (verdict.action == "warn"
                                         and self.runtime.grants.active(client, None, url.host)):
            return
        server.error = "clickguard: " + "; ".join(f.detail for f in verdict.findings)
        await self.recorded(audit_record("tunnel", client, self._tunnel_users.get(flow.client_conn),
                                         url.url, "block", verdict.findings, decision=decision,
                                         group=judge.group))

    async def recorded(self, entry: dict[str, object]) -> bool:
        """Write an audit record; False only when it was not and audit.on_failure is closed (refuse)."""
        try:
            await self.runtime.record(entry)
        except AuditError as e:
            logger.error("%s; refused (audit.on_failure: closed)", e)
            return False
        return True

    async def enforce(self, flow: http.HTTPFlow, decision: Decision, client: str,
                      user: str | None, event: Event, mark: ClickMark | None = None) -> bool:
        """Audit and pass the flow (True), or answer it with the block or warn page (False)."""
        verdict = decision.verdict
        rt = self.runtime
        host = decision.url.host
        navigation = event != "decision" or mark is not None or is_navigation(flow.request.headers)
        continued = verdict.action == "warn" and rt.grants.active(client, user, host)
        if verdict.action == "allow" or continued:
            if navigation:
                entry = audit_record(event, client, user, decision.url.url, "allow", verdict.findings,
                                     decision=decision, mark=mark, continued=continued or None,
                                     allowed_by=verdict.allowed_by, group=judge_of(rt, flow).group)
                state = flow_state(flow) if event == "decision" else None
                if state is not None and rt.judge.policy.audit.on_failure == "open":
                    # Written while the request travels upstream; the response waits for it, so
                    # nothing reaches the user before its record is on disk.
                    state.record = asyncio.create_task(self.recorded(entry))
                elif not await self.recorded(entry):
                    # closed: what cannot be recorded is refused before the server sees the request.
                    respond(flow, not_recorded_page(decision.url.url, str(entry["ref"]),
                                                    viewer(rt.judge.policy.pages, flow.request.headers)))
                    return False
            return True
        await self.stop(flow, decision.url.url, decision, verdict, client, user, event, mark)
        return False

    async def stop(self, flow: http.HTTPFlow, url: str, decision: Decision | None, verdict: Verdict,
                   client: str, user: str | None, event: Event, mark: ClickMark | None = None,
                   inspection: dict[str, object] | None = None) -> None:
        """Audit, then answer with the block or warn page (the record is on disk first)."""
        entry = audit_record(event, client, user, url, verdict.action, verdict.findings, decision=decision,
                             mark=mark, navigation=is_navigation(flow.request.headers), inspection=inspection,
                             group=judge_of(self.runtime, flow).group)
        recorded = await self.recorded(entry)
        ref = str(entry["ref"])
        seen = viewer(self.runtime.judge.policy.pages, flow.request.headers)  # IT's pages, user's language
        if verdict.action == "block" or decision is None:
            respond(flow, block_page(url, verdict.findings, ref, seen))
            return
        if not recorded:  # no continue link: continuing could not be recorded either
            respond(flow, not_recorded_page(url, ref, seen))
            return
        respond(flow, warn_page(url, verdict.findings, ref, self._continue_url(
            flow, url, verdict.findings, ref, client, user, mark), seen))

    def _continue_url(self, flow: http.HTTPFlow, url: str, findings: tuple[Finding, ...], ref: str,
                      client: str, user: str | None, mark: ClickMark | None) -> str | None:
        """The signed, short-lived continue link for a warn page; None where policy or a reason forbids it."""
        policy = judge_of(self.runtime, flow).policy
        codes = tuple(dict.fromkeys(f.code for f in findings))
        if not policy.warn.allow_continue or not all(reasons.continuable(code) for code in codes):
            return None
        token = continue_token(Continuation(url, client, user, ref, codes, mark), self.runtime.key,
                               expires=time.time() + policy.warn.token_minutes * 60)
        scheme = "https" if flow.request.scheme == "https" else "http"
        return f"{scheme}://{policy.click_host}/continue?t={urllib.parse.quote(token)}"
