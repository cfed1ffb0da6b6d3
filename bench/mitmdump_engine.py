"""mitmdump run as clickguard runs mitmproxy, without clickguard's addon: the bench's second reference.

`clickguard run` runs mitmproxy with `clickguard.proxy.engine` (its own hook dispatch, no debug
type checks), which spends far less per request than mitmdump does. Against bare mitmdump that
saving hides part of what clickguard's addon costs; against this process, which saves the same,
the ratio is the addon's own cost. Same arguments as mitmdump.
"""

from __future__ import annotations

import sys
from typing import Any

from mitmproxy.tools import cmdline, dump
from mitmproxy.tools import main as mitmproxy_main

from clickguard.proxy import engine


class DispatchMaster(dump.DumpMaster):
    """mitmdump's master, run as clickguard's is."""

    def __init__(self, options: Any, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        engine.install(self)


if __name__ == "__main__":
    mitmproxy_main.run(DispatchMaster, cmdline.mitmdump, sys.argv[1:])
