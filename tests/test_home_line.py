"""Home-line origins: judged from the Received: header the organisation's relay wrote, no feed needed.

The sender shapes below are spelled from public knowledge of how each provider names
its relays and how each ISP names its home lines (no real mail is copied); every shape
is written the way Postfix, Exim, Sendmail, qmail and Exchange record it, so that the
measure holds whatever the organisation's relay is. Goal: zero false positives on the
relays of large providers, lists, forwarders and gateways; every home line recognised.
"""

from __future__ import annotations

import email
import ipaddress
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clickguard.decision.judge import Judge
from clickguard.errors import TokenError
from clickguard.intel.index import ReputationIndex
from clickguard.mail.home_line import HomeLine, OriginAddress, Sender, Sign, describe, judge_sender
from clickguard.mail.links import click_context, make_click_link, verify_click_link
from clickguard.mail.origin import TrustedBoundary, origin_of_message, read_sender
from clickguard.policy.model import parse_policy
from clickguard.tokens import b64url_decode, b64url_encode
from tests.harness import HTML, continue_link, start_proxy, upstream, write_policy

RELAY = "mx1.corp.example"
DATE = "Mon, 15 Jan 2024 09:12:01 +0000"


def _literal(ip: str) -> str:
    return f"IPv6:{ip}" if ":" in ip else ip


# How each relay records (HELO, reverse name or None, address); Exchange never writes a reverse name.
def postfix(helo: str, rdns: str | None, ip: str) -> str:
    return (f"from {helo} ({rdns or 'unknown'} [{_literal(ip)}])\r\n\t(using TLSv1.3 with cipher "
            f"TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n\tby {RELAY} (Postfix) with ESMTPS id 4TQ2Xk1v2Wz9sQ"
            f"\r\n\tfor <alice@corp.example>; {DATE} (UTC)")


def exim(helo: str, rdns: str | None, ip: str) -> str:
    if rdns is None:
        sender = f"[{ip}] (helo={helo})"
    else:
        sender = f"{rdns} ([{ip}]" + ("" if helo == rdns else f" helo={helo}") + ")"
    return (f"from {sender}\n\tby {RELAY} with esmtps  (TLS1.3) tls TLS_AES_256_GCM_SHA384\n\t(Exim 4.96)"
            f"\n\t(envelope-from <news@sender.example>)\n\tid 1rPq2x-0004Ab-1f\n\t"
            f"for alice@corp.example; {DATE}")


def sendmail(helo: str, rdns: str | None, ip: str) -> str:
    seen = f"{rdns} [{ip}]" if rdns else f"[{ip}]"
    return (f"from {helo} ({seen})\n\tby {RELAY} (8.17.1/8.17.1) with ESMTP id 40F9C1aB012345\n\t"
            f"for <alice@corp.example>; {DATE}")


def qmail(helo: str, rdns: str | None, ip: str) -> str:
    greeting = "" if helo == rdns else f" (HELO {helo})"
    return f"from {rdns or 'unknown'}{greeting} ({ip})\n  by {RELAY} with SMTP; 15 Jan 2024 09:12:01 -0000"


def exchange(helo: str, rdns: str | None, ip: str) -> str:
    return (f"from {helo} ({ip}) by {RELAY} (10.0.0.5) with Microsoft SMTP Server (version=TLS1_2, "
            f"cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7202.20; {DATE}")


type Writer = Callable[[str, str | None, str], str]
WITH_REVERSE_NAME: list[Writer] = [postfix, exim, sendmail, qmail]
EVERY_RELAY: list[Writer] = [*WITH_REVERSE_NAME, exchange]

