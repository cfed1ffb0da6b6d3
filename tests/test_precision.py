"""Precision: thousands of real, benign pages (Debian's python3-doc) pass inspection untouched.

The corpus is the Python documentation as Debian installs it (`apt-get install
python3-doc`, done by `make test` and `.ci/run`): real Sphinx pages with their
scripts, styles and search index. Inspected as an ordinary server's pages they
must produce no finding at all; inspected as if a router served them they must
still produce no redirect and no payload (only the appliance itself is noted);
and passed through the real proxy, none may be blocked or warned.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import mimetypes
from pathlib import Path

import pytest

from clickguard.decision.judge import Judge
from clickguard.inspection.fingerprints import FingerprintDB
from clickguard.inspection.response import inspect_response
from clickguard.intel.index import ReputationIndex
from clickguard.policy.model import parse_policy
from clickguard.urls import normalize_url
from tests.appliances import Route, serve
from tests.harness import HTML, Proxy, ProxyPool

CORPUS = Path("/usr/share/doc/python3/html")
MAX_BODY = 2**20  # the default policy's inspect.max_body


def corpus_files(suffixes: tuple[str, ...] = (".html",)) -> list[Path]:
    """Every file of the corpus with these suffixes; the test fails (not skips) without it."""
    if not CORPUS.is_dir():
        pytest.fail(f"{CORPUS} is missing: apt-get install python3-doc (make test does this)")
    files = sorted(p for p in CORPUS.rglob("*") if p.suffix in suffixes and p.is_file())
    assert len(files) > 400, f"only {len(files)} files under {CORPUS}"
    return files


@pytest.mark.slow
def test_no_finding_on_benign_pages(tmp_path: Path) -> None:
    judge = Judge(parse_policy("feeds: []", filename="p.yaml", base_dir=tmp_path), ReputationIndex.build([]))
    fingerprints = FingerprintDB.default()
    ordinary = [("Server", "nginx/1.24.0"), ("Content-Type", "text/html; charset=utf-8")]
    router = [("Server", "Router Webserver"), ("Content-Type", "text/html; charset=utf-8")]
    pages = corpus_files()
    found: dict[str, list[str]] = {}
    from_router: dict[str, list[str]] = {}
    for page in pages:
        relative = page.relative_to(CORPUS).as_posix()
        url = normalize_url(f"https://docs.python.example/3/{relative}")
        body = page.read_bytes()[:MAX_BODY]
        plain = inspect_response(judge, fingerprints, url=url, status=200, headers=ordinary, body=body)
        if plain.findings:
            found[relative] = [f.detail for f in plain.findings]
        served = inspect_response(judge, fingerprints, url=url, status=200, headers=router, body=body)
        codes = [f.code for f in served.findings if f.code != "landing.appliance"]
        if codes or judge.decide(served.findings, suspect=served.suspect).action != "allow":
            from_router[relative] = [f.detail for f in served.findings]
    print(f"precision corpus: {len(pages)} pages, {len(found)} with a finding, "
          f"{len(from_router)} flagged when served by a router")
    assert found == {}
    assert from_router == {}


@pytest.mark.slow
def test_corpus_through_the_proxy_is_never_blocked_or_warned(proxy_factory: ProxyPool) -> None:
    files = corpus_files((".html", ".js", ".css", ".png", ".svg", ".txt"))
    routes = {}
    for path in files:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        routes["/" + path.relative_to(CORPUS).as_posix()] = Route(
            headers=[("Server", "nginx/1.24.0"), ("Content-Type", content_type)], body=path.read_bytes())
    proxy = proxy_factory("feeds: []\n")
    with serve("127.0.0.40", routes) as docs:
        statuses = _fetch_all(proxy, [f"{docs.base}{path}" for path in routes])
    assert statuses == {200: len(routes)}
    records = proxy.audit()
    assert [r for r in records if r["action"] != "allow"] == []
    assert [r for r in records if r["reasons"]] == []
    print(f"precision corpus through the proxy: {len(routes)} files, {len(records)} audit records, "
          "0 blocked, 0 warned")


def _fetch_all(proxy: Proxy, urls: list[str]) -> dict[int, int]:
    """GET every URL through the proxy as page navigations (four connections); status counts."""
    def fetch(batch: list[str]) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
        out = []
        for url in batch:
            conn.request("GET", url, headers=HTML)
            response = conn.getresponse()
            response.read()
            out.append(response.status)
        conn.close()
        return out

    counts: dict[int, int] = {}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for statuses in pool.map(fetch, [urls[i::4] for i in range(4)]):
            for status in statuses:
                counts[status] = counts.get(status, 0) + 1
    return counts
