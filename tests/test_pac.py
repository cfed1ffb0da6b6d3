"""The PAC file, evaluated as a browser would: a real JavaScript engine with the standard PAC functions.

The engine is pacparser (Debian's python3-pacparser: SpiderMonkey with Mozilla's PAC functions),
run by the system's python3 in a child process. Each file is asked FindProxyForURL for plain
names, private and public addresses, IT's domains, the click host and ordinary hosts; the files
come from the core generator, from the click host through the real proxy, and from the ops port.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from clickguard.errors import PolicyError
from clickguard.policy.model import parse_policy
from clickguard.policy.ops import PacConfig
from clickguard.web.pac import PAC_TYPE, pac_file
from tests.harness import Proxy, ProxyPool, free_port

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-pacparser installs its module
EVALUATE = """
import json, sys, warnings
warnings.simplefilter("ignore")
import pacparser
pac, asks = json.load(sys.stdin)
pacparser.init()
pacparser.parse_pac_string(pac)
print(json.dumps([pacparser.find_proxy(url, host) for url, host in asks]))
pacparser.cleanup()
"""


def find_proxy(pac: str, urls: list[str]) -> dict[str, str]:
    """FindProxyForURL(url, host) for each URL (host as the browser gives it), by pacparser."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} not found; the tests need Debian's python3-pacparser")
    asks = [(url, _host_of(url)) for url in urls]
    done = subprocess.run([SYSTEM_PYTHON, "-c", EVALUATE], input=json.dumps([pac, asks]),
                          capture_output=True, text=True, timeout=60, check=False)
    if "No module named 'pacparser'" in done.stderr:
        pytest.fail("pacparser not found; the tests need Debian's python3-pacparser (apt-get install it)")
    assert done.returncode == 0, done.stderr
    return dict(zip(urls, json.loads(done.stdout), strict=True))


def _host_of(url: str) -> str:
    """The host a browser passes to FindProxyForURL: the URL's host, IPv6 without brackets."""
    authority = url.split("://", 1)[1].split("/", 1)[0]
    if authority.startswith("["):
        return authority[1:authority.index("]")]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def pac_of(config: dict[str, object], click_host: str = "clickguard.local") -> str:
    """The PAC file the core generator writes for a pac: section."""
    pac = PacConfig.model_validate(config)
    return pac_file(pac, click_host=click_host, proxies=pac.proxies)


TWO = "PROXY p1.corp.example:8080; PROXY 10.0.0.9:3128"
CONFIG: dict[str, object] = {"proxies": ["p1.corp.example:8080", "10.0.0.9:3128"],
          "direct": {"domains": ["corp.example", "Intra.Example.NET"], "networks": ["100.64.0.0/10"]}}

# What every browser must be told, for the CONFIG above.
EXPECTED = {
    # plain host names go direct; a bare number is an address to the resolver, not a name
    "http://intranet/": "DIRECT",
    "http://printer:631/jobs": "DIRECT",
    "http://2130706433/": TWO,
    "http://0x7f000001/": TWO,
    # private networks, and IT's own
    "http://10.1.2.3/": "DIRECT",
    "http://172.16.0.1/": "DIRECT",
    "http://172.31.255.255/": "DIRECT",
    "http://172.32.0.1/": TWO,
    "http://192.168.1.1:8443/": "DIRECT",
    "http://127.0.0.1:9000/": "DIRECT",
    "http://100.64.1.1/": "DIRECT",
    "http://100.128.0.1/": TWO,
    # public addresses, IPv6 always through the proxies
    "http://8.8.8.8/": TWO,
    "http://[2001:db8::1]/": TWO,
    "http://[::1]/": TWO,
    # IT's domains with their subdomains, never a look-alike
    "http://corp.example/": "DIRECT",
    "https://wiki.corp.example/page": "DIRECT",
    "http://WWW.CORP.EXAMPLE./": "DIRECT",
    "http://intra.example.net/": "DIRECT",
    "http://notcorp.example/": TWO,
    "http://corp.example.evil.test/": TWO,
    # the click host's pages are served by the proxy
    "http://clickguard.local/proxy.pac": TWO,
    "https://clickguard.local/v1/abc/https://example.com/": TWO,
    # everything else
    "http://example.com/": TWO,
    "https://thingbot.example.org:8443/x": TWO,
}


def test_generated_pac_answers_as_a_browser_is_told() -> None:
    assert find_proxy(pac_of(CONFIG), list(EXPECTED)) == EXPECTED


@pytest.mark.parametrize(("config", "click_host", "url", "expected"), [
    # fail closed by default; DIRECT after the proxies only when the policy says so
    ({"proxies": ["p:1"], "fallback_direct": True}, "clickguard.local", "http://example.com/",
     "PROXY p:1; DIRECT"),
    ({"proxies": ["[2001:db8::5]:3128"]}, "clickguard.local", "http://example.com/",
     "PROXY [2001:db8::5]:3128"),
    ({"proxies": ["p:1"], "direct": {"plain_hosts": False}}, "clickguard.local", "http://intranet/",
     "PROXY p:1"),
    ({"proxies": ["p:1"], "direct": {"private_networks": False}}, "clickguard.local", "http://10.1.1.1/",
     "PROXY p:1"),
    # a click host that is a plain name, or inside IT's domain, still goes through the proxy
    ({"proxies": ["p:1"]}, "clickguard", "http://clickguard/continue?t=x", "PROXY p:1"),
    ({"proxies": ["p:1"], "direct": {"domains": ["corp.example"]}}, "clickguard.corp.example",
     "http://clickguard.corp.example/v1/x", "PROXY p:1"),
    ({"proxies": ["p:1"], "direct": {"domains": ["corp.example"]}}, "clickguard.corp.example",
     "http://other.corp.example/", "DIRECT"),
])
def test_pac_options(config: dict[str, object], click_host: str, url: str, expected: str) -> None:
    assert find_proxy(pac_of(config, click_host), [url]) == {url: expected}