# (what, HELO, reverse name, address): relays of large providers, lists, forwarders, gateways.
LEGITIMATE: list[tuple[str, str, str | None, str]] = [
    ("gmail", "mail-wr1-f54.google.com", "mail-wr1-f54.google.com", "209.85.221.54"),
    ("gmail-sor", "mail-sor-f41.google.com", "mail-sor-f41.google.com", "209.85.220.41"),
    ("gmail-ipv6", "mail-ej1-x62c.google.com", "mail-ej1-x62c.google.com", "2a00:1450:4864:20::62c"),
    ("google-groups", "mail-yw1-f200.google.com", "mail-yw1-f200.google.com", "209.85.128.200"),
    ("google-smtp-relay", "mail-qt1-f227.google.com", "mail-qt1-f227.google.com", "209.85.160.227"),
    ("outlook-nam", "NAM12-DM6-obe.outbound.protection.outlook.com",
     "mail-dm6nam12on2087.outbound.protection.outlook.com", "40.107.243.87"),
    ("outlook-eur", "EUR05-AM6-obe.outbound.protection.outlook.com",
     "mail-am6eur05on2098.outbound.protection.outlook.com", "40.107.22.98"),
    ("outlook-ipv6", "EUR03-DBA-obe.outbound.protection.outlook.com",
     "mail-dbaeur03on2061b.outbound.protection.outlook.com", "2a01:111:f400:fe1a::61b"),
    ("hotmail", "EUR04-VI1-obe.outbound.protection.outlook.com",
     "mail-vi1eur04olkn2016.outbound.protection.outlook.com", "40.92.75.16"),
    ("yahoo", "sonic312-21.consmr.mail.ne1.yahoo.com", "sonic312-21.consmr.mail.ne1.yahoo.com",
     "66.163.190.147"),
    ("yahoo-gate", "sonic.gate.mail.ne1.yahoo.com", "sonic302-3.consmr.mail.bf2.yahoo.com", "74.6.129.42"),
    ("aol", "sonic313-15.consmr.mail.ne1.yahoo.com", "sonic313-15.consmr.mail.ne1.yahoo.com",
     "66.163.189.203"),
    ("icloud", "mr85p00im-ztdg06021801.me.com", "mr85p00im-ztdg06021801.me.com", "17.58.23.186"),
    ("icloud-2", "st43p00im-ztfb10061701.me.com", "st43p00im-ztfb10061701.me.com", "17.58.63.179"),
    ("amazon-ses", "a48-108.smtp-out.amazonses.com", "a48-108.smtp-out.amazonses.com", "54.240.48.108"),
    ("amazon-ses-eu", "e226-2.smtp-out.eu-west-1.amazonses.com", "e226-2.smtp-out.eu-west-1.amazonses.com",
     "23.251.226.2"),
    ("sendgrid", "wrqvbqpd.outbound-mail.sendgrid.net", "wrqvbqpd.outbound-mail.sendgrid.net",
     "149.72.154.232"),
    ("sendgrid-branded", "o1.email.shop.example", "o1.email.shop.example", "167.89.12.34"),
    ("mandrill", "mail180-8.suw21.mandrillapp.com", "mail180-8.suw21.mandrillapp.com", "198.2.180.8"),
    ("mailchimp", "mail186-10.suw21.mcdlv.net", "mail186-10.suw21.mcdlv.net", "198.2.186.10"),
    ("mailchimp-mcsv", "mail5.sea91.mcsv.net", "mail5.sea91.mcsv.net", "205.201.133.5"),
    ("salesforce", "smtp07-ia4-sp3.mta.salesforce.com", "smtp07-ia4-sp3.mta.salesforce.com", "13.110.6.222"),
    ("salesforce-mc", "mta.email.newsletter.example", "mta.email.newsletter.example", "136.147.176.3"),
    ("mailgun", "m228-5.mailgun.net", "m228-5.mailgun.net", "159.135.228.5"),
    ("sparkpost", "mta-70-88.sparkpostmail.com", "mta-70-88.sparkpostmail.com", "192.174.70.88"),
    ("postmark", "mta201a-ord.mtasv.net", "mta201a-ord.mtasv.net", "50.31.156.6"),
    ("zoho", "sender4-op-o12.zoho.com", "sender4-op-o12.zoho.com", "136.143.188.12"),
    ("fastmail", "fout-a1-smtp.messagingengine.com", "fout-a1-smtp.messagingengine.com", "103.168.172.144"),
    ("fastmail-out", "out1-smtp.messagingengine.com", "out1-smtp.messagingengine.com", "66.111.4.25"),
    ("gmx", "mout.gmx.net", "mout.gmx.net", "212.227.17.22"),
    ("web.de", "mout.web.de", "mout.web.de", "212.227.15.3"),
    ("ionos", "mout.kundenserver.de", "mout.kundenserver.de", "212.227.126.131"),
    ("t-online", "mailout11.t-online.de", "mailout11.t-online.de", "194.25.134.85"),
    ("orange", "smtp.smtpout.orange.fr", "smtp-21.smtpout.orange.fr", "80.12.242.21"),
    ("comcast-smarthost", "resomta-ch2-08v.sys.comcast.net", "resomta-ch2-08v.sys.comcast.net",
     "96.102.19.37"),
    ("comcast-smarthost-2", "resqmta-po-01v.sys.comcast.net", "resqmta-po-01v.sys.comcast.net",
     "96.114.154.160"),
    ("yandex-forward", "forward100p.mail.yandex.net", "forward100p.mail.yandex.net", "178.154.239.79"),
    ("mail.ru", "smtp47.i.mail.ru", "smtp47.i.mail.ru", "94.100.177.107"),
    ("qq", "out203-205-221-233.mail.qq.com", "out203-205-221-233.mail.qq.com", "203.205.221.233"),
    ("163", "m12-17.163.com", "m12-17.163.com", "220.181.12.17"),
    ("protonmail", "mail-4322.protonmail.ch", "mail-4322.protonmail.ch", "185.70.43.22"),
    ("mailman-python", "mail.python.org", "mail.python.org", "188.166.95.178"),
    ("lists.debian.org", "bendel.debian.org", "bendel.debian.org", "82.195.75.100"),
    ("groups.io", "web01.groups.io", "web01.groups.io", "66.175.222.12"),
    ("sourceforge-lists", "lists.sourceforge.net", "lists.sourceforge.net", "216.105.38.7"),
    ("vger", "vger.kernel.org", "vger.kernel.org", "23.128.96.18"),
    ("pobox-forward", "pb-smtp1.pobox.com", "pb-smtp1.pobox.com", "64.147.108.70"),
    ("forwardemail", "mx1.forwardemail.net", "mx1.forwardemail.net", "121.127.44.56"),
    ("proofpoint", "mx0a-00176a03.pphosted.com", "mx0a-00176a03.pphosted.com", "148.163.156.1"),
    ("proofpoint-b", "mx0b-001b2d01.pphosted.com", "mx0b-001b2d01.pphosted.com", "148.163.158.5"),
    ("proofpoint-essentials", "mx1-us1.ppe-hosted.com", "mx1-us1.ppe-hosted.com", "67.231.154.162"),
    ("mimecast", "us-smtp-delivery-162.mimecast.com", "us-smtp-delivery-162.mimecast.com", "170.10.133.162"),
    ("mimecast-eu", "eu-smtp-delivery-151.mimecast.com", "eu-smtp-delivery-151.mimecast.com",
     "185.58.85.151"),
    ("barracuda", "outbound-ip168b.ess.barracuda.com", "outbound-ip168b.ess.barracuda.com",
     "209.222.82.168"),
    ("ironport", "alln-iport-4.cisco.com", "alln-iport-4.cisco.com", "173.37.142.91"),
    ("ironport-cloud", "esa2.hc3370-68.iphmx.com", "esa2.hc3370-68.iphmx.com", "68.232.149.20"),
    ("messagelabs", "mail1.bemta25.messagelabs.com", "mail1.bemta25.messagelabs.com", "195.245.230.1"),
    ("sophos", "mfid-euw1.prod.hydra.sophos.com", "mfid-euw1.prod.hydra.sophos.com", "3.250.123.45"),
    ("partner-gateway", "mail.partner.example", "mail.partner.example", "203.0.113.25"),
    ("partner-exchange-internal-helo", "EXCH01.partner.local", "mail.partner.example", "203.0.113.26"),
    ("cloud-vm-default-ptr", "app.startup.example", "ec2-54-93-12-34.eu-central-1.compute.amazonaws.com",
     "54.93.12.34"),
    ("hetzner-default-ptr", "mail.club.example", "static.88.198.12.34.clients.your-server.de",
     "88.198.12.34"),
    ("gcp-default-ptr", "app.startup.example", "34.12.93.34.bc.googleusercontent.com", "34.93.12.34"),
    ("static-business-own-server", "mail.smallco.example", "static-71-105-33-12.nycmny.fios.verizon.net",
     "71.105.33.12"),
    # A relay's passing DNS failure: "unknown", but the HELO is a proper name.
    ("gmail-dns-failure", "mail-wr1-f54.google.com", None, "209.85.221.54"),
]

