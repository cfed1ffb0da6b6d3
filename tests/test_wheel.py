"""clickguard as a new user installs it: a wheel built from the repository, installed (not editable) into a
fresh virtual environment, run from an empty directory with no arguments at all.

The installed package must find its shipped data (default policy, fingerprints, self-test feed) by itself:
a camera's page that sends the browser to another site is blocked with nothing but what the wheel carries.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliances import Route, serve
from tests.harness import REPO, free_port, port_open, wait_until

pytestmark = pytest.mark.slow

DOCUMENT = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


def _copy_sources(dest: Path) -> None:
    """The tracked files of the checkout, links kept as links (clickguard/data links to policies/)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source, target = REPO / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with clickguard installed from a freshly built wheel; returns its bin directory."""
    work = tmp_path_factory.mktemp("wheel")
    src, dist = work / "src", work / "dist"
    _copy_sources(src)  # built outside the checkout: a build writes build/ and *.egg-info next to its sources
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(src)], check=True, capture_output=True)
    [wheel] = dist.glob("clickguard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "clickguard/data/default.yaml" in names and "clickguard/py.typed" in names
    assert "clickguard/data/fingerprints/cameras.yaml" in names
    # The pages' templates and every language's strings (clickguard/policy/pages.py reads them).
    templates = ("base.html", "block.html", "warn.html", "unrecorded.html", "message.html", "findings.html",
                 "style.css")
    assert {f"clickguard/web/templates/{name}" for name in templates} <= set(names)
    assert {f"clickguard/web/locales/{lang}.json" for lang in ("en", "de", "fr", "es")} <= set(names)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The dependencies come from the test run's own environment (no index is asked for anything):
    # a plain path line in a .pth adds that directory after the new venv's own site-packages, and
    # the editable install's hook there is not run, so `import clickguard` finds the wheel's copy.
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                   "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    return venv / "bin"


def test_installed_package_is_the_wheel_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    """The installed clickguard imports from the new venv and finds its data there."""
    out = subprocess.run([str(installed / "python"), "-c",
                          "import json, clickguard, clickguard.shipped as s; print(json.dumps("
                          "[clickguard.__file__, str(s.DEFAULT_POLICY), s.FINGERPRINTS.is_dir(), "
                          "clickguard.__version__]))"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    module, policy, fingerprints, version = json.loads(out.stdout)
    venv = installed.parent
    assert Path(module).is_relative_to(venv) and Path(policy).is_relative_to(venv), (module, policy)
    assert not Path(module).resolve().is_relative_to(REPO)
    assert fingerprints is True and version == "0.1.0"


@pytest.fixture
def running(installed: Path, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`clickguard run` of the installed package, from an empty directory, with only --listen."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    port = free_port()
    log_path = tmp_path / "proxy.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The default policy subscribes public feeds: their fetches go to a closed port on loopback
    # (as through a parent proxy that is down), never to a name server or the Internet.
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(installed / "clickguard"), "run", "--listen", f"127.0.0.1:{port}"],
                                   cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"proxy exited with {process.returncode}:\n{log_path.read_text()}")
        return "proxy listening at" in log_path.read_text() and port_open("127.0.0.1", port)

    try:
        wait_until(ready, 60, "the installed proxy to listen")
        yield port, cwd
    finally:
        process.terminate()
        process.wait(30)


def test_installed_proxy_blocks_a_camera_sending_the_browser_elsewhere(running: tuple[int, Path]) -> None:
    """The shipped camera fingerprints and default policy (inspect.appliance_redirect: block) at work."""
    port, cwd = running
    page = b'<html><head><meta http-equiv="refresh" content="0; url=http://127.0.0.52/landing"></head></html>'
    routes = {"/": Route(headers=[("Server", "Hikvision-Webs"), ("Content-Type", "text/html")], body=page)}
    with serve("127.0.0.51", routes) as camera:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", f"{camera.base}/", headers=DOCUMENT)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
    assert response.status == 403 and response.getheader("X-Clickguard-Action") == "block"
    assert page not in body
    # The audit log went where the default policy says: var/ under the working directory.
    wait_until(lambda: (cwd / "var" / "audit.jsonl").exists(), 10, "the audit log")
    record = json.loads((cwd / "var" / "audit.jsonl").read_text().splitlines()[-1])
    assert record["action"] == "block"
    assert {"landing.appliance", "response.redirect"} <= set(record["reasons"])
    # The self-test feed shipped with the default policy is loaded too.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "http://127.66.0.1/", headers=DOCUMENT)
        selftest = conn.getresponse()
        selftest.read()
    finally:
        conn.close()
    assert selftest.getheader("X-Clickguard-Action") == "block"
