"""Generic evidence of an embedded device: recognising appliances no fingerprint names.

The fingerprint database (`fingerprints`) knows a few hundred device models; botnets
run on thousands. What unseen models share is the shape of their firmware's web
server, and this module weighs that shape:

- *where* the server is: a bare IP address, a home line's reverse name or a dynamic-DNS
  name, a device-management port (TR-069's 7547, …) or an odd port;
- *what it says it is*: a ``Server`` token that no ordinary web server, framework or CDN
  uses (an ``…httpd``, ``…-Webs``, ``UPnP/1.0``, a ``Linux, …`` banner, a model number, a
  device word, a build system's ``$Revision: … $``, its own LAN address, or any product
  with a version that is not on the list of ordinary servers), a login realm or a page
  title of device shape (``Router XR-200``, ``DS-7608NI Web Viewer``, a title that is
  only a model number, a realm of one name such as ``SpeedTouch``, a realm spelling out
  the default login or carrying the device's MAC address, ``… Co., Ltd.``);
- *how it answers*: no ``Date`` header, an ``HTTP/1.0`` status line to an HTTP/1.1
  request, header names cased as no ordinary stack writes them (``Content-type``), a tiny
  static page, ``/cgi-bin/`` or ``.cgi``/``.asp``/``.htm`` paths from a small server, a
  self-signed or device-named TLS certificate on an IP.

Words are read as firmware writes them (``NETSurveillance``, ``IPCamera``, ``Acme_CWMP``
are split before the word lists are read) and in the languages devices are sold in.
These are shapes and generic nouns, never the vendor or model names of the fingerprint
files: a second list of names would only find what the database already finds.

What the proxy sees beyond headers and body (the status line's version, header names as
received, the certificate) comes in as `ServerFacts`; without them the decision uses
what the headers show. Each piece of evidence has a weight; an ordinary server's token
(nginx, Apache, IIS, a CDN, an application server) counts against. A response is a
device when the place *and* the server's own evidence both speak for it (`decide`): a
bare IP alone, or an odd token alone, never makes a device; nor does a login or
administration title alone (an intranet app on a private IP and port 8080 titled
"Login" is no device). The weights and the thresholds are measured by leaving each
vendor out of the fingerprint database in turn (``bench/device_recognition.py``), and
against ordinary servers' pages and the python3-doc corpus from bare IPs.

What does not generalise, by design: a title of brand words only ("AXIS", "Kodi",
"FRITZ!Box"), or a vendor's name before "Login" ("ASUS Login"), is what an ordinary
app's page looks like too; such devices are found by the fingerprint database or by
the firmware's way of answering, not by their words. The one trade-off taken: a realm
of one name of no ordinary word ("SpeedTouch", "rokudev") counts as a device's on a
bare IP, and so does a site's staging realm named after its project ("Acme"); the
bench measures that apart. A realm only comes with a 401, so the cost is that 401's
own redirects being judged as a device's.

Favicon hashes (mmh3 of the base64 icon, as internet scanners index them) are left out
on purpose: a favicon is fetched by its own request with ``Sec-Fetch-Dest: image``, which
the proxy does not inspect, and each response is judged on its own, so a recognised
icon could not make the page that redirects a suspect.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

from clickguard.urls import NormalizedURL, registered_domain
from clickguard.vocab import DeviceClass

type Kind = Literal["place", "server", "shape", "page", "against"]

# Thresholds of `decide` (measured, see the module docstring).
PLACE_NEEDED = 1.0  # a bare IP, a home line, a DDNS name or a device-management port
SERVER_NEEDED = 2.0  # the server's own evidence: token, realm, title, firmware shape, certificate
TOTAL_NEEDED = 3.0
SHORT_TITLE = 5  # words: a device's title names it ("Shelly Plug S"); a longer one is prose
TITLE_NAMING_MODEL = 3  # words: a title this short around a strong model number names the device
CLOCK_SLACK = 86400.0  # seconds a Date may be off before the clock counts as never set
TINY_PAGE = 1024  # bytes: a device's login or redirect page, not a site's page
EVIDENCE_TEXT = 60  # characters of a quoted value kept in the summary


class CertificateFacts(NamedTuple):
    """The server's TLS certificate, as far as device evidence needs it."""

    common_name: str | None
    organization: str | None
    alt_names: tuple[str, ...]
    self_signed: bool  # issuer == subject