# (what, HELO a bot might give that shows nothing by itself, reverse name, address): home lines of big ISPs.
BOT_HELO = "smtp.parcel-service.example"
HOME_LINES: list[tuple[str, str, str | None, str]] = [
    ("comcast", BOT_HELO, "c-73-15-22-9.hsd1.ca.comcast.net", "73.15.22.9"),
    ("verizon-fios", BOT_HELO, "pool-71-105-33-12.nycmny.fios.verizon.net", "71.105.33.12"),
    ("telekom", BOT_HELO, "p5dc2a1b3.dip0.t-ipconnect.de", "93.194.161.179"),
    ("telekom-ipv6", BOT_HELO, "p200300c1e71a2b00b1e8a6a2b8c9d0e1.dip0.t-ipconnect.de",
     "2003:c1:e71a:2b00:b1e8:a6a2:b8c9:d0e1"),
    ("bt", BOT_HELO, "host86-150-33-21.range86-150.btcentralplus.com", "86.150.33.21"),
    ("charter", BOT_HELO, "cpe-74-72-18-201.nyc.res.rr.com", "74.72.18.201"),
    ("spectrum", BOT_HELO, "syn-098-123-045-067.res.spectrum.com", "98.123.45.67"),
    ("vodafone-cable", BOT_HELO, "ip5f5a1b2c.dynamic.kabel-deutschland.de", "95.90.27.44"),
    ("vodafone-dsl", BOT_HELO, "dslb-088-072-123-045.088.072.pools.vodafone-ip.de", "88.72.123.45"),
    ("talktalk", BOT_HELO, "host-2-31-14-5.as13285.net", "2.31.14.5"),
    ("orange-fr", BOT_HELO, "lfbn-lyo-1-1234-56.w90-12.abo.wanadoo.fr", "90.12.34.56"),
    ("plus-pl", BOT_HELO, "apn-46-215-1-2.dynamic.gprs.plus.pl", "46.215.1.2"),
    ("virgin-media", BOT_HELO, "cpc123456-brnt4-2-0-cust789.4-2.cable.virginm.net", "86.5.12.34"),
    ("sky", BOT_HELO, "5e0a1b2c.bb.sky.com", "94.10.27.44"),
    ("free", BOT_HELO, "mar92-1-82-64-12-34.fbx.proxad.net", "82.64.12.34"),
    ("free-subs", BOT_HELO, "82-64-55-66.subs.proxad.net", "82.64.55.66"),
    ("telefonica", BOT_HELO, "77.red-81-33-44.dynamicip.rima-tde.net", "81.33.44.77"),
    ("tim", BOT_HELO, "host77-44-dynamic.33-81-r.retail.telecomitalia.it", "81.33.44.77"),
    ("cox", BOT_HELO, "ip68-101-12-34.ph.ph.cox.net", "68.101.12.34"),
    ("att-uverse", BOT_HELO, "99-102-33-44.lightspeed.sndgca.sbcglobal.net", "99.102.33.44"),
    ("att-dsl", BOT_HELO, "adsl-69-105-1-2.dsl.snfc21.pacbell.net", "69.105.1.2"),
    ("centurylink", BOT_HELO, "71-218-33-44.hlrn.qwest.net", "71.218.33.44"),
    ("optimum", BOT_HELO, "ool-18e4abcd.dyn.optonline.net", "24.228.171.205"),
    ("bell", BOT_HELO, f"bas1-toronto01-{int(ipaddress.ip_address('70.27.18.1'))}.dsl.bell.ca", "70.27.18.1"),
    ("chinanet", BOT_HELO, "89.67.45.123.broad.gz.gd.dynamic.163data.com.cn", "123.45.67.89"),
    ("velox", BOT_HELO, "189-10-20-30.user.veloxzone.com.br", "189.10.20.30"),
    ("telesp", BOT_HELO, "201-42-10-20.dsl.telesp.net.br", "201.42.10.20"),
    ("airtel", BOT_HELO, "abts-north-dynamic-089.167.176.122.airtelbroadband.in", "122.176.167.89"),
    ("rostelecom", BOT_HELO, "broadband-95-84-12-34.ip.moscow.rt.ru", "95.84.12.34"),
    ("no-name-literal-helo", "[14.161.22.33]", None, "14.161.22.33"),
    ("no-name-localhost", "localhost", None, "121.134.5.6"),
    ("no-name-forged-provider", "gmail.com", None, "177.36.4.5"),
    ("no-name-slaac", BOT_HELO, None, "2a02:8108:1140:2a00:211:32ff:fe12:3456"),
    ("static-router", "localhost", "static-71-105-33-12.nycmny.fios.verizon.net", "71.105.33.12"),
]

