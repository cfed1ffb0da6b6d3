"""The judge: one policy and one reputation index, turned into verdicts.

A `Judge` is built completely from a policy and an index and never changes;
reloading either builds a new judge that its owner swaps in with one
assignment, so a request is always judged against one consistent state.

A policy with ``groups:`` gets one judge per group, built with it from the
group's policy (`clickguard.decision.groups`) over the same index and learned
hosts; `Judge.for_client` picks the one for a request's user and client.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from clickguard import reasons
from clickguard.decision.groups import GroupMatcher, group_policy, matcher_of
from clickguard.decision.verdict import Finding, Verdict, finding_from_match
from clickguard.intel.index import Attribution, NetworkMap, ReputationIndex, _Merger
from clickguard.intel.learned import FEED_NAME, LearnedHost, LearnedHosts
from clickguard.policy.model import Policy
from clickguard.reasons import SEVERITY, Action
from clickguard.urls import NormalizedURL, embedded_ipv4, is_ip_host

_LISTED = Attribution("policy", "policy", ())
_NOTHING_FOUND = Verdict("allow", ())  # immutable: one for every clean target


def _learned_finding(entry: LearnedHost, subject: str) -> Finding:
    """landing.thingbot for a host the proxy learned from what it served."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(entry.learned_at))
    return Finding(reasons.LANDING_THINGBOT,
                   f"{subject} was learned as a Thingbot on {when}: {entry.evidence}",
                   FEED_NAME, ("learned",), entry.host)


class _HostList:
    """An allow or deny list: exact hosts, domains with their subdomains, networks."""

    def __init__(self, hosts: Iterable[str], domains: Iterable[str], networks: Iterable[object]) -> None:
        self.hosts = frozenset(hosts)
        self.domains = frozenset(domains)
        self.networks = NetworkMap()
        entries = tuple(networks)
        if entries:  # freezing builds per-octet tables: a few ms, for nothing when there is no network
            merge = _Merger()
            for network in entries:
                self.networks.add_network(str(network), _LISTED, merge)
            self.networks.freeze()
        self.has_networks = bool(entries)

    def host_entry(self, host: str) -> str | None:
        """The entry covering this host name, rendered for people, or None."""
        if host in self.hosts:
            return f"host {host}"
        if not self.domains or not host or is_ip_host(host):
            return None
        # parent_domains(host), longest first, without building the list: this runs per request.
        domain = host
        while True:
            if domain in self.domains:
                return f"domain {domain}"
            dot = domain.find(".")
            if dot < 0:
                return None
            domain = domain[dot + 1:]

    def ip_entry(self, address: str) -> str | None:
        """The network entry covering this address (an IPv4-mapped one as its IPv4), or None.

        Only the address itself: an entry vouches for no other host, and a Teredo or 6to4
        address carries IPv4 addresses its sender chose (see `listed_ip_entry`).
        """
        if not self.has_networks:
            return None
        for entry, _slot in self.networks.lookup(address):
            return f"network {entry}"
        return None

    def listed_ip_entry(self, address: str) -> tuple[str, str] | None:
        """(entry, entry in words) covering this address or an IPv4 address it embeds (NAT64, 6to4…)."""
        if not self.has_networks:
            return None
        entry = self.ip_entry(address)
        if entry is not None:
            return entry, entry
        for inner in embedded_ipv4(address):
            entry = self.ip_entry(inner.ipv4)
            if entry is not None:
                return entry, f"{entry}; the address is {inner}"
        return None


