"""`clickguard run --event-loop {asyncio,uvloop}`: the event loop the proxy runs on.

mitmproxy 12 starts its own loop (``asyncio.run`` in ``mitmproxy.tools.main.run``), which
asks the event loop policy for a new loop: installing uvloop's policy before that call is
what puts the proxy on uvloop. Nothing else changes: the addons only use the asyncio API,
and `Pins` answers a pinned name on either loop (uvloop resolves inside its connect, in C,
so there the connect itself is pinned).

asyncio stays the default: measured side by side (bench/run.py, the ``uvloop`` line), uvloop
did not lower the proxy's CPU per request clearly (mitmproxy's own per-hook work dominates).
"""

from __future__ import annotations

import asyncio
from typing import Literal

type EventLoop = Literal["asyncio", "uvloop"]
EVENT_LOOPS: tuple[EventLoop, ...] = ("asyncio", "uvloop")


def use_event_loop(name: EventLoop) -> None:
    """Have the next `asyncio.run` (mitmproxy's) start this kind of loop."""
    if name == "uvloop":
        import uvloop  # imported only when asked for

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(None)  # the default policy: asyncio's own selector loop


def running_event_loop(loop: asyncio.AbstractEventLoop) -> EventLoop:
    """Which kind of loop this is (for the start-up log line)."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