@pytest.mark.parametrize(("section", "where", "message"), [
    ("pac:\n  proxies: [proxy.corp.example]\n", "3: pac.proxies[0]", "must be HOST:PORT"),
    ("pac:\n  proxies: ['p:0']\n", "3: pac.proxies[0]", "must be HOST:PORT"),
    ("pac:\n  proxies: ['p\";alert(1);//:80']\n", "3: pac.proxies[0]", "not a valid host name"),
    ("pac:\n  proxies: ['::1:8080']\n", "3: pac.proxies[0]", "brackets"),
    ("pac:\n  direct:\n    domains: ['corp.example\\\"; x=\\\"']\n", "4: pac.direct.domains[0]",
     "not a valid host name"),
    ("pac:\n  direct:\n    networks: ['fd00::/8']\n", "4: pac.direct.networks", "IPv4 networks only"),
    ("pac:\n  direct:\n    networks: ['10.0.0.0/8\\\"']\n", "4: pac.direct.networks[0]",
     "IP address or a network"),
    ("pac:\n  fallback_direct: 'yes'\n", "3: pac.fallback_direct", "must be true or false"),
    ("ops:\n  listen: 9090\n", "3: ops.listen", "must be HOST:PORT"),
])
def test_policy_refuses_what_could_break_the_pac(tmp_path: Path, section: str, where: str,
                                                 message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("version: 1\n" + section, filename="policy.yaml", base_dir=tmp_path)
    text = str(caught.value)
    assert f"policy.yaml:{where}: " in text and message in text, text


def test_pac_strings_stay_strings() -> None:
    # Validated names cannot hold a quote; the generator escapes anyway (JSON, '<' '/' as \\u, \\/).
    pac = pac_of({"proxies": ["p:1"]}, click_host="a.example")
    assert "</" not in pac and "\\u2028" not in pac
    assert 'var CLICK_HOST = "a.example";' in pac


# --- through the real proxy ---------------------------------------------------------------------

POLICY = """\
click_host: clickguard.local
pac:
  direct:
    domains: [corp.example]
"""


@pytest.fixture(scope="module")
def ops_port() -> int:
    """The ops listener's port of the module's proxy."""
    return free_port()


@pytest.fixture
def proxy(shared_proxy: ProxyPool, ops_port: int) -> Proxy:
    """A proxy on 127.0.0.1 with the ops listener; pac.proxies unset, so the PAC names the proxy itself."""
    return shared_proxy(POLICY, "--ops", f"127.0.0.1:{ops_port}")


def _check_pac(pac: str, proxy_port: int) -> None:
    """The served PAC sends ordinary hosts and the click host through this proxy, the rest direct."""
    own = f"PROXY 127.0.0.1:{proxy_port}"
    urls = {"http://example.com/": own, "http://clickguard.local/proxy.pac": own,
            "http://wiki.corp.example/": "DIRECT", "http://intranet/": "DIRECT",
            "http://192.168.0.10/": "DIRECT", "http://8.8.4.4/": own}
    assert find_proxy(pac, list(urls)) == urls


@pytest.mark.parametrize("path", ["/proxy.pac", "/wpad.dat"])
def test_pac_from_the_click_host_through_the_proxy(proxy: Proxy, path: str) -> None:
    r = proxy.get(f"http://clickguard.local{path}")
    assert r.status == 200
    assert r.headers["content-type"] == PAC_TYPE
    _check_pac(r.text, proxy.port)
    # The click host's HTTPS side serves the same file.
    tls = proxy.get_tls("clickguard.local", 443, path)
    assert tls.status == 200 and tls.body == r.body


@pytest.mark.parametrize("path", ["/proxy.pac", "/wpad.dat"])
def test_pac_from_the_ops_port(proxy: Proxy, ops_port: int, path: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", ops_port, timeout=30)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    assert r.status == 200 and r.getheader("Content-Type") == PAC_TYPE
    _check_pac(body, proxy.port)
    assert body == proxy.get(f"http://clickguard.local{path}").text


def test_pac_follows_the_policy(proxy_factory: ProxyPool) -> None:
    proxy = proxy_factory(textwrap.dedent("""\
        pac:
          proxies: [p1.corp.example:8080, p2.corp.example:8080]
          fallback_direct: true
        """))
    pac = proxy.get("http://clickguard.local/proxy.pac").text
    failover = "PROXY p1.corp.example:8080; PROXY p2.corp.example:8080; DIRECT"
    assert find_proxy(pac, ["http://example.com/"]) == {"http://example.com/": failover}
