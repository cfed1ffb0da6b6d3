"""A synthetic phishing campaign, recorded as the proxy would record it, for report tests and `make bench`.

Users receive mail with click links; over a chosen share of the clicks the
mail was handed over by a Thingbot (an address taken from the real feed
snapshots in ``../shared/data/feeds``: maltrail's IoT trails, ipsum, URLhaus),
and those clicks carry the ``origin.thingbot`` finding with that feed and its
tags, as ``Judge.origin_findings`` writes it. The rest come from clean
addresses (documentation ranges and public-looking addresses no feed lists).
Around the clicks: landings on Thingbots (blocked), warnings (some continued),
redirect hops, appliance landings with their fingerprint (some serving a
payload), bad signatures and ordinary browsing.

The generator counts what it writes, so the figures it returns are exact:
a report over the same records must show the same numbers.

    figures = write_campaign(Path("audit.jsonl"), clicks=10_000, users=500)
    campaign = Campaign(users=500); rows = campaign.records(records=1_000_000)
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import itertools
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script (bench/run.py) as well as imported from tests
    sys.path.insert(0, str(REPO))

from clickguard.intel.parsers import Kind, parse_feed  # noqa: E402

DEFAULT_FEEDS = Path(os.environ.get("CLICKGUARD_SHARED_DATA", REPO.parent / "shared" / "data")) / "feeds"

# Records per click on average with the probabilities below (1.79 to 1.81 measured), a little
# low: a bulk campaign spreads its clicks over its days before knowing how many it will take,
# and had better end a little early than pile its last clicks up at the end.
_RECORDS_PER_CLICK = 1.77

# Appliances the landings fingerprint as: (fingerprint name, class, trait, evidence), from
# policies/fingerprints.
_APPLIANCES = (
    ("TP-Link router login realm", "router", "realm", 'Basic realm="TP-LINK Wireless N Router WR841N"'),
    ("Hikvision camera/DVR web server", "camera", "server", "DNVRS-Webs"),
    ("Hikvision NVR web server", "dvr", "server", "DVRDVS-Webs"),
    ("Synology DSM web server", "nas", "server", "nginx (Synology DSM)"),
    ("Samsung TV DMR service", "tv", "server", "Samsung DMR"),
    ("HP printer Chai embedded server", "printer", "server", "HP-ChaiSOE/1.0"),
    ("Shelly device login realm", "smart_appliance", "realm", 'Basic realm="Shelly"'),
)
# Cumulative weights: routers and cameras dominate, as in the wild.
_APPLIANCE_WEIGHTS = list(itertools.accumulate((40, 25, 12, 8, 6, 5, 4)))

_PAYLOADS = (
    ("elf", "arm", "ELF executable (ARM)", "Mozi.m"),
    ("elf", "mips", "ELF executable (MIPS)", "mips"),
    ("shell", None, "shell dropper", "i.sh"),
    ("pe", "x86", "Windows executable", "invoice.exe"),
)

_SITES = ("news.example.com", "shop.example.net", "docs.example.org", "intranet.example.com",
          "mail.example.com", "cdn.example.net", "video.example.org", "bank.example.com")
_UNKNOWN = ("login-verify.example.xyz", "secure-update.example.top", "parcel-track.example.info",
            "account-check.example.click", "invoice-view.example.biz", "prize.example.icu")
_PHISHING = ("paypa1-login.example.xyz", "micros0ft-auth.example.top", "dhl-redelivery.example.info")


class Origin(NamedTuple):
    """An address listed by a Thingbot feed, with the feed's name and the entry's tags."""

    ip: str
    feed: str
    tags: tuple[str, ...]


def thingbot_origins(feeds_dir: Path, *, seed: int = 1, per_feed: int = 1500) -> list[Origin]:
    """A few thousand IPv4 addresses from the IoT feeds (maltrail trails, ipsum, URLhaus), with tags."""
    rng = random.Random(seed)
    sources: list[tuple[str, str, Path]] = [
        ("maltrail", path.stem, path) for path in sorted((feeds_dir / "maltrail_iot").glob("elf_*.txt"))]
    sources += [("ipsum", "ipsum", feeds_dir / "ipsum" / "ipsum.txt"),
                ("urlhaus_csv", "urlhaus", feeds_dir / "urlhaus" / "urlhaus_csv_online_2026-01-27.csv")]
    origins: list[Origin] = []
    for fmt, name, path in sources:
        # ipsum: only addresses several lists agree on, as a cautious policy would load it.
        parsed = parse_feed(fmt, path.read_text(encoding="utf-8"), min_count=3)
        found = {i.value: i.tags for i in parsed.all() if i.kind == Kind.IP and ":" not in i.value}
        keys = sorted(found)
        # The small trails (Hajime, VPNFilter…) whole; the big ones sampled.
        picked = keys if len(keys) <= per_feed // 5 else rng.sample(keys, min(per_feed, len(keys)))
        origins += [Origin(ip, name, tuple(found[ip])) for ip in picked]
    if not origins:
        raise ValueError(f"no Thingbot addresses found under {feeds_dir}")
    return origins


def clean_origins(rng: random.Random, listed: set[str], count: int = 2000) -> list[str]:
    """Mail servers no feed lists: the documentation ranges and public-looking random addresses."""
    out = [str(ip) for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
           for ip in ipaddress.ip_network(net).hosts()]
    while len(out) < count + 762:
        ip = ipaddress.IPv4Address(rng.randrange(0x0B000000, 0xDF000000))
        if ip.is_global and str(ip) not in listed:
            out.append(str(ip))
    return out


@functools.lru_cache(maxsize=4)
def _minute(minute: int) -> str:
    """'YYYY-MM-DDTHH:MM:' of a minute since the epoch."""
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")


def iso(ts: float) -> str:
    """A timestamp as the audit log writes it (ISO 8601 UTC, milliseconds, Z)."""
    # Formatting a datetime per record is most of a bulk campaign's time; records come in
    # time order, so the minute's prefix is nearly always the one just used.
    fraction, whole = math.modf(ts)  # as datetime does it: microseconds rounded, then cut to ms
    ms = int(whole) * 1000 + round(fraction * 1e6) // 1000
    minute, rest = divmod(ms, 60_000)
    return f"{_minute(minute)}{rest // 1000:02d}.{rest % 1000:03d}Z"


class Campaign:
    """A campaign's cast (users, origins, landings) and a generator of its audit records."""

    def __init__(self, *, users: int = 500, thingbot_share: float = 0.27, seed: int = 1,
                 feeds_dir: Path | None = None, end: float | None = None, days: float = 7.0) -> None:
        if users < 1 or not 0.0 <= thingbot_share <= 1.0 or days <= 0:
            raise ValueError("users >= 1, 0 <= thingbot_share <= 1 and days > 0 expected")
        self.rng = random.Random(seed)
        self.seed = seed
        self.thingbot_share = thingbot_share
        self.end = time.time() if end is None else end
        self.start = self.end - days * 86400
        self.thingbots = thingbot_origins(feeds_dir or DEFAULT_FEEDS, seed=seed)
        listed = {o.ip for o in self.thingbots}
        addresses = clean_origins(self.rng, listed, 2400)
        self.clean, device_addresses = addresses[:-400], addresses[-400:]
        # A few senders send most Thingbot mail, and a few people receive most of it: Zipf-like
        # weights make the "most targeted" tables meaningful.
        self._origin_weights = list(itertools.accumulate(1 / (i + 1) ** 0.9
                                                         for i in range(len(self.thingbots))))
        self.rng.shuffle(self.thingbots)
        self._user_weights = list(itertools.accumulate(1 / (i + 1) ** 0.7 for i in range(users)))
        self.people = [self._person(i) for i in range(users)]
        # The appliances links lead to, each answering several times over the campaign.
        self.devices = [(addr, _APPLIANCES[bisect.bisect(_APPLIANCE_WEIGHTS, self.rng.random()
                                                         * _APPLIANCE_WEIGHTS[-1])])
                        for addr in device_addresses]
        self.figures: dict[str, Any] = {}
        self._serial = 0

    def _person(self, i: int) -> tuple[str, str | None, str | None]:
        """(client address, proxy user or None, click link recipient or None) of user i."""
        client = f"10.{20 + i // 65000}.{i // 250 % 256}.{i % 250 + 1}"
        address = f"user{i:04d}@corp.example"
        kind = i % 10
        if kind < 3:  # the proxy authenticates these: the audit log names the user
            return client, f"user{i:04d}", address
        if kind < 7:  # recipients in plain text
            return client, None, address
        if kind < 9:  # recipients hashed with the signing key (16 hex digits)
            return client, None, f"{(i * 0x9E3779B97F4A7C15 + self.seed) & (2**64 - 1):016x}"
        return client, None, None  # links without a recipient: only the client identifies them

    def _ref(self) -> str:
        """A unique 12-hex reference id (a bijection of a counter, so it never collides)."""
        self._serial += 1
        return f"{(self._serial * 0x5DEECE66D + 0xB) & (2**48 - 1):012x}"

    def records(self, *, clicks: int | None = 10_000, records: int | None = None) -> Iterator[dict[str, Any]]:
        """The audit records of ``clicks`` clicks, or of as many as make exactly ``records`` records.

        ``figures`` holds what was written once the iterator is exhausted.
        """
        if records is not None:
            clicks = None
        elif clicks is None:
            raise ValueError("clicks or records expected")
        expected = clicks if clicks is not None else max(1, int((records or 0) / _RECORDS_PER_CLICK))
        counts: Counter[str] = Counter()
        targeted: Counter[str] = Counter()
        thingbot_mail: Counter[str] = Counter()
        clickers: set[str] = set()
        first = last = None
        written = 0
        n = 0
        while (clicks is not None and n < clicks) or (records is not None and written < records):
            ts = self.start + (self.end - self.start) * min(n + self.rng.random(), expected - 1e-6) / expected
            for record in self._click(ts, n):
                if records is not None and written >= records:
                    break
                written += 1
                event, action = record["event"], record["action"]
                who = record["user"] or record.get("recipient") or record["client"]
                counts["records"] += 1
                counts[f"event:{event}"] += 1
                counts[f"action:{action}"] += 1
                if event in ("click", "hop") and action in ("block", "warn"):
                    targeted[who] += 1
                if event == "click":
                    clickers.add(who)
                    if "origin.thingbot" in record["reasons"]:
                        thingbot_mail[who] += 1
                first = record["ts"] if first is None else min(first, record["ts"])
                last = record["ts"] if last is None else max(last, record["ts"])
                yield record
            n += 1
        clicked = counts["event:click"]
        thingbot = sum(thingbot_mail.values())
        self.figures = {
            "records": counts["records"],
            "clicks": clicked,
            "thingbot_clicks": thingbot,
            "thingbot_share": 100.0 * thingbot / clicked if clicked else 0.0,
            "blocks": counts["action:block"],
            "warns": counts["action:warn"],
            "continues": counts["event:continue"],
            "hops": counts["event:hop"],
            "responses": counts["event:response"],
            "decisions": counts["event:decision"],
            "users": len(clickers),
            "targeted": dict(targeted),
            "thingbot_mail": dict(thingbot_mail),
            "first": first,
            "last": last,
        }

    def _click(self, ts: float, n: int) -> list[dict[str, Any]]:
        """One click and what followed it (hops, a continue, an appliance's response), plus browsing."""
        rng = self.rng
        person = self.people[bisect.bisect(self._user_weights, rng.random() * self._user_weights[-1])]
        client, user, recipient = person
        out: list[dict[str, Any]] = []
        if rng.random() < 0.002:  # a link someone edited: the signature fails, nothing else is known
            out.append(self._record(ts, "click", client, user, "http://clickguard.local/v1/AAAA/x",
                                    "block", [{"code": "link.bad_signature",
                                               "detail": "click link refused: bad signature"}]))
            return out
        thingbot = rng.random() < self.thingbot_share
        click_id = self._ref()
        context: dict[str, Any] = {"click_id": click_id, "recipient": recipient}
        findings: list[dict[str, Any]] = []
        if thingbot:
            weights = self._origin_weights
            sender = self.thingbots[bisect.bisect(weights, rng.random() * weights[-1])]
            context["origin_ip"] = sender.ip
            finding: dict[str, Any] = {
                "code": "origin.thingbot",
                "detail": f"the e-mail was handed over by {sender.ip}, listed by feed '{sender.feed}'",
                "feed": sender.feed, "indicator": sender.ip}
            if sender.tags:
                finding["tags"] = list(sender.tags)
            findings.append(finding)
        else:
            context["origin_ip"] = rng.choice(self.clean)
        roll = rng.random()
        if roll < (0.35 if thingbot else 0.03):  # the link leads to a Thingbot itself
            landing = rng.choice(self.thingbots)
            port, path = rng.choice((80, 8080, 7547, 37215)), rng.choice(("i", "bins/mips", "x.sh"))
            url = f"http://{landing.ip}:{port}/{path}"
            host = landing.ip
            finding = {"code": "landing.thingbot", "detail": f"{host} is listed by feed '{landing.feed}'",
                       "feed": landing.feed, "indicator": host}
            if landing.tags:
                finding["tags"] = list(landing.tags)
            findings.append(finding)
            action = "block"
        elif not thingbot and roll < 0.05:  # a phishing site an ordinary mail server delivered
            host = rng.choice(_PHISHING)
            url = f"https://{host}/signin?id={n}"
            findings.append({"code": "landing.phishing", "detail": f"{url} is listed by feed 'openphish'",
                             "feed": "openphish", "indicator": url})
            action = "block"
        elif thingbot:  # an unknown site from Thingbot mail: warned
            host = rng.choice(_UNKNOWN)
            url = f"https://{host}/{n:x}"
            findings.append({"code": "origin.unknown_landing",
                             "detail": f"the link leads to {host}, which the organisation does not know",
                             "indicator": host})
            action = "warn"
        else:
            host = rng.choice(_SITES)
            url = f"https://{host}/article/{n}"
            action = "allow"
        out.append(self._record(ts, "click", client, user, url, action, findings, host=host, hop=0,
                                ref=click_id, **context))
        hop = 1
        if action == "warn":
            if rng.random() >= 0.3:
                return out
            warn_ref = click_id
            codes = list(dict.fromkeys(f["code"] for f in findings))
            out.append(self._record(ts + 20, "continue", client, user, url, "allow",
                                    [{"code": c, "detail": "the user chose to continue past the warning"}
                                     for c in codes], host=host, warn_ref=warn_ref,
                                    origin_ip=context["origin_ip"], click_id=click_id))
            out.append(self._record(ts + 21, "hop", client, user, url, "allow", findings, host=host,
                                    hop=hop, continued=True, **context))
            hop += 1
        elif action == "allow" and rng.random() < 0.5:  # the site's own redirect, then the page
            out.append(self._record(ts + 1, "hop", client, user, url, "allow",
                                    findings, host=host, hop=hop, **context))
            hop += 1
            if rng.random() < 0.04:  # a compromised site redirecting to a Thingbot: the hop is blocked
                landing = rng.choice(self.thingbots)
                finding = {"code": "landing.thingbot",
                           "detail": f"{landing.ip} is listed by feed '{landing.feed}'",
                           "feed": landing.feed, "indicator": landing.ip}
                if landing.tags:
                    finding["tags"] = list(landing.tags)
                out.append(self._record(ts + 1.5, "hop", client, user, f"http://{landing.ip}/", "block",
                                        [finding], host=landing.ip, hop=hop, **context))
                return out
        if action != "block" and rng.random() < 0.12:  # it redirects to an appliance
            device, (name, device_class, trait, evidence) = rng.choice(self.devices)
            target = f"http://{device}:8080/"
            served = [{"code": "landing.appliance", "detail": f"{name}: {trait} {evidence}",
                       "indicator": device}]
            inspection: dict[str, Any] = {"fingerprint": {
                "name": name, "class": device_class, "strength": "device", "trait": trait,
                "evidence": evidence, "appliance": True}}
            response_action = "allow"
            if rng.random() < 0.3:  # and the appliance hands over a bot binary
                kind, arch, label, filename = rng.choice(_PAYLOADS)
                served.append({"code": "response.drive_by", "detail": f"{label} {filename}"})
                inspection["payload"] = {"kind": kind, "arch": arch, "label": label, "filename": filename,
                                         "declared_type": "application/octet-stream", "evidence": [label]}
                inspection["suspect"] = True
                response_action = "block"
            out.append(self._record(ts + 2, "hop", client, user, target, "allow", findings,
                                    host=device, hop=hop, **context))
            out.append(self._record(ts + 2.2, "response", client, user, target, response_action,
                                    [*findings, *served], host=device, hop=hop, inspection=inspection,
                                    **context))
        if rng.random() < 0.2:  # ordinary browsing meanwhile: one in ten a listed host
            listed = rng.random() < 0.1
            site = rng.choice(self.thingbots).ip if listed else rng.choice(_SITES)
            browse = ([{"code": "landing.thingbot", "detail": f"{site} is listed", "feed": "ipsum",
                        "indicator": site}] if listed else [])
            out.append(self._record(ts + 30, "decision", client, user, f"http://{site}/",
                                    "block" if listed else "allow", browse, host=site))
        return out

    def _record(self, ts: float, event: str, client: str, user: str | None, url: str, action: str,
                details: list[dict[str, Any]], *, ref: str | None = None, origin_ip: str | None = None,
                **extra: Any) -> dict[str, Any]:
        """One record, shaped as audit.record shapes it (extra keys only when not None)."""
        out: dict[str, Any] = {
            "ts": iso(ts), "ref": ref or self._ref(), "event": event, "client": client, "user": user,
            "url": url, "action": action, "reasons": list(dict.fromkeys(d["code"] for d in details)),
            "details": details, "origin_ip": origin_ip,
        }
        out.update((k, v) for k, v in extra.items() if v is not None)
        return out


def write_campaign(path: Path, *, clicks: int = 10_000, users: int = 500, thingbot_share: float = 0.27,
                   seed: int = 1, feeds_dir: Path | None = None, records: int | None = None,
                   end: float | None = None, days: float = 7.0) -> dict[str, Any]:
    """Write a campaign as a JSON Lines audit log; the exact figures written (clicks, Thingbot share…).

    ``records`` (bulk mode) replaces ``clicks``: exactly that many records. ``feeds_dir``
    defaults to ``../shared/data/feeds`` beside the repository ($CLICKGUARD_SHARED_DATA/feeds).
    """
    campaign = Campaign(users=users, thingbot_share=thingbot_share, seed=seed, feeds_dir=feeds_dir,
                        end=end, days=days)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    with open(path, "w", encoding="utf-8") as f:
        for batch in itertools.batched(campaign.records(clicks=clicks, records=records), 10_000):
            f.write("".join(dumps(r) + "\n" for r in batch))
    return campaign.figures