# (what, HELO, address): what even a relay that writes no reverse name (Exchange) sees.
HOME_HELOS: list[tuple[str, str, str]] = [
    ("literal", "[73.15.22.9]", "73.15.22.9"),
    ("bare-address", "73.15.22.9", "73.15.22.9"),
    ("windows-desktop", "DESKTOP-4F2K9QX", "73.15.22.9"),
    ("pc", "john-pc", "73.15.22.9"),
    ("fritzbox", "fritz.box", "93.194.161.179"),
    ("ip-camera", "ipcam01.lan", "73.15.22.9"),
    ("router", "router.home", "73.15.22.9"),
    ("dvr", "hikvision-dvr", "14.161.22.33"),
    ("own-dynamic-name", "c-73-15-22-9.hsd1.ca.comcast.net", "73.15.22.9"),
]


def _judge(header: str) -> HomeLine | None:
    sender = read_sender(header)
    assert sender is not None, header
    return judge_sender(sender, own_relay=BOUNDARY.is_relay_name)


BOUNDARY = TrustedBoundary([RELAY], ["10.0.0.0/8"])


@pytest.mark.parametrize("writer", EVERY_RELAY, ids=lambda w: w.__name__)
@pytest.mark.parametrize(("what", "helo", "rdns", "ip"), LEGITIMATE, ids=[row[0] for row in LEGITIMATE])
def test_no_relay_of_a_provider_list_forwarder_or_gateway_is_a_home_line(
        writer: Writer, what: str, helo: str, rdns: str | None, ip: str) -> None:
    header = writer(helo, rdns, ip)
    assert _judge(header) is None
    origin = BOUNDARY.find_origin([header])
    assert (origin.ip, origin.home_line) == (str(ipaddress.ip_address(ip)), None)