class ServerFacts(NamedTuple):
    """What the proxy knows of a response beyond its headers and body."""

    http_version: str | None = None  # "HTTP/1.0", "HTTP/1.1", "HTTP/2.0" as on the status line
    request_version: str | None = None  # the request's: a 1.0 answer to a 1.0 request says nothing
    header_names: tuple[str, ...] = ()  # header names as received, in order, repeats kept
    certificate: CertificateFacts | None = None


class Evidence(NamedTuple):
    """One piece of evidence, its weight, and what it is about."""

    label: str  # as shown in a finding: "bare IP", "realm 'NETGEAR R7000'"
    weight: float  # negative: evidence against a device
    kind: Kind


class DeviceEvidence(NamedTuple):
    """Every piece of generic evidence about one response, and the decision."""

    pieces: tuple[Evidence, ...]
    device: bool
    device_class: DeviceClass  # the class the words point to (EMBEDDED when none does)

    def weight(self, *kinds: Kind) -> float:
        """The summed weight of the pieces of these kinds (all kinds when none given)."""
        return sum(p.weight for p in self.pieces if not kinds or p.kind in kinds)

    def summary(self) -> str:
        """The pieces that speak for a device, heaviest first: "bare IP, HTTP/1.0, no Date"."""
        speaking = sorted((p for p in self.pieces if p.weight > 0), key=lambda p: -p.weight)
        return ", ".join(p.label for p in speaking)


# --- where the server is ---------------------------------------------------------------------

# Ports device web interfaces and management agents listen on (nmap-services, research/appliances.md 1b).
DEVICE_PORTS: Mapping[int, str] = {
    7547: "port 7547 (TR-069 device management)",
    81: "port 81, common for device web interfaces",
    8080: "port 8080, common for device web interfaces",
    8081: "port 8081, common for device web interfaces",
    8443: "port 8443, common for device web interfaces",
    37215: "port 37215 (Huawei home gateway UPnP)",
    52869: "port 52869 (Realtek SDK UPnP)",
}
_MANAGEMENT_PORTS = frozenset({7547, 37215, 52869, 1900, 5000, 49152})  # device agents, not web sites
# Reverse names ISPs give home lines: the address spelled out (84-12-3-4.isp.example), or a
# dynamic-pool word next to numbers (dsl-5012.pool.isp.example).
_SPELLED_ADDRESS = re.compile(r"(?:^|[.-])(?:\d{1,3}[-.]){3}\d{1,3}(?:[.-]|$)")
_POOL_WORD = re.compile(r"(?:^|[.-])(?:dyn|dynamic|dsl|adsl|vdsl|xdsl|cable|pool|dhcp|pppoe?|broadband|"
                        r"cust|customer|subscriber|ftth)\d*(?:[.-]|$)")
_NUMBER = re.compile(r"\d{2,}")
# Dynamic-DNS zones device makers and DDNS services hand out to home appliances.
_DDNS_ZONES = frozenset({
    "dyndns.org", "dyndns.biz", "dynalias.com", "homeip.net", "no-ip.org", "no-ip.biz", "no-ip.info",
    "ddns.net", "hopto.org", "zapto.org", "sytes.net", "serveftp.com", "myftp.biz", "duckdns.org",
    "dynu.net", "changeip.com", "freeddns.org", "myfritz.net", "synology.me", "myds.me", "diskstation.me",
    "asuscomm.com", "tplinkdns.com", "mynetgear.com", "myqnapcloud.com", "hik-connect.com", "dvrdns.org",
    "dlinkddns.com", "dyn-o-saur.com", "selfip.com", "3322.org", "oray.net", "ddns.me",
})


def address_hint(url: NormalizedURL) -> str | None:
    """A hint in the host that the server is a device on a home line (never a finding alone)."""
    if url.is_ip:
        return "the host is a bare IP address"
    domain = registered_domain(url.host)
    below = url.host[:-len(domain)] if domain else ""  # the labels the ISP names the line with
    if _SPELLED_ADDRESS.search(below) or (_POOL_WORD.search(below) and _NUMBER.search(below)):
        return f"{url.host} looks like a home line's address"
    return None


def port_hint(url: NormalizedURL) -> str | None:
    """A hint in the port that the server is a device (never a finding alone)."""
    if url.port in DEVICE_PORTS:
        return DEVICE_PORTS[url.port]
    if url.port >= 1024:
        return f"unusual port {url.port}"
    return None


def _ddns_zone(host: str) -> str | None:
    """The dynamic-DNS zone a host name is under, if any (several are public suffixes themselves)."""
    labels = host.split(".")
    for i in range(1, len(labels) - 1):
        zone = ".".join(labels[i:])
        if zone in _DDNS_ZONES:
            return zone
    return None


