"""mitmdump with clickguard's hook dispatch and nothing else: the bench's second reference.

`clickguard run` dispatches mitmproxy's hooks with `clickguard.proxy.dispatch.HookDispatch`,
which spends far less per request than mitmproxy's own dispatch. Against bare mitmdump that
saving hides part of what clickguard's addon costs; against this process, which saves the
same, the ratio is the addon's own cost. Same arguments as mitmdump.
"""

from __future__ import annotations

import sys
from typing import Any

from mitmproxy.tools import cmdline, dump
from mitmproxy.tools import main as mitmproxy_main

from clickguard.proxy.dispatch import HookDispatch


class DispatchMaster(dump.DumpMaster):
    """mitmdump's master, its hooks dispatched as clickguard's are."""

    def __init__(self, options: Any, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        HookDispatch.install(self.addons)


if __name__ == "__main__":
    mitmproxy_main.run(DispatchMaster, cmdline.mitmdump, sys.argv[1:])
