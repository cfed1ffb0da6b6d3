"""clickguard as a mitmproxy script: `mitmdump -s clickguard/addon.py --set clickguard_policy=FILE`."""

from __future__ import annotations

from pathlib import Path

from clickguard.addons.config import Config
from clickguard.addons.endpoint import Endpoint
from clickguard.addons.guard import Guard
from clickguard.runtime import Runtime


def make_addons() -> list[object]:
    """clickguard's addons around one shared runtime, in the order they must see a flow."""
    runtime = Runtime(state_dir=Path("var"), certs_dir=Path("~/.mitmproxy").expanduser())
    return [Config(runtime), Endpoint(runtime), Guard(runtime)]


addons = make_addons()