def _place(url: NormalizedURL) -> list[Evidence]:
    """Where the server is: address, name and port."""
    out: list[Evidence] = []
    if url.is_ip:
        out.append(Evidence("bare IP", 1.0, "place"))
    elif address_hint(url):
        out.append(Evidence("home line's reverse name", 2.0, "place"))
    elif (zone := _ddns_zone(url.host)) is not None:
        out.append(Evidence(f"dynamic-DNS name ({zone})", 1.5, "place"))
    if url.port in _MANAGEMENT_PORTS:
        out.append(Evidence(f"device-management port {url.port}", 2.0, "place"))
    elif url.port in DEVICE_PORTS or url.port >= 1024:
        out.append(Evidence(f"port {url.port}", 0.5, "place"))
    return out


# --- what the server says it is ---------------------------------------------------------------

# Product tokens of ordinary web servers, application servers, frameworks, load balancers
# and CDNs: the first token of their Server header, lower-case.
_ORDINARY_SERVERS = frozenset({
    "nginx", "openresty", "tengine", "angie", "apache", "apache-coyote", "apache-tomcat", "microsoft-iis",
    "microsoft-httpapi", "litespeed", "openlitespeed", "caddy", "cloudflare", "gws", "gse", "esf", "sffe",
    "gfe", "google", "uploadserver", "cloudfront", "amazons3", "awselb", "amazon", "akamaighost",
    "akamainetstorage", "akamai", "varnish", "ats", "envoy", "istio-envoy", "kestrel", "jetty", "gunicorn",
    "uvicorn", "hypercorn", "waitress", "werkzeug", "tornadoserver", "cherrypy", "python", "aiohttp",
    "basehttp", "simplehttp", "twistedweb", "daphne", "node", "express", "github.com", "vercel", "netlify",
    "squid", "haproxy", "traefik", "oracle-http-server", "ibm_http_server", "webseal", "bigip", "big-ip",
    "ecs", "ecacc", "ecd", "pepyaka", "bfe", "dosarrest", "sucuri", "ddos-guard", "wildfly", "undertow",
    "glassfish", "payara", "weblogic", "zope", "phusion_passenger", "mongrel", "thin", "puma", "webrick",
    "cowboy", "h2o", "hiawatha", "cherokee", "nghttpx", "apisix", "kong", "windows-azure-blob",
    "windows-azure-web", "microsoft-azure-application-gateway", "azure", "heroku", "fly", "deno",
    "bunnycdn", "cdn77", "keycdn", "ovhcdn", "qrator", "stackpath", "fastly", "imperva", "incapsula",
    "yunjiasu", "yunjiasu-nginx", "jsp3", "dps", "sun-one-web-server", "oracle-iplanet-web-server",
    "ecstatic", "http-server", "gitlab", "cloudflare-nginx", "zscaler", "restify", "swoole", "wsgiserver",
    "minio", "couchdb", "splunkd", "oracle-application-server-11g", "mojolicious", "php", "nodejs",
    "openbsd", "rocket", "actix-web", "hyper", "warp", "axum", "tomcat", "resin", "iis", "sap",
    "lotus-domino", "domino", "oracle-web-cache", "sun-java-system-web-server", "jboss", "websphere",
    "ibm-websphere", "zeus", "mochiweb", "netty", "vert.x", "pve-api-daemon", "cheroot", "grizzly", "yaws",
    "starman", "tomee", "keycloak",
})
_PRODUCT = re.compile(r"[A-Za-z][\w.+-]*(?: Frontend)?")
# Words and shapes of device firmware in a Server header. Deliberately structural (an
# "httpd" or "-Webs" server, UPnP, a Linux banner, device words, model numbers), not the
# product names the fingerprint files hold, so that unseen products are found.
# The first kind names a small server (as an ordinary server's long name may: "GlassFish Server"),
# the second says what only firmware says (UPnP, TR-069, an RTOS, a camera) even after an ordinary
# server's token ("Apache/2.4 UPnP/1.0").
_SMALL_SERVER = re.compile(
    r"httpd\b|[\w-]webs\b|^webs\b|\bweb ?server\b|\bhttp ?server\b|\bembedded\b|\bmicro[ _-]|\bmini[ _-]|"
    r"\w-http\b|httpproxy|\w[ _]server\b|\bsetting", re.IGNORECASE)