def _writers(rdns: str | None) -> list[Writer]:
    """The relays that can show this sender: Sendmail's "from HELO ([IP])" does not say "no reverse name"."""
    return WITH_REVERSE_NAME if rdns is not None else [postfix, exim, qmail]


HOME_CASES = [pytest.param(w, *row, id=f"{row[0]}-{w.__name__}")
              for row in HOME_LINES for w in _writers(row[2])]


@pytest.mark.parametrize(("writer", "what", "helo", "rdns", "ip"), HOME_CASES)
def test_home_lines_of_big_isps_are_recognised(writer: Writer, what: str, helo: str, rdns: str | None,
                                               ip: str) -> None:
    home = BOUNDARY.find_origin([writer(helo, rdns, ip)]).home_line
    assert home is not None
    assert home.reverse_name == rdns
    assert (Sign.DYNAMIC_NAME in home.signs) is (rdns is not None)


@pytest.mark.parametrize("writer", EVERY_RELAY, ids=lambda w: w.__name__)
@pytest.mark.parametrize(("what", "helo", "ip"), HOME_HELOS, ids=[row[0] for row in HOME_HELOS])
def test_a_home_greeting_is_recognised_whatever_the_relay(writer: Writer, what: str, helo: str,
                                                          ip: str) -> None:
    # The relay found a reverse name that says nothing (a static business line, an ordinary name).
    home = _judge(writer(helo, "host.example.net", ip))
    assert home is not None
    assert home.signs & (Sign.ADDRESS_HELO | Sign.DEVICE_HELO | Sign.DYNAMIC_HELO)


def test_the_measure_in_figures() -> None:
    legitimate = [w(*row[1:]) for row in LEGITIMATE for w in EVERY_RELAY]
    homes = [w(*row[1:]) for row in HOME_LINES for w in _writers(row[2])]
    homes += [w(helo, "host.example.net", ip) for _, helo, ip in HOME_HELOS for w in EVERY_RELAY]
    false_positives = [h for h in legitimate if _judge(h) is not None]
    missed = [h for h in homes if _judge(h) is None]
    assert (len(legitimate), len(false_positives)) == (len(LEGITIMATE) * 5, 0)
    assert (len(homes), len(missed)) == (len(HOME_CASES) + len(HOME_HELOS) * 5, 0)


# --- what the judgement must not be fooled by ------------------------------------------------

@pytest.mark.parametrize(("what", "header"), [
    ("authenticated submission from home (the organisation's own user)",
     "from laptop.example (c-73-15-22-9.hsd1.ca.comcast.net [73.15.22.9])\n\t(Authenticated sender: "
     f"bob@corp.example)\n\tby {RELAY} (Postfix) with ESMTPSA id 4TQ5; {DATE}"),
    ("authenticated, Exim",
     f"from c-73-15-22-9.hsd1.ca.comcast.net ([73.15.22.9] helo=[192.168.1.20])\n\tby {RELAY} with "
     f"esmtpsa (TLS1.3) (Exim 4.96)\n\t(envelope-from <bob@corp.example>) id 1rPq; {DATE}"),
    ("authenticated, Sendmail",
     f"from [192.168.1.20] (c-73-15-22-9.hsd1.ca.comcast.net [73.15.22.9])\n\t(authenticated bits=0)\n\t"
     f"by {RELAY} (8.17.1/8.17.1) with ESMTP id 40F9; {DATE}"),
])
def test_not_a_home_line(what: str, header: str) -> None:
    assert BOUNDARY.find_origin([header]).home_line is None


@pytest.mark.parametrize("greeting", [
    "mail-wr1-f54.google.com (mail-wr1-f54.google.com [209.85.221.54])",
    "x (209.85.221.54)",
    "x ([209.85.221.54] helo=mail-wr1-f54.google.com)",
])
def test_a_greeting_holding_a_forged_record_does_not_hide_the_line(greeting: str) -> None:
    # Postfix takes a HELO of several words as one name and writes it before its own record.
    header = postfix(greeting, "c-73-15-22-9.hsd1.ca.comcast.net", "73.15.22.9")
    origin = BOUNDARY.find_origin([header])
    assert origin.ip == "73.15.22.9"
    assert origin.home_line is not None and Sign.DYNAMIC_NAME in origin.home_line.signs


def test_a_home_line_below_the_boundary_is_never_read() -> None:
    # The user's submission leg to Gmail (or a header the sender forged) lies below our relay's.
    headers = [
        postfix("mail-wr1-f54.google.com", "mail-wr1-f54.google.com", "209.85.221.54"),
        "from [192.168.1.20] (c-73-15-22-9.hsd1.ca.comcast.net. [73.15.22.9])\n\tby smtp.gmail.com with "
        f"ESMTPSA id x; {DATE}",
        f"from router.lan (unknown [73.15.22.9]) by mail-wr1-f54.google.com; {DATE}",
    ]
    origin = BOUNDARY.find_origin(headers)
    assert (origin.ip, origin.home_line) == ("209.85.221.54", None)


