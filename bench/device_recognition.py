"""Leave-one-vendor-out: are devices recognised that the fingerprint database does not know?

Each vendor's fingerprints are left out of the database in turn; every example of
theirs becomes a response as the device would send it (its Server header, its realm
on a 401, its title on a page, from a bare IP, on port 7547 for TR-069 listeners) and
is inspected with the rest of the database plus the generic device evidence. Two
shapes of response are measured:

- ``plain``: the example's traits only, with a ``Date`` header, an ``HTTP/1.1`` status
  line and Title-Case header names: what any modern stack sends, so nothing of the
  firmware's way of answering helps (the worst case);
- ``HTTP/1.0``, ``no Date``: one of the firmware's tells added (an ``HTTP/1.0`` status
  line to an HTTP/1.1 request; no ``Date`` header);
- ``firmware``: both (what many embedded servers send; the optimistic case).

False positives: ordinary servers' pages (nginx, Apache, IIS, CDNs, application
servers with long Server names, intranet and SaaS login pages, product pages naming a
model, titles with standards' codes; their 401s with the realms ordinary software sends,
their redirects and SSO hand-off pages; on names, public and private bare IPs and odd
ports) and the python3-doc corpus from a bare IP. One trade-off is measured apart: 401s
whose realm is one project name ("Acme"), which no shape tells from a device's realm
(see `clickguard.inspection.device_evidence`). Run ``python bench/device_recognition.py``;
the figures print one per line. ``bench/run.py`` can call `main`.
"""

from __future__ import annotations

import argparse
import email.utils
import html
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clickguard.decision.judge import Judge  # noqa: E402
from clickguard.inspection.device_evidence import ServerFacts  # noqa: E402
from clickguard.inspection.fingerprints import SHIPPED_FINGERPRINTS, FingerprintDB  # noqa: E402
from clickguard.inspection.response import Inspection, inspect_response  # noqa: E402
from clickguard.intel.index import ReputationIndex  # noqa: E402
from clickguard.policy.model import parse_policy  # noqa: E402
from clickguard.urls import normalize_url  # noqa: E402

DOCS = Path("/usr/share/doc/python3/html")
HTML_TYPE = ("Content-Type", "text/html")
DATE = ("Date", email.utils.formatdate(usegmt=True))  # now: a clock that is set
# Fingerprint names that do not start with their vendor's name, and vendors spelled two ways.
_ALIASES = {"wl-series": "asus", "xbmc": "kodi", "tomatousb": "tomato", "freshtomato": "tomato",
            "jc-shttpd": "jc-httpd", "vertiv": "emerson", "mbedthis/embedthis": "mbedthis"}
_TR069 = ("tr-069", "tr069", "cwmp")


class Case(NamedTuple):
    """One example as a response to inspect."""

    vendor: str
    fingerprint: str
    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    server: ServerFacts


def vendor_of(name: str) -> str:
    """The vendor group of a fingerprint: the first word of its name (generic ones form one group)."""
    first = name.split()[0].lower()
    return _ALIASES.get(first, first)


def shipped() -> list[dict[str, Any]]:
    """The shipped fingerprints as plain YAML data."""
    out: list[dict[str, Any]] = []
    for path in sorted(SHIPPED_FINGERPRINTS.glob("*.yaml")):
        out += yaml.safe_load(path.read_text(encoding="utf-8"))["fingerprints"]
    return out


def _page(title: str) -> bytes:
    """A device's page as a modern web UI sends it: a title, styles, a script, some markup (> 1 KiB)."""
    filler = "".join(f'<div class="row" id="r{i}"><span>Item {i}</span></div>' for i in range(20))
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            '<link rel="stylesheet" href="/css/style.css"><script src="/js/app.js"></script></head>'
            f'<body><div id="app">{filler}</div></body></html>').encode()


SHAPES = ("plain", "HTTP/1.0", "no Date", "firmware")