_DEVICE_SERVER = re.compile(
    r"\bupnp\b|\bdlna|\btr-?069\b|\bcwmp\b|^linux\b|\bvxworks\b|\bnucleus\b|\bthreadx\b|\becos\b|\brtos\b|"
    r"\bwince\b|\blwip\b|\buip\b|\bipcam|\bweb ?cam|camera|\bdvr|\bnvr|\bdvs\b|"
    r"router|gateway|\bmodem|\bcpe\b|printer|\bmfp\b|receiver|\bups_", re.IGNORECASE)
# A model number: capitals (a hyphen allowed) then digits, or digits then capitals: DIR-815, AV787,
# RT-G32, WNR2000v4, DS-7608NI, SPA504G, 3300B, IP2IR, WL500g.Premium. Version strings ("1.0.0"),
# words and years ("Report 2024") are no models.
_MODEL = re.compile(r"(?<![\w.])(?:[A-Z]{1,6}-?[A-Z]?\d{2,}[A-Za-z0-9+]*(?:-[A-Z0-9]+)*|"
                    r"\d{2,}[A-Z]{1,3}\d*|[A-Z]{2,}\d[A-Z]{2,}|"
                    r"[A-Z][a-z]+(?:-\d{3,5}|-? (?!(?:19|20)\d\d\b)\d{4,5})[A-Za-z]?)(?!\w|\.\d)")
# A model named strongly enough to stand for the device alone: letters after its digits (DCS-930L,
# RT-AC68U, MFC-L5900DW), parts after its digits (HD-RX-201-C-E), or a long serial (SHARPV01111).
# Standards and codes (X509, COVID-19, SHA256, ISO-9001) have none of these.
_STRONG_MODEL = re.compile(r"\d[A-Za-z]|\d-[A-Z0-9]|\d{5}")
# A product and its version: NET-DK/1.0, uc-httpd 1.0.0, Agranat-EmWeb/R4_01, RomPager/ 2.10, NetApp//8.1.
_PRODUCT_VERSION = re.compile(r"[A-Za-z][\w.+-]*(?: [A-Za-z][\w+-]*)?(?:/+ ?[\w.+-]*\d| v?\d)")
# A version-control keyword expanded into the banner ($ProjectRevision: 4.0.2.38 $): firmware built
# from a Perforce or CVS tree; no ordinary server's release says that.
_BUILD_BANNER = re.compile(r"\$[A-Za-z]+: [^$]*\$")
# Words run together as firmware writes them, split for the word lists: HomeGateway, ReadyNAS,
# NETSurveillance, IPCamera, Acme_CWMP, MiniAVServer. One lower-case letter in front stays (iPhone).
_RUN_TOGETHER = re.compile(r"(?<=[a-z]{2})(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]{2})|_")
_REALM = re.compile(r"""\brealm\s*=\s*(?:"([^"]*)"|([^\s,]+))""", re.IGNORECASE)
# Device words in a realm or a page title (a few languages: device pages speak their market's).
_DEVICE_WORDS = re.compile(
    r"\b(?:router|modem|gateway|access ?point|repeater|extender|wireless|wi-?fi|wlan|broadband|a?dsl|"
    r"ont|gpon|cpe|cwmp|tr-?069|home network(?:ing)?|(?-i:SOHO)|powerline|"
    r"fib(?:er|re) (?:box|gateway|modem|network box)|"
    r"camera|ip ?cam|web ?cam|cam\b|dvr|nvr|dvs|video (?:recorder|server|decoder|encoder)|"
    r"surveillance|cctv|nas|network storage|storage|disk ?station|printer|mfp|scanner|set-?top|"
    r"receiver|decoder|encoder|tuner|ups|pdu|relay|power control|thermostat|controller|control board|"
    r"(?:web|snmp|management|interface|network|\d+) card|sensor|inverter|plug|bulb|lighting|alarm|"
    r"intercom|door|garage|ip phone|phone|cdu|web ?viewer|remote ?view|live (?:view|images?)|firmware|"
    r"smart home|embedded web server|media (?:server|renderer)|"
    # German, French, Spanish, Portuguese, Italian, Polish, Dutch, Russian.
    r"\w*kamera|caméra|cámara|câmera|telecamera|drucker|imprimante|impresora|impressora|stampante|drukarka|"
    r"routeur|enrutador|roteador|passerelle|netzwerkspeicher|überwachungs\w*|videovigilancia|"
    r"videosorveglianza|videoregistratore|rejestrator|bewakingscamera|камера|принтер|роутер|"
    r"маршрутизатор|видеорегистратор|видеонаблюдени\w*)s?\b|"
    # Chinese and Japanese run words together: no word boundaries to look for.
    r"摄像|路由器|录像机|打印机|监控|网络存储|カメラ|ルーター|プリンター|レコーダー",
    re.IGNORECASE)