def test_a_greeting_as_our_own_relay_from_outside_is_forged() -> None:
    home = BOUNDARY.find_origin([postfix(RELAY, None, "177.36.4.5")]).home_line
    assert home is not None and home.signs == Sign.NO_NAME | Sign.FORGED_HELO


def test_the_boundary_header_is_read_behind_internal_hops() -> None:
    headers = [
        f"from {RELAY} ({RELAY} [10.0.0.5])\n\tby mailbox.corp.example with LMTP; {DATE}",
        postfix("DESKTOP-4F2K9QX", "c-73-15-22-9.hsd1.ca.comcast.net", "73.15.22.9"),
    ]
    origin = BOUNDARY.find_origin(headers)
    assert origin.ip == "73.15.22.9"
    assert origin.home_line == HomeLine(Sign.DYNAMIC_NAME | Sign.DEVICE_HELO | Sign.NOT_A_NAME_HELO,
                                        "c-73-15-22-9.hsd1.ca.comcast.net", "desktop-4f2k9qx")
    assert origin.home_line.detail() == (
        "its reverse name is a home line's; it greeted with a device's or home computer's name; its "
        "greeting is no domain name (reverse name c-73-15-22-9.hsd1.ca.comcast.net, HELO desktop-4f2k9qx)")


A = "203.0.113.9"


@pytest.mark.parametrize(("header", "expected"), [
    ("from helo.example (rdns.example [203.0.113.9]) by mx",
     Sender(A, "rdns.example", True, "helo.example", False)),
    ("from helo.example (unknown [203.0.113.9]) by mx", Sender(A, None, True, "helo.example", False)),
    ("from helo.example (rdns.example. [203.0.113.9]) by mx.google.com with ESMTPS id x",
     Sender(A, "rdns.example", True, "helo.example", False)),
    ("from helo (rdns.example [203.0.113.9] (may be forged)) by mx",
     Sender(A, "rdns.example", True, "helo", False)),
    ("from rdns.example ([203.0.113.9] helo=HELO.example) by mx with esmtp (Exim 4.96)",
     Sender(A, "rdns.example", True, "helo.example", False)),
    ("from [203.0.113.9] (helo=x) by mx with esmtp (Exim 4.96)", Sender(A, None, True, "x", False)),
    ("from rdns.example ([203.0.113.9]) by mx with esmtp (Exim 4.96)",
     Sender(A, None, False, "rdns.example", False)),
    ("from unknown (HELO x.example) (203.0.113.9) by mx with SMTP",
     Sender(A, None, True, "x.example", False)),
    ("from EXCH (203.0.113.9) by mx with Microsoft SMTP Server", Sender(A, None, False, "exch", False)),
    ("from [192.168.1.20] (unknown [203.0.113.9]) by mx (Postfix)",
     Sender(A, None, True, "[192.168.1.20]", False)),
    ("from courier.example (rdns.example [::ffff:203.0.113.9]) by mx with ESMTP",
     Sender(A, "rdns.example", True, "courier.example", False)),
    ("from a (b [203.0.113.9]) by mx with UTF8SMTPSA", Sender(A, "b", True, "a", True)),
    ("by mx (Postfix, from userid 1001) id 4TQ7", None),
    ("from localhost by mx", None),
])
def test_read_sender(header: str, expected: Sender | None) -> None:
    assert read_sender(header) == expected


def test_read_sender_is_linear_on_hostile_comments() -> None:
    for comment in ("b" * 200_000 + " [203.0.113.9]", "b]" * 100_000, "x [" * 60_000):
        read_sender(f"from a ({comment}) by c")  # a quadratic scan would take minutes


# --- the evidence in click links --------------------------------------------------------------

KEY = bytes(range(32))
HOME = HomeLine(Sign.DYNAMIC_NAME | Sign.DEVICE_HELO, "c-73-15-22-9.hsd1.ca.comcast.net", "router.lan")


def test_the_click_link_carries_the_home_line_signs() -> None:
    context = click_context(key=KEY, origin_ip="73.15.22.9", message_id="<m@x>", recipient=None,
                            recipient_mode="none", rewritten_at=1_700_000_000, home_line=HOME)
    link = make_click_link("https://shop.example/a", context, KEY, click_host="clickguard.local")
    target, read = verify_click_link(link, KEY, click_host="clickguard.local")
    assert (target, read.home_line, read) == ("https://shop.example/a", HOME.signs, context)
    plain = context._replace(home_line=Sign(0))
    shorter = make_click_link("https://shop.example/a", plain, KEY, click_host="clickguard.local")
    assert len(link) - len(shorter) in (1, 2)  # one byte more in the token