def example_case(fingerprint: dict[str, Any], example: dict[str, Any], n: int, *, shape: str) -> Case:
    """The response a device of this example sends, from a bare IP (port 7547 for TR-069 listeners)."""
    name = fingerprint["name"]
    port = ":7547" if any(t in name.lower() for t in _TR069) else ""
    url = f"http://203.0.113.{n % 250 + 1}{port}/"
    headers: list[tuple[str, str]] = []
    if example.get("server") is not None:
        headers.append(("Server", example["server"]))
    if shape in ("plain", "HTTP/1.0"):
        headers.append(DATE)
    if example.get("header"):
        headers.append((example["header"]["name"], example["header"]["value"]))
    status, body = 200, _page("Welcome")
    if example.get("realm") is not None:
        status = 401
        headers.append(("WWW-Authenticate", example["realm"]))
        body = b"<html><head><title>401 Unauthorized</title></head><body>401 Unauthorized</body></html>"
    if example.get("title") is not None:
        body = _page(example["title"])
    if example.get("body") is not None:
        body = example["body"].encode()
    headers += [("Content-Type", "text/html"), ("Content-Length", str(len(body)))]
    version = "HTTP/1.0" if shape in ("HTTP/1.0", "firmware") else "HTTP/1.1"
    facts = ServerFacts(version, "HTTP/1.1", tuple(h for h, _ in headers))
    return Case(vendor_of(name), name, url, status, headers, body, facts)


def example_cases(*, shape: str) -> list[Case]:
    """Every example of every shipped fingerprint as a device's response."""
    out: list[Case] = []
    for fingerprint in shipped():
        for example in fingerprint["examples"]:
            out.append(example_case(fingerprint, example, len(out), shape=shape))
    return out


def a_judge() -> Judge:
    """A judge with no feeds and the default policy."""
    return Judge(parse_policy("feeds: []", filename="bench.yaml", base_dir=REPO), ReputationIndex.build([]))


def inspect(judge: Judge, db: FingerprintDB, case: Case, *, with_facts: bool = True) -> Inspection:
    """Inspect one case as the proxy would."""
    return inspect_response(judge, db, url=normalize_url(case.url), status=case.status, headers=case.headers,
                            body=case.body, server=case.server if with_facts else None)


class Recognition(NamedTuple):
    """How many examples were recognised as devices, and which were not."""

    total: int
    recognised: int
    missed: list[Case]

    @property
    def rate(self) -> float:
        """The share recognised."""
        return self.recognised / self.total if self.total else 1.0


def leave_one_vendor_out(*, shape: str, generic_only: bool = False,
                         vendors: set[str] | None = None) -> Recognition:
    """Each vendor's examples against the database without that vendor (or without any fingerprint)."""
    judge, full = a_judge(), FingerprintDB.default()
    by_vendor: dict[str, list[Case]] = {}
    for case in example_cases(shape=shape):
        if vendors is None or case.vendor in vendors:
            by_vendor.setdefault(case.vendor, []).append(case)
    names_of: dict[str, set[str]] = {}
    for fingerprint in shipped():
        names_of.setdefault(vendor_of(fingerprint["name"]), set()).add(fingerprint["name"])
    total, missed = 0, []
    for vendor, cases in by_vendor.items():
        db = full.without(full.names() if generic_only else names_of[vendor])
        for case in cases:
            total += 1
            if not inspect(judge, db, case).appliance:
                missed.append(case)
    return Recognition(total, total - len(missed), missed)


# --- ordinary servers -------------------------------------------------------------------------