_WORD = re.compile(r"\w+")
# Words of a device's own administration page.
_ADMIN_WORDS = re.compile(
    r"\b(?:configuration|configurator|setup|management|console|control panel|web interface|"
    r"main menu|system manager|settings|status|diagnostics|administration|login|log ?in|admin|"
    r"anmeldung|einstellungen|verwaltung|konfiguration|connexion|identification|paramètres|"
    r"configuración|administración|iniciar sesión|configuração|configurazione|impostazioni|accesso|"
    r"logowanie|konsola|ustawienia|zarządzani\w*|inloggen|instellingen|beheer|вход|настройки|"
    r"управлени\w*)\b|登录|登入|管理|设置|ログイン|設定",
    re.IGNORECASE)
# Words of the realms ordinary sites write ("Restricted Content", "closed site", "Administrator's
# Area"): a realm of these words only says nothing about the device behind it.
_PLAIN_REALM_WORDS = frozenset({
    "restricted", "content", "area", "access", "zone", "authentication", "authorization", "authorisation",
    "required", "login", "log", "in", "logon", "sign", "admin", "administrator", "administrators",
    "administration", "protected", "private", "secure", "security", "members", "member", "only", "staff",
    "users", "user", "please", "enter", "your", "the", "a", "for", "to", "of", "and", "password",
    "passwords", "credentials", "default", "realm", "test", "testing", "auth", "closed", "site", "server",
    "web", "internal", "intranet", "dev", "development", "staging", "stage", "preview", "beta", "demo",
    "production", "prod", "api", "docs", "files", "file", "download", "downloads", "upload", "backup",
    "team", "office", "company", "portal", "management", "manager", "console", "dashboard", "panel",
    "control", "system", "status", "stats", "statistics", "metrics", "monitoring", "application", "app",
    "repository", "registry", "service", "services", "proxy", "authorized", "authorised", "personnel",
    "limited", "s", "identify", "yourself", "welcome",
})
# Realms ordinary server software sends (lower-case, first word): application servers, CI, registries,
# monitoring. They say nothing of a device either, as the ordinary Server tokens do not.
_ORDINARY_REALMS = frozenset({
    "traefik", "jenkins", "hudson", "tomcat", "rabbitmq", "sonatype", "nexus", "artifactory", "docker",
    "subversion", "svn", "git", "gitea", "gogs", "gitlab", "gerrit", "nagios", "icinga", "munin", "cacti",
    "zabbix", "phpmyadmin", "kibana", "elasticsearch", "opensearch", "grafana", "prometheus", "alertmanager",
    "solr", "couchdb", "airflow", "flower", "haproxy", "transmission", "jupyter", "portainer", "sonarqube",
    "jira", "confluence", "teamcity", "webdav", "owncloud", "nextcloud", "seafile", "minio", "squid",
    "privoxy", "tinyproxy", "spark", "hadoop", "kafka", "consul", "vault", "kubernetes", "webmin",
    "cockpit", "netdata", "glassfish", "weblogic", "jboss", "wildfly", "websphere", "iis", "nginx", "apache",
    "wordpress", "drupal", "joomla", "roundcube", "mailman", "awstats", "webalizer", "collectd", "graphite",
    "influxdb", "mongo", "mongodb", "redis", "pgadmin", "adminer", "airsonic", "calibre",
})
# Realms of firmware: the maker as Asian OEMs name themselves ("… Co., Ltd."), the default login
# spelled out, the device's MAC address. ("Acme Corp" or "Acme Inc" is as likely a site's staging realm.)
_MAKER = re.compile(r"\bco\.?,? ?ltd\b", re.IGNORECASE)
_DEFAULT_LOGIN = re.compile(r"\b(?:default|user(?:name)?|pass(?:word)?|pwd)\s*[:=]|\badmin ?/ ?\w+",
                            re.IGNORECASE)