def test_an_origin_address_carries_the_evidence_through_callers_that_pass_only_the_address() -> None:
    carried = OriginAddress("73.15.22.9", HOME)
    context = click_context(key=KEY, origin_ip=carried, message_id=None, recipient=None,
                            recipient_mode="none", rewritten_at=0)
    assert context.home_line == HOME.signs
    assert type(context.origin_ip) is str and context.origin_ip == "73.15.22.9"
    # Without an origin there is nothing the evidence is about.
    assert click_context(key=KEY, origin_ip=None, message_id=None, recipient=None, recipient_mode="none",
                         rewritten_at=0, home_line=HOME).home_line == Sign(0)


def _resigned(link: str, edit: Callable[[bytearray], bytearray]) -> str:
    """link with its token body edited and signed again with the key (so only the format can object)."""
    from clickguard.mail import links as module

    match = re.fullmatch(r"(https://clickguard\.local/v1/)([A-Za-z0-9_-]+)/(.*)", link)
    assert match is not None
    raw = bytearray(b64url_decode(match.group(2)))
    body = edit(raw[:-16])
    mac = module._mac(KEY, bytes(body), match.group(3))
    return f"{match.group(1)}{b64url_encode(bytes(body) + mac)}/{match.group(3)}"


def test_a_link_made_before_the_home_line_bit_still_verifies() -> None:
    # Bit 6 unset: exactly the bytes every earlier link has.
    context = click_context(key=KEY, origin_ip="203.0.113.9", message_id="<m@x>", recipient=None,
                            recipient_mode="none", rewritten_at=1_700_000_000)
    link = make_click_link("https://shop.example/", context, KEY, click_host="clickguard.local")
    token = b64url_decode(link.split("/")[4])
    assert token[1] & 0x40 == 0 and len(token) == 6 + 4 + 8 + 16
    assert verify_click_link(link, KEY, click_host="clickguard.local")[1].home_line == Sign(0)


@pytest.mark.parametrize(("what", "edit", "message"), [
    ("the evidence without an origin",
     lambda b: bytearray([b[0], (b[1] & ~0x03) | 0x40, *b[2:6], 5, *b[10:]]), "without an origin"),
    ("an empty evidence byte", lambda b: bytearray([*b[:10], 0, *b[11:]]), "empty home-line evidence"),
    ("the flag without its byte", lambda b: bytearray([*b[:10], *b[11:]]), "truncated|length"),
])
def test_malformed_home_line_evidence_is_refused(what: str, edit: Callable[[bytearray], bytearray],
                                                 message: str) -> None:
    context = click_context(key=KEY, origin_ip="203.0.113.9", message_id=None, recipient=None,
                            recipient_mode="none", rewritten_at=1_700_000_000, home_line=HOME)
    link = make_click_link("https://shop.example/", context, KEY, click_host="clickguard.local")
    with pytest.raises(TokenError, match=message):
        verify_click_link(_resigned(link, edit), KEY, click_host="clickguard.local")


# --- the judge --------------------------------------------------------------------------------

def _judge_of(tmp_path: Path, text: str = "") -> Judge:
    return Judge(parse_policy("version: 1\n" + text, filename="t.yaml", base_dir=tmp_path), ReputationIndex())


@pytest.mark.parametrize(("landing", "codes"), [
    ("shop.unknown.example", ["origin.home_line", "origin.unknown_landing"]),
    ("www.partner.example", ["origin.home_line"]),
    (None, ["origin.home_line"]),
])
def test_the_judge_reports_a_home_line_origin(tmp_path: Path, landing: str | None, codes: list[str]) -> None:
    judge = _judge_of(tmp_path, "email: {known_domains: [partner.example]}\n")
    findings = judge.origin_findings("73.15.22.9", landing, home_line=describe(HOME.signs))
    assert [f.code for f in findings] == codes
    assert findings[0].detail == (
        "the e-mail was handed straight to the organisation's relay by 73.15.22.9, a home line: its reverse "
        "name is a home line's; it greeted with a device's or home computer's name")
    assert judge.decide(findings).action == "warn"
    assert judge.origin_findings("73.15.22.9", landing) == []


# --- the CLI ----------------------------------------------------------------------------------

def _check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clickguard.cli", "check", "--json", "--state-dir",
                           str(tmp_path / "var"), *args], capture_output=True, text=True, cwd=tmp_path,
                          check=False)


def test_check_reads_the_received_line(tmp_path: Path) -> None:
    line = postfix("router.lan", "c-73-15-22-9.hsd1.ca.comcast.net", "73.15.22.9")
    done = _check(tmp_path, "https://shop.example/", "--origin-received", line)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["action"] == "warn"
    assert [r["code"] for r in result["reasons"]] == ["origin.home_line", "origin.unknown_landing"]
    assert "reverse name c-73-15-22-9.hsd1.ca.comcast.net" in result["reasons"][0]["detail"]
    provider = _check(tmp_path, "https://shop.example/", "--origin-received",
                      postfix("mail-wr1-f54.google.com", "mail-wr1-f54.google.com", "209.85.221.54"))
    assert json.loads(provider.stdout)["action"] == "allow"