_ORDINARY_STACKS: list[tuple[str, list[tuple[str, str]], str]] = [
    ("nginx", [("Server", "nginx/1.24.0 (Ubuntu)"), DATE, ("Connection", "keep-alive")], "Welcome to nginx!"),
    ("nginx bare", [("Server", "nginx"), DATE], "Shop - Home"),
    ("openresty", [("Server", "openresty/1.21.4.1"), DATE], "API gateway console"),
    ("apache", [("Server", "Apache/2.4.57 (Debian)"), DATE, ("ETag", '"2aa6-5f0"'),
                ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Accept-Ranges", "bytes")],
     "Apache2 Debian Default Page: It works"),
    ("apache unix", [("Server", "Apache/2.4.46 (Unix) OpenSSL/1.1.1k"), DATE], "Index of /"),
    ("iis", [("Server", "Microsoft-IIS/10.0"), ("X-Powered-By", "ASP.NET"), DATE], "IIS Windows Server"),
    ("iis app", [("Server", "Microsoft-IIS/8.5"), ("X-AspNet-Version", "4.0.30319"), DATE],
     "Login - Intranet"),
    ("cloudflare", [DATE, ("Server", "cloudflare"), ("CF-RAY", "84c1f2a3b4c5d6e7-FRA"),
                    ("CF-Cache-Status", "DYNAMIC")], "Router reviews 2026"),
    ("cloudfront", [("Server", "AmazonS3"), DATE, ("X-Cache", "Hit from cloudfront"),
                    ("Via", "1.1 abc.cloudfront.net (CloudFront)"), ("X-Amz-Cf-Pop", "FRA56-P1")], "Docs"),
    ("akamai", [("Server", "AkamaiGHost"), DATE, ("Mime-Version", "1.0")], "Access Denied"),
    ("fastly", [DATE, ("Via", "1.1 varnish"), ("X-Served-By", "cache-fra-eddf8230062-FRA"),
                ("X-Cache", "HIT"), ("Fastly-Debug-Digest", "abc")], "News"),
    ("google", [DATE, ("Server", "gws"), ("X-XSS-Protection", "0"), ("X-Frame-Options", "SAMEORIGIN")],
     "Google"),
    ("github pages", [("Server", "GitHub.com"), DATE, ("X-GitHub-Request-Id", "AB12:3C4D")], "Project docs"),
    ("vercel", [DATE, ("Server", "Vercel"), ("X-Vercel-Id", "fra1::abc")], "Next.js app"),
    ("netlify", [DATE, ("Server", "Netlify"), ("X-NF-Request-ID", "01H")], "Blog"),
    ("litespeed", [("Server", "LiteSpeed"), DATE, ("X-LiteSpeed-Cache", "hit")], "WordPress site"),
    ("caddy", [("Server", "Caddy"), DATE], "Home server"),
    ("envoy", [("server", "envoy"), ("date", DATE[1]), ("x-envoy-upstream-service-time", "3")], "Service"),
    ("express", [("X-Powered-By", "Express"), DATE, ("Connection", "keep-alive")], "Admin Dashboard"),
    ("go", [DATE], "Prometheus Time Series Collection and Processing Server"),
    ("grafana", [DATE, ("X-Frame-Options", "deny"), ("X-Content-Type-Options", "nosniff")], "Grafana"),
    ("jenkins", [("Server", "Jetty(10.0.18)"), DATE, ("X-Jenkins", "2.426.1")], "Dashboard [Jenkins]"),
    ("tomcat", [DATE], "Apache Tomcat/9.0.65"),
    ("kestrel", [DATE, ("Server", "Kestrel")], "Home Page - WebApp"),
    ("gunicorn", [("Server", "gunicorn"), DATE], "Django site admin"),
    ("python http.server", [("Server", "SimpleHTTP/0.6 Python/3.12.3"), DATE], "Directory listing for /"),
    ("aiohttp", [("Server", "Python/3.12 aiohttp/3.9.5"), DATE], "Status"),
    ("traefik", [DATE], "Traefik"),
    ("synology-hosted blog", [("Server", "nginx"), DATE], "My travel blog"),
    # Where the generic evidence could misfire: login pages of intranet and SaaS apps, app servers
    # with long or odd Server names, product pages naming a model, titles with standards' codes.
    ("intranet app", [DATE, ("X-Powered-By", "Express")], "Login"),
    ("saas sign-in", [DATE, ("X-Powered-By", "Next.js")], "Sign in"),
    ("spa log-in", [DATE, ("Cache-Control", "no-store")], "Log in to your account"),
    ("jenkins login", [("Server", "Jetty(10.0.18)"), DATE, ("X-Jenkins", "2.426.1")], "Sign in [Jenkins]"),
    ("gitlab login", [("Server", "nginx"), DATE, ("X-Gitlab-Meta", "{}")], "Sign in · GitLab"),
    ("gitea login", [DATE, ("Set-Cookie", "i_like_gitea=abc; Path=/")],
     "Sign In - Gitea: Git with a cup of tea"),
    ("keycloak", [DATE, ("Referrer-Policy", "no-referrer")], "Sign in to Keycloak"),
    ("portainer", [DATE], "Portainer"),
    ("proxmox", [("Server", "pve-api-daemon/3.0"), DATE], "pve1 - Proxmox Virtual Environment"),
    ("websphere", [("Server", "WebSphere Application Server/9.0"), DATE],
     "WebSphere Integrated Solutions Console"),
    ("glassfish", [("Server", "GlassFish Server Open Source Edition  4.1.2"), DATE], "Login"),
    ("sap netweaver", [("Server", "SAP NetWeaver Application Server 7.53 / AS Java 7.50"), DATE],
     "SAP NetWeaver Administrator"),
    ("azure app gateway", [("Server", "Microsoft-Azure-Application-Gateway/v2"), DATE], "Employee Portal"),
    ("cheroot", [("Server", "Cheroot/10.0.0"), DATE], "Settings"),
    ("weblogic", [DATE], "Oracle WebLogic Server Administration Console 12c"),
    ("aws console", [DATE], "AWS Management Console"),
    ("german intranet", [DATE], "Anmeldung - Intranet"),
    ("chinese admin", [DATE], "后台管理系统 - 登录"),
    ("phpmyadmin", [("Server", "Apache"), DATE], "phpMyAdmin"),
    ("roundcube", [DATE], "Roundcube Webmail :: Welcome to Roundcube Webmail"),
    ("nextcloud", [DATE], "Nextcloud"),
    ("shop phone", [DATE, ("X-Powered-By", "PHP/8.2.12")], "Apple iPhone 15 Pro - Buy Now"),
    ("shop galaxy", [DATE], "Galaxy S24 Ultra"),
    ("shop cpu", [DATE], "Intel Core i7-13700K Processor | PC Shop"),
    ("shop gpu", [DATE], "GeForce RTX 4090 Graphics Card"),
    ("shop console", [DATE], "PlayStation Store"),
    ("dashboard", [DATE], "COVID-19 Dashboard"),
    ("report", [DATE], "Annual Report 2024 - Login"),
    ("windows", [DATE], "Windows Server 2022"),
    ("pki", [DATE], "X509 Certificates"),
    ("downloads", [DATE], "SHA256 checksums"),
    ("bank", [DATE], "Credit Card Login"),
    ("gift", [DATE], "Gift Card Balance"),
    ("company site", [DATE], "Acme Corp. - Home"),
]
_ORDINARY_PLACES = ["http://www.example.com/", "http://203.0.113.80/", "http://198.51.100.7:8080/",
                    "https://192.0.2.44:8443/", "http://198.51.100.9:3000/", "http://203.0.113.81:9090/",
                    "http://10.20.30.40:8080/", "http://192.168.10.5/"]
# Realms ordinary sites and server software send with their 401s.
_ORDINARY_REALMS = [
    "Restricted", "Restricted Content", "closed site", "Administrator’s Area", "Authorization Required",
    "Private Area", "Login Required", "Intranet", "Staff only", "Please enter your credentials", "Jenkins",
    "traefik", "Tomcat Manager Application", "RabbitMQ Management", "Sonatype Nexus Repository Manager",
    "Registry Realm", "Subversion Repository", "Nagios Access", "phpMyAdmin localhost", "security", "Kibana",
    "Prometheus", "Git", "Acme Staging", "Acme Corp Intranet", "Marketing Team Preview",
]
# Realms no shape can tell from a device's: one name of no ordinary word, as a site may call its
# staging area after its project. Measured apart, as the trade-off they are (see the report line).
_AMBIGUOUS_REALMS = ["Acme", "myproject", "Zephyr"]


_SSO_PAGE = (b'<html><head><title>Redirecting</title><meta http-equiv="refresh" '
             b'content="0;url=https://login.example.net/sso"></head><body>Redirecting</body></html>')


def ordinary_cases() -> Iterator[Case]:
    """Ordinary servers' pages, 401s, redirects and SSO hand-offs, on names, bare IPs and odd ports."""
    for label, stack, title in _ORDINARY_STACKS:
        for url in _ORDINARY_PLACES:
            shapes = [
                (200, [*stack, ("Content-Type", "text/html; charset=utf-8")], _page(title)),
                (401, [*stack, ("WWW-Authenticate", 'Basic realm="Restricted"'), HTML_TYPE],
                 b"<html><body>401 Authorization Required</body></html>"),
                (302, [*stack, ("Location", "https://login.example.net/sso"), ("Content-Length", "0")], b""),
                (200, [*stack, HTML_TYPE], _SSO_PAGE),
            ]
            for status, headers, body in shapes:
                yield _ordinary(label, url, status, headers, body)
    yield from realm_cases(_ORDINARY_REALMS)


def realm_cases(realms: list[str]) -> Iterator[Case]:
    """401s with these realms from a server sending no Server header, on every ordinary place."""
    for realm in realms:
        for url in _ORDINARY_PLACES:
            headers = [DATE, ("WWW-Authenticate", f'Basic realm="{realm}"'), HTML_TYPE]
            yield _ordinary(f"realm {realm!r}", url, 401, headers, b"401 Unauthorized")


def _ordinary(label: str, url: str, status: int, headers: list[tuple[str, str]], body: bytes) -> Case:
    """One ordinary server's response as a case (Python's http.server answers HTTP/1.0)."""
    facts = ServerFacts("HTTP/1.0" if label == "python http.server" else "HTTP/1.1", "HTTP/1.1",
                        tuple(h for h, _ in headers))
    return Case(label, "", url, status, headers, body, facts)


def docs_cases(server: str | None, limit: int | None = None) -> Iterator[Case]:
    """The python3-doc pages as served from a bare IP on an odd port by server (None: no Server header)."""
    pages = sorted(DOCS.rglob("*.html"))[:limit]
    for page in pages:
        headers = [("Server", server)] if server else []
        headers += [DATE, ("Content-Type", "text/html; charset=utf-8")]
        yield Case(f"python3-doc via {server}", "", f"http://198.51.100.40:8000/{page.relative_to(DOCS)}",
                   200, headers, page.read_bytes()[:2**20],
                   ServerFacts("HTTP/1.1", "HTTP/1.1", tuple(h for h, _ in headers)))


def false_positives(cases: Iterator[Case]) -> tuple[int, list[tuple[Case, list[str]]]]:
    """How many cases, and those taken for an appliance or a suspect (each with the appliance finding)."""
    judge, db = a_judge(), FingerprintDB.default()
    total, found = 0, []
    for case in cases:
        total += 1
        inspection = inspect(judge, db, case)
        if inspection.appliance or inspection.suspect:
            found.append((case, [f.detail for f in inspection.findings if f.code == "landing.appliance"]))
    return total, found


def main(argv: list[str] | None = None) -> int:
    """Print the recognition rates and false positives, one figure per line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--show-misses", action="store_true", help="list the examples not recognised")
    args = parser.parse_args(argv)
    for shape in SHAPES:
        for generic_only in (False, True):
            result = leave_one_vendor_out(shape=shape, generic_only=generic_only)
            how = "generic evidence alone" if generic_only else "leave-one-vendor-out"
            print(f"device recognition, {how}, {shape} responses: {result.recognised}/{result.total} "
                  f"= {result.rate:.1%}")
            if args.show_misses:
                for case in result.missed:
                    print(f"  missed: {case.fingerprint}: {case.headers[:2]} {case.url}")
    total, found = false_positives(ordinary_cases())
    print(f"device recognition false positives, ordinary servers' responses: {len(found)}/{total}")
    for case, details in found[:20]:
        print(f"  false positive: {case.vendor} {case.url} {case.status}: {details}")
    total, found = false_positives(realm_cases(_AMBIGUOUS_REALMS))
    print(f"device recognition, trade-off: 401s with a one-name project realm taken for a device: "
          f"{len(found)}/{total}")
    if DOCS.is_dir():
        for server in ("nginx/1.24.0", None):
            total, found = false_positives(docs_cases(server))
            print(f"device recognition false positives, python3-doc from a bare IP via "
                  f"{server or 'no Server header'}: {len(found)}/{total}")
            for case, details in found[:10]:
                print(f"  false positive: {case.url}: {details}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