_MAC_ADDRESS = re.compile(r"\b[0-9A-Fa-f]{2}(?:([:-])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}\b")
_HOST_NAME = re.compile(r"@|\b[a-z0-9][\w-]*\.[a-z]{2,}\b")  # testrealm@host.com, files.example.org
REALM_WORDS = 5  # a longer realm is a sentence, not a device's name
_CLASS_WORDS: tuple[tuple[DeviceClass, re.Pattern[str]], ...] = (
    (DeviceClass.DVR, re.compile(r"\b(?:dvr|nvr|dvs|video recorder)|videoregistratore|rejestrator|"
                                 r"видеорегистратор|录像机|レコーダー", re.IGNORECASE)),
    (DeviceClass.CAMERA, re.compile(r"camera|ip ?cam|web ?cam|surveillance|cctv|kamera|caméra|cámara|"
                                    r"câmera|камера|摄像|カメラ", re.IGNORECASE)),
    (DeviceClass.ROUTER, re.compile(r"router|modem|gateway|access ?point|repeater|extender|a?dsl|"
                                    r"\bcpe\b|\bont\b|gpon|tr-?069|cwmp|broadband|powerline|routeur|"
                                    r"enrutador|roteador|passerelle|роутер|маршрутизатор|路由器|ルーター",
                                    re.IGNORECASE)),
    (DeviceClass.NAS, re.compile(r"\bnas\b|storage|disk ?station|netzwerkspeicher|网络存储", re.IGNORECASE)),
    (DeviceClass.PRINTER, re.compile(r"printer|\bmfp\b|scanner|drucker|imprimante|impresora|impressora|"
                                     r"stampante|drukarka|принтер|打印机|プリンター", re.IGNORECASE)),
    (DeviceClass.TV, re.compile(r"\btv\b|set-?top|receiver|tuner|media", re.IGNORECASE)),
)


def _quoted(value: str) -> str:
    """A value as a finding quotes it, cut short."""
    value = " ".join(value.split())
    return repr(value if len(value) <= EVIDENCE_TEXT else value[:EVIDENCE_TEXT] + "…")


def ordinary_server(server: str | None) -> bool:
    """Whether a Server header names an ordinary web server, framework or CDN (and nothing of a device)."""
    if not server:
        return False
    product = _PRODUCT.match(server.strip())
    if product is None or product[0].split("/")[0].lower() not in _ORDINARY_SERVERS:
        return False
    # Judged after the product's own name: "Microsoft-Azure-Application-Gateway" is no gateway device.
    return _DEVICE_SERVER.search(server.strip()[product.end():]) is None


def _server_token(server: str | None) -> list[Evidence]:
    """What the Server header says: an ordinary server (against), firmware (for), or something unknown."""
    if server is None or not server.strip():
        return []
    if ordinary_server(server):
        return [Evidence(f"ordinary server {_quoted(server)}", -3.0, "against")]
    split = _split(server)
    shapes = (_SMALL_SERVER, _DEVICE_SERVER, _DEVICE_WORDS)
    if (any(shape.search(text) for shape in shapes for text in (server, split)) or _MODEL.search(server)
            or _BUILD_BANNER.search(server) or _private_address_in(server)):
        return [Evidence(f"Server {_quoted(server)}", 2.5, "server")]
    if _PRODUCT_VERSION.match(server.strip()):  # a product of its own (NET-DK/1.0), not a stray word
        return [Evidence(f"unknown server product {_quoted(server)}", 2.0, "server")]
    return [Evidence(f"unknown Server {_quoted(server)}", 1.0, "server")]


def _split(text: str) -> str:
    """Words run together split apart: "NETSurveillance" -> "NET Surveillance", "IP_Cam" -> "IP Cam"."""
    return _RUN_TOGETHER.sub(" ", text)


_ADDRESS = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")


def _private_address_in(text: str) -> bool:
    """Whether the text names a private address (a device's own LAN address in its banner)."""
    for found in _ADDRESS.finditer(text):
        try:
            if ipaddress.ip_address(found[0]).is_private:
                return True
        except ValueError:
            continue
    return False


def realm_of(authenticate: str | None) -> str | None:
    """The realm a WWW-Authenticate header names, if any."""
    found = _REALM.search(authenticate or "")
    return None if found is None else (found[1] if found[1] is not None else found[2])


