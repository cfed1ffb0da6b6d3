"""Shared fixtures: where the real feed snapshots live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("CLICKGUARD_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data()
FEEDS = SHARED_DATA / "feeds"


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
