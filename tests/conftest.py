"""Shared fixtures: the real feed snapshots, the session's proxy CA, proxies per test or per module.

Plain helpers live in `tests/harness.py`. Two session-wide rules are kept here:
a test that starts a real proxy (every such test needs the session CA, `certs`)
is marked `slow`, so `pytest -m "not slow"` is the quick subset; and the run
writes nothing into the checkout's `var/` and `policies/` (tests write under
their temporary directories only).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import FEEDS, REPO, ProxyPool

# The checkout's own state and policies: `make run` uses them, a test run must leave them alone.
UNTOUCHED = [REPO / "var", REPO / "policies"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a proxy (it asks for the session CA) as slow."""
    for item in items:
        if "certs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def _listing(roots: list[Path]) -> dict[str, tuple[int, int]]:
    """Every file and directory under roots: (size, mtime in ns), by path."""
    found: dict[str, tuple[int, int]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            info = path.lstat()
            found[str(path.relative_to(REPO))] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched() -> Iterator[None]:
    """Fail the run if any test created, changed or removed anything in the checkout's var/ or policies/."""
    before = _listing(UNTOUCHED)
    yield
    after = _listing(UNTOUCHED)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert changed == [], f"the test run wrote into the checkout: {changed}"


@pytest.fixture(scope="session")
def feeds_dir() -> Path:
    """The real threat-intel snapshots in ../shared/data/feeds (CI has them beside the clone)."""
    if not FEEDS.is_dir():
        pytest.fail(f"real feed snapshots not found at {FEEDS}; set CLICKGUARD_SHARED_DATA")
    return FEEDS


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One proxy CA and signing key for the whole session (generating a CA takes a moment)."""
    return tmp_path_factory.mktemp("certs")


@pytest.fixture
def proxy_factory(tmp_path: Path, certs: Path) -> Iterator[ProxyPool]:
    """Proxies of this test alone, working in its tmp_path (where it may edit the policy and feeds)."""
    pool = ProxyPool(certs, lambda: tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module")
def shared_proxy(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[ProxyPool]:
    """Proxies shared by the tests of a module: one per policy, each in a directory of its own."""
    pool = ProxyPool(certs, lambda: tmp_path_factory.mktemp("proxy"))
    yield pool
    pool.stop_all()