def _realm(authenticate: str | None) -> list[Evidence]:
    """A login realm of device shape: device words, a model number, or a product's own name."""
    stripped = " ".join((realm_of(authenticate) or "").split())
    if not stripped or "://" in stripped:
        return []  # no realm, or a token issuer's URL
    if _DEVICE_WORDS.search(_split(stripped)) or _MODEL.search(stripped):
        return [Evidence(f"realm {_quoted(stripped)}", 2.5, "server")]
    if _DEFAULT_LOGIN.search(stripped):
        return [Evidence(f"realm telling the default login {_quoted(stripped)}", 2.5, "server")]
    if _MAC_ADDRESS.search(authenticate or ""):  # in the realm or the nonce, as Thomson gateways send it
        return [Evidence(f"MAC address in the login challenge (realm {_quoted(stripped)})", 2.5, "server")]
    if _HOST_NAME.search(stripped):
        return []  # a site's host name (RFC 7616's testrealm@host.com): nothing of a device
    words = [w.lower() for w in _WORD.findall(stripped)]
    if _MAKER.search(stripped) and len(words) <= REALM_WORDS:
        return [Evidence(f"maker-named realm {_quoted(stripped)}", 2.0, "server")]
    if (not words or len(words) > REALM_WORDS or words[0] in _ORDINARY_REALMS
            or all(w in _PLAIN_REALM_WORDS for w in words)):
        return [Evidence(f"login realm {_quoted(stripped)}", 0.5, "server")]
    # One name of no ordinary word ("SpeedTouch", "rokudev") is how firmware names its realm; a few
    # words with a name in them are as often a site's ("Acme Staging").
    weight = 2.0 if " " not in stripped else 1.5
    return [Evidence(f"product-named realm {_quoted(stripped)}", weight, "server")]


def _title(title: str | None) -> list[Evidence]:
    """A page title of device shape: device words, a model number, an administration page."""
    if not title:
        return []
    device_word, model = _DEVICE_WORDS.search(_split(title)), _MODEL.search(title)
    admin = _ADMIN_WORDS.search(title)
    if len(_WORD.findall(title)) > SHORT_TITLE and not (model or admin):
        device_word = None  # prose that mentions a printer or a gateway, as documentation does
    weight = (2.0 if device_word else 0.0) + (_model_weight(title, model) if model else 0.0) \
        + (1.0 if admin else 0.0)
    if weight == 0.0:
        return []
    return [Evidence(f"title {_quoted(title)}", min(weight, 3.0), "server")]


def _model_weight(title: str, model: re.Match[str]) -> float:
    """A model number in a title; more when the title is little else ("B426", "Acme - XR200N")."""
    words = [w for w in title.split() if _WORD.search(w)]
    if len(words) == 1 or (len(words) <= TITLE_NAMING_MODEL and _STRONG_MODEL.search(model[0])):
        return 2.0
    return 1.5


# --- how it answers ---------------------------------------------------------------------------

_FIRMWARE_PATH = re.compile(r"/cgi-bin/|\.(?:cgi|asp|htm|fcgi)(?![\w.])|/(?:userRpm|goform|boaform)/",
                            re.IGNORECASE)
_FIRMWARE_HINT = re.compile(r"/cgi-bin/|\.(?:cgi|asp|htm|fcgi)|/(?:userRpm|goform|boaform)/", re.IGNORECASE)
_LINKED_PATH = re.compile(r"""(?:href|src|action|url)\s*=\s*["']?([^"'\s>]{1,200})""", re.IGNORECASE)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9-]+")


def _canonical(name: str) -> bool:
    """Whether a header name is cased as ordinary stacks write it: Title-Case or all lower-case."""
    if name.islower() or not _TOKEN_CHARS.fullmatch(name):
        return True
    return all(_canonical_part(part) for part in name.split("-"))


def _canonical_part(part: str) -> bool:
    """One hyphen-separated part of a Title-Case name: Content, Type, WWW, XSS, ETag, P3P."""
    if part in ("ETag", "WebSocket", "WebKit"):
        return True
    if part.isupper() or part.isdigit():
        return len(part) <= 5  # an acronym (WWW-Authenticate, X-XSS-Protection), not a shouted word
    return part[:1].isupper() and (part[1:].islower() or part[1:].isdigit())