@pytest.mark.parametrize(("args", "message"), [
    (["--origin-received", "by mx (Postfix) id 1"], "names no sender address"),
    (["--origin", "198.51.100.1", "--origin-received", "from a (b [73.15.22.9]) by mx"], "is not the sender"),
])
def test_check_refuses_a_received_line_it_cannot_use(tmp_path: Path, args: list[str], message: str) -> None:
    done = _check(tmp_path, "https://shop.example/", *args)
    assert done.returncode != 0 and message in done.stderr


# --- end to end: rewrite, then click through the real proxy -----------------------------------

MAIL = """\
Received: from mx1.corp.example (mx1.corp.example [10.0.0.5])
\tby mailbox.corp.example with LMTP; Mon, 15 Jan 2024 09:12:03 +0000
Received: {boundary}
From: Parcel Service <info@parcel.example>
To: alice@corp.example
Subject: Your parcel
Message-ID: <{id}@parcel.example>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<p>Track it <a href="{target}">here</a>.</p>
"""


def _rewritten_link(tmp_path: Path, certs: Path, policy: Path, boundary: str, target: str, name: str) -> str:
    mail = MAIL.format(boundary=boundary.replace("\r\n", "\n"), id=name, target=target)
    (tmp_path / f"{name}.eml").write_text(mail)
    subprocess.run([sys.executable, "-m", "clickguard.cli", "rewrite", str(tmp_path / f"{name}.eml"), "-o",
                    str(tmp_path / f"{name}.out.eml"), "--policy", str(policy), "--certs", str(certs)],
                   capture_output=True, text=True, check=True, cwd=tmp_path)
    body = email.message_from_bytes((tmp_path / f"{name}.out.eml").read_bytes()).get_payload(decode=True)
    assert isinstance(body, bytes)
    found = re.search(rb'href="([^"]+)"', body)
    assert found is not None
    return found.group(1).decode()


def test_mail_from_a_home_line_no_feed_lists_warns_at_the_click(tmp_path: Path, certs: Path) -> None:
    (tmp_path / "thingbots.txt").write_text("192.0.2.250\n")  # lists neither sender
    policy = write_policy(tmp_path, "feeds:\n  - {name: thingbots, format: ip, path: thingbots.txt}\n"
                                    "email: {trusted_relays: [mx1.corp.example], "
                                    "internal_networks: [10.0.0.0/8]}\n")
    home = postfix("router.lan", "c-73-15-22-9.hsd1.ca.comcast.net", "73.15.22.9")
    provider = postfix("mail-wr1-f54.google.com", "mail-wr1-f54.google.com", "209.85.221.54")
    # The origin is read at rewrite time, not here: the sender's own words below it never count.
    assert origin_of_message(MAIL.format(boundary=home, id="h", target="x").encode(),
                             trusted_relays=[RELAY]).home_line is not None
    with upstream("127.0.0.140") as site:
        home_link = _rewritten_link(tmp_path, certs, policy, home, f"{site.base}/track", "home")
        provider_link = _rewritten_link(tmp_path, certs, policy, provider, f"{site.base}/news", "provider")
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            r = proxy.get(home_link, HTML)
            assert r.headers["x-clickguard-action"] == "warn"
            assert "origin.home_line" in r.text
            record = proxy.wait_for_audit(lambda rs: any(x.get("origin_ip") == "73.15.22.9" for x in rs))[-1]
            assert record["origin_ip"] == "73.15.22.9"
            assert record["reasons"] == ["origin.home_line", "origin.unknown_landing"]
            assert record["action"] == "warn"
            # Past the warning, the navigation's hop carries the home line too (continue token, click mark).
            r = proxy.get(continue_link(r.text), HTML)
            assert r.status == 303 and r.headers["location"] == f"{site.base}/track"
            assert proxy.get(f"{site.base}/track", HTML).status == 200
            hops = proxy.wait_for_audit(lambda rs: any(x.get("event") == "hop" for x in rs))
            hop = next(x for x in hops if x.get("event") == "hop")
            assert (hop["origin_ip"], hop["action"], hop["hop"]) == ("73.15.22.9", "allow", 1)
            assert hop["reasons"] == ["origin.home_line", "origin.unknown_landing"]

            r = proxy.get(provider_link, HTML)
            assert r.status == 303 and r.headers["location"] == f"{site.base}/news"
            clicks = proxy.wait_for_audit(lambda rs: any(x.get("origin_ip") == "209.85.221.54" for x in rs))
            assert next(x["reasons"] for x in clicks if x.get("origin_ip") == "209.85.221.54") == []
        finally:
            proxy.stop()