class Judge:
    """Judges URLs, hosts and addresses against one policy and one index."""

    _allow: _HostList
    _deny: _HostList
    _known: _HostList
    _exempt_clients: _HostList
    _exempt_destinations: _HostList

    def __init__(self, policy: Policy, index: ReputationIndex, *,
                 unloaded_feeds: Iterable[str] = (), learned: LearnedHosts | None = None,
                 group: str | None = None, base: Judge | None = None) -> None:
        """A judge of the policy; ``group`` and ``base``: a group's judge, sharing what its group keeps."""
        self.policy = policy
        self.group = group  # the name of the group whose policy this is; None: the top-level one
        self.index = index
        self.unloaded_feeds = tuple(unloaded_feeds)
        # Shared with the judges before and after this one: learning goes on across reloads.
        self.learned = learned if learned is not None else LearnedHosts()
        self._suspect_actions: dict[str, Action] = {
            reasons.RESPONSE_REDIRECT: policy.inspect.appliance_redirect,
            reasons.RESPONSE_DRIVE_BY: policy.inspect.appliance_drive_by,
        }
        if base is not None:
            # A group changes none of these (see decision.groups.group_policy): the top-level's lists serve.
            self._known, self._exempt_clients = base._known, base._exempt_clients
            self._exempt_destinations = base._exempt_destinations
        else:
            self._known = _HostList((), policy.email.known_domains | policy.click_links.skip_domains, ())
            self._exempt_clients = _HostList((), (), policy.never_judge.clients)
            self._exempt_destinations = _HostList((), (), policy.never_judge.destinations)
        self._allow = base._allow if base is not None and policy.allow is base.policy.allow else _HostList(
            policy.allow.hosts, policy.allow.domains, policy.allow.networks)
        self._deny = base._deny if base is not None and policy.deny is base.policy.deny else _HostList(
            policy.deny.hosts, policy.deny.domains, policy.deny.networks)
        # Policy.action_for memoised: the policy is frozen, and reading its table costs a pydantic
        # __getattr__ per finding.
        self._actions: dict[str, Action] = {}
        self._matcher: GroupMatcher | None = matcher_of(policy)
        self._group_judges: tuple[Judge, ...] = tuple(
            Judge(group_policy(policy, g), index, unloaded_feeds=self.unloaded_feeds, learned=self.learned,
                  group=g.name, base=self) for g in policy.groups)

    @property
    def grouped(self) -> bool:
        """Whether the policy has groups (a request's judge may then be a group's)."""
        return self._matcher is not None

    def for_client(self, client: str | None, user: str | None = None,
                   ldap_groups: Iterable[str] = ()) -> Judge:
        """The judge of the first group matching the user, a directory group or the client; else this one."""
        if self._matcher is None:
            return self
        index = self._matcher.index(user, ldap_groups, client)
        return self if index is None else self._group_judges[index]

    def group_judge(self, name: str) -> Judge | None:
        """The judge of the group with this name (case-insensitive), None if the policy has none."""
        key = name.casefold()
        return next((j for j in self._group_judges if (j.group or "").casefold() == key), None)

    def client_exempt(self, client_ip: str) -> bool:
        """True for clients in a network the policy never judges."""
        return self._exempt_clients.ip_entry(client_ip) is not None

    def destination_exempt(self, address: str) -> bool:
        """True for destination addresses the policy never judges."""
        return self._exempt_destinations.ip_entry(address) is not None

    def allowed_by(self, url: NormalizedURL, addresses: Iterable[str] = ()) -> str | None:
        """The allow-list entry that covers this target (its host, or every address it resolves to)."""
        if url.is_ip:
            entry = self._allow.ip_entry(url.host)
        else:
            entry = self._allow.host_entry(url.host)
            addresses = tuple(addresses)
            if entry is None and addresses:
                entries = [self._allow.ip_entry(a) for a in addresses]
                if all(entries):
                    entry = entries[0]
        return f"allow list: {entry}" if entry else None

    def url_findings(self, url: NormalizedURL) -> list[Finding]:
        """Findings from the deny list and the feeds for the URL, its host and an IP-literal host."""
        findings: list[Finding] = []
        if url.is_ip:
            denied = self._deny.listed_ip_entry(url.host)
        else:
            entry = self._deny.host_entry(url.host)
            denied = (entry, entry) if entry else None
        if denied:
            findings.append(Finding(reasons.POLICY_DENY,
                                    f"{url.host} is on the policy's deny list ({denied[1]})",
                                    indicator=denied[0]))
        findings += [finding_from_match(m) for m in self.index.match_url(url)]
        findings += self._learned_findings(url.host)
        return findings

    def _learned_findings(self, address: str, host: str | None = None) -> list[Finding]:
        """landing.thingbot for a host or address learned, or for an IPv4 address it embeds.

        ``host``: the name that resolved to the address, for the detail.
        """
        if not self.learned:
            return []
        for key, words in ((address, address),
                           *((inner.ipv4, f"{address} ({inner})") for inner in embedded_ipv4(address))):
            entry = self.learned.lookup(key)
            if entry is not None:
                return [_learned_finding(entry, f"{host} resolves to {words}, which" if host else words)]
        return []

    def learned_entry(self, host: str) -> LearnedHost | None:
        """The live learned-Thingbot entry of a host name or address, if any."""
        return self.learned.lookup(host) if self.learned else None

    def address_findings(self, addresses: Iterable[str], *, host: str | None = None) -> list[Finding]:
        """Findings for the addresses a host resolves to (or the one the proxy connects to)."""
        findings: list[Finding] = []
        for address in addresses:
            denied = self._deny.listed_ip_entry(address)
            if denied:
                where = f"{host} resolves to {address}" if host else address
                findings.append(Finding(reasons.POLICY_DENY,
                                        f"{where}, on the policy's deny list ({denied[1]})",
                                        indicator=denied[0]))
            findings += [finding_from_match(m, via=host) for m in self.index.match_ip(address)]
            findings += self._learned_findings(address, host)
        return findings

    def decide(self, findings: Iterable[Finding], *, allowed_by: str | None = None,
               incomplete: str | None = None, suspect: bool = False) -> Verdict:
        """The policy's action for these findings; the allow list beats feeds, the deny list beats both.

        ``suspect``: the response came from an appliance or a Thingbot, so its redirects and
        payloads get the policy's inspect.appliance_redirect and appliance_drive_by actions.
        """
        found = tuple(findings)
        if incomplete is not None and self.policy.on_check_error == "closed":
            found = (*found, Finding(reasons.CHECK_INCOMPLETE, incomplete))
        if not found:
            return Verdict("allow", (), allowed_by) if allowed_by is not None else _NOTHING_FOUND
        action: Action = "allow"
        escalated = self._suspect_actions if suspect else {}
        actions = self._actions
        for finding in found:
            code = finding.code
            candidate = actions.get(code)
            if candidate is None:
                candidate = actions[code] = self.policy.action_for(code)
            if code in escalated and SEVERITY[escalated[code]] > SEVERITY[candidate]:
                candidate = escalated[code]
            if SEVERITY[candidate] > SEVERITY[action]:
                action = candidate
        if allowed_by is not None and not any(f.code == reasons.POLICY_DENY for f in found):
            return Verdict("allow", found, allowed_by)
        return Verdict(action, found)

    def origin_findings(self, address: str, landing_host: str | None = None, *,
                        home_line: str | None = None) -> list[Finding]:
        """Findings for the address that handed an e-mail to the first trusted relay.

        ``home_line``: the evidence, in words, that the relay's Received: header shows a
        home line (`clickguard.mail.home_line`); it adds ``origin.home_line`` whether or not
        a feed lists the address. With the landing host, a listed or home-line origin whose
        link leads to a host the organisation does not know adds ``origin.unknown_landing``
        (policies may block it).
        """
        findings = [
            Finding(reasons.origin_code(m.attribution.category),
                    f"the e-mail was handed over by {m.subject}, "
                    + finding_from_match(m).detail.removeprefix(f"{m.subject} is "),
                    m.attribution.feed, m.attribution.tags, m.indicator)
            for m in self.index.match_ip(address)
        ]
        if home_line:
            findings.append(Finding(
                reasons.ORIGIN_HOME_LINE,
                f"the e-mail was handed straight to the organisation's relay by {address}, "
                f"a home line: {home_line}", indicator=address))
        if findings and landing_host is not None and not self.known_landing(landing_host):
            findings.append(Finding(
                reasons.ORIGIN_UNKNOWN_LANDING,
                f"the link leads to {landing_host}, which the organisation does not know "
                "(not in allow, email.known_domains or click_links.skip_domains)",
                indicator=landing_host))
        return findings

    def known_landing(self, host: str) -> bool:
        """Whether the organisation knows a landing host: allow-listed, or a known or skipped domain."""
        return self._known.host_entry(host) is not None or self._allow.host_entry(host) is not None