def _shape(status: int, headers: Sequence[tuple[str, str]], body: bytes, url: NormalizedURL,
           server: ServerFacts | None, small_server: bool, now: float) -> list[Evidence]:
    """The firmware's way of answering: version, missing Date, header casing, tiny pages, CGI paths."""
    out: list[Evidence] = []
    names = {name.lower() for name, _ in headers}
    version = server.http_version if server is not None else None
    if version == "HTTP/1.0" and server is not None and server.request_version != "HTTP/1.0":
        out.append(Evidence("HTTP/1.0", 1.5, "shape"))
    if "date" not in names and (version is None or version.startswith("HTTP/1")):
        out.append(Evidence("no Date", 1.5, "shape"))
    date = next((value for name, value in headers if name.lower() == "date"), None)
    if date is not None and (sent := _http_date(date)) is not None and abs(sent - now) > CLOCK_SLACK:
        out.append(Evidence(f"clock never set (Date {_quoted(date)})", 1.5, "shape"))
    if server is not None and version is not None and version.startswith("HTTP/1"):
        odd = [name for name in server.header_names if not _canonical(name)]
        if odd:
            out.append(Evidence(f"header casing {odd[0]!r}", 1.0, "shape"))
    if not small_server:
        return out
    if (200 <= status < 300 or status == 401) and len(body) < TINY_PAGE \
            and b"<script" not in body[:TINY_PAGE].lower():
        out.append(Evidence("tiny static page", 0.5, "page"))
    location = next((value for name, value in headers if name.lower() == "location"), "")
    head = body[:4096].decode("latin-1")
    # Most pages name no such path anywhere: one search of the whole head settles it. The looser
    # pattern finds every match of the exact one in a linked path (a path cut at 200 characters too).
    linked = (m[1] for m in _LINKED_PATH.finditer(head)) if _FIRMWARE_HINT.search(head) else ()
    firmware = next((path for path in (url.path, location, *linked) if _FIRMWARE_PATH.search(path)), None)
    if firmware is not None:
        out.append(Evidence(f"firmware-style path {_quoted(firmware)}", 1.0, "page"))
    return out


def _http_date(value: str) -> float | None:
    """An HTTP Date as a POSIX time; None if it does not parse."""
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _certificate(url: NormalizedURL, server: ServerFacts | None) -> list[Evidence]:
    """A device's TLS certificate: self-signed on an IP, or naming a device, a private address, localhost."""
    cert = server.certificate if server is not None else None
    if cert is None:
        return []
    out: list[Evidence] = []
    names = [n for n in (cert.common_name, cert.organization, *cert.alt_names) if n]
    named = next((n for n in names if _DEVICE_WORDS.search(n) or _MODEL.search(n) or _private_name(n)), None)
    if named is not None:
        out.append(Evidence(f"device-named certificate {_quoted(named)}", 2.0, "server"))
    if cert.self_signed and (url.is_ip or named is not None):
        out.append(Evidence("self-signed certificate", 1.5, "server"))
    return out


def _private_name(name: str) -> bool:
    """A certificate name no public site has: a private or loopback address, localhost."""
    if name.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_private or address.is_loopback


# --- the decision -----------------------------------------------------------------------------


def _device_class(texts: Sequence[str | None]) -> DeviceClass:
    """The device class the words of the server's texts point to; EMBEDDED when none does."""
    joined = " ".join(t for t in texts if t)
    for device_class, words in _CLASS_WORDS:
        if words.search(joined):
            return device_class
    return DeviceClass.EMBEDDED


def decide(pieces: Sequence[Evidence]) -> bool:
    """A device: the place speaks for it, and so does the server itself, enough together.

    The page's own hints (a tiny page, CGI paths) add to the total only: small sites have
    them too, so they never stand in for what the server says of itself.
    """
    place = sum(p.weight for p in pieces if p.kind == "place")
    own = sum(p.weight for p in pieces if p.kind in ("server", "shape", "against"))
    page = sum(p.weight for p in pieces if p.kind == "page")
    return place >= PLACE_NEEDED and own >= SERVER_NEEDED and place + own + page >= TOTAL_NEEDED


def device_evidence(*, url: NormalizedURL, status: int, headers: Sequence[tuple[str, str]], body: bytes,
                    server_header: str | None, authenticate: str | None, title: str | None,
                    server: ServerFacts | None = None, now: float | None = None) -> DeviceEvidence:
    """Weigh the generic evidence that one response comes from an embedded device.

    ``body``: the first part of the body as received; ``server_header``, ``authenticate``,
    ``title``: the response's Server and WWW-Authenticate headers and its page title;
    ``now``: the time the response came (POSIX), to see a Date from a clock never set.
    """
    small_server = not ordinary_server(server_header)
    when = time.time() if now is None else now
    pieces = [*_place(url), *_server_token(server_header), *_realm(authenticate), *_title(title),
              *_shape(status, headers, body, url, server, small_server, when), *_certificate(url, server)]
    cert = server.certificate if server is not None and server.certificate is not None else None
    device_class = _device_class([server_header, realm_of(authenticate), title,
                                  cert.common_name if cert else None, cert.organization if cert else None,
                                  "tr-069" if url.port == 7547 else None])
    return DeviceEvidence(tuple(pieces), decide(pieces), device_class)
