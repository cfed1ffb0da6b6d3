"""How clickguard runs mitmproxy: mitmproxy's hook calls in its order; no debug type checks.

Differential: the same addons on two real mitmdump masters, one with mitmproxy's
AddonManager and one with `HookDispatch`, the same events fired on both; the calls
each addon saw and the errors logged must be the same, also after the chain and a
container's children change between events (when the plans are rebuilt).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from typing import Any

import pytest
from mitmproxy import exceptions, hooks, options
from mitmproxy.proxy.layers.http import _hooks as http  # the hooks themselves, not re-exported
from mitmproxy.test import tflow
from mitmproxy.tools import dump

from clickguard.proxy.engine import HookDispatch


class Recorder:
    """An addon with sync and async hooks that notes each call in a shared list."""

    def __init__(self, name: str, calls: list[tuple[str, str, object]], **behaviour: str) -> None:
        self.name = name
        self.calls = calls
        self.behaviour = behaviour  # hook name -> "raise", "halt", "options"

    def _act(self, hook: str, arg: object) -> None:
        self.calls.append((self.name, hook, arg))
        what = self.behaviour.get(hook)
        if what == "raise":
            raise ValueError(f"{self.name} fails in {hook}")
        if what == "halt":
            raise exceptions.AddonHalt()  # type: ignore[no-untyped-call]
        if what == "options":
            raise exceptions.OptionsError(f"{self.name}: bad option")  # type: ignore[no-untyped-call]

    def request(self, flow: Any) -> None:
        self._act("request", type(flow).__name__)

    async def response(self, flow: Any) -> None:
        self._act("response", type(flow).__name__)

    def requestheaders(self, flow: Any) -> None:
        self._act("requestheaders", type(flow).__name__)

    def error(self, flow: Any) -> None:
        self._act("error", type(flow).__name__)


class OnlyResponse:
    """A hook-less addon apart from response, which returns an awaitable from a plain method."""

    def __init__(self, calls: list[tuple[str, str, object]]) -> None:
        self.name = "only_response"
        self.calls = calls

    def response(self, flow: Any) -> Any:
        async def later() -> None:
            self.calls.append((self.name, "response", type(flow).__name__))
        return later()


class Container:
    """An addon with children, as mitmproxy's script loader is: they may change between events."""

    def __init__(self, name: str, children: list[object]) -> None:
        self.name = name
        self.addons = children


class Odd:
    """Attributes named like hooks that are no hook: a module (skipped) and a string (mitmproxy's error)."""

    name = "odd"
    request = types.ModuleType("request")

    def __repr__(self) -> str:
        return "Odd()"  # the same in both runs' error messages
    requestheaders = "not callable"


def _events(flow: Any) -> list[hooks.Hook]:
    return [http.HttpRequestHeadersHook(flow), http.HttpRequestHook(flow), http.HttpResponseHook(flow),
            hooks.UpdateHook([flow]), http.HttpErrorHook(flow)]


async def _run(install: bool, caplog: pytest.LogCaptureFixture) -> tuple[list[Any], list[str]]:
    """Fire events on a real DumpMaster through a scenario of chain changes; (calls, errors logged)."""
    caplog.clear()
    master = dump.DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    if install:
        HookDispatch.install(master.addons)
    calls: list[tuple[str, str, object]] = []
    flow = tflow.tflow(resp=True)
    child = Recorder("child", calls)
    late_child = Recorder("late_child", calls, response="raise")
    container = Container("box", [child])
    halting = Recorder("halting", calls, error="halt")
    master.addons.add(  # type: ignore[no-untyped-call]
        Recorder("first", calls, request="raise"), Odd(), container, OnlyResponse(calls),
        halting, Recorder("after_halt", calls))

    async def fire(round_: int) -> None:
        for event in _events(flow):
            calls.append(("--", event.name, round_))
            await master.addons.trigger_event(event)

    await fire(1)
    container.addons.append(late_child)  # a child added after the plans were made
    master.addons.add(Recorder("added", calls, requestheaders="raise"))  # type: ignore[no-untyped-call]
    await fire(2)
    # The chain changed: the addons after the halting one see error now.
    master.addons.remove(halting)  # type: ignore[no-untyped-call]
    await fire(3)
    master.addons.add(Recorder("strict", calls, request="options"))  # type: ignore[no-untyped-call]
    with pytest.raises(exceptions.OptionsError):
        await master.addons.trigger_event(http.HttpRequestHook(flow))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return calls, errors


async def test_the_same_calls_in_the_same_order_as_mitmproxy(caplog: pytest.LogCaptureFixture) -> None:
    stock_calls, stock_errors = await _run(False, caplog)
    calls, errors = await _run(True, caplog)
    assert calls == stock_calls
    assert errors == stock_errors
    # The scenario does what it says: errors logged and gone past, a halt that ends the chain.
    assert "Addon error: first fails in request" in errors
    assert "Addon error: late_child fails in response" in errors
    assert any("not callable" in e for e in errors)
    rounds: list[list[tuple[str, str]]] = []
    for name, hook, _ in calls:
        if (name, hook) == ("--", "requestheaders"):
            rounds.append([])
        rounds[-1].append((name, hook))
    assert ("after_halt", "error") not in rounds[0] and ("after_halt", "error") not in rounds[1]
    assert ("after_halt", "error") in rounds[2]
    assert ("late_child", "response") not in rounds[0] and ("late_child", "response") in rounds[1]
    assert ("added", "request") in rounds[1] and ("only_response", "response") in rounds[0]


async def test_plans_only_hold_the_addons_implementing_a_hook() -> None:
    master = dump.DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    dispatch = HookDispatch.install(master.addons)
    calls: list[tuple[str, str, object]] = []
    master.addons.add(OnlyResponse(calls))  # type: ignore[no-untyped-call]
    await dispatch.trigger_event(hooks.UpdateHook([]))
    # Nobody in mitmdump's chain has update: only the script loader, whose scripts may.
    assert [type(addon).__name__ for addon, _ in dispatch._plans["update"]] == ["ScriptLoader"]
    await dispatch.trigger_event(http.HttpResponseHook(tflow.tflow(resp=True)))
    plan = [type(addon).__name__ for addon, _ in dispatch._plans["response"]]
    stock = [type(a).__name__ for a in master.addons.chain
             if hasattr(a, "addons") or callable(getattr(a, "response", None))]
    assert plan == stock and "OnlyResponse" in plan and len(plan) < len(master.addons.chain) // 3


def test_the_debug_type_checks_are_skipped_and_messages_still_work() -> None:
    """mitmproxy's per-message type check is gone once the engine is installed; messages still work."""
    code = """
from mitmproxy import http
from clickguard.proxy import engine
def bad():
    request = http.Request.make("GET", "http://example.test/")
    return http.Request("example.test", 80, b"GET", b"http", b"example.test", b"/", b"HTTP/1.1",
                        request.headers, b"", None, "not a time", None)
try:
    bad()
except TypeError:
    print("checked")
engine.skip_debug_type_checks()
bad()
made = http.Response.make(302, b"", {"Location": "http://example.test/"})
print("skipped", made.status_code, made.headers["Location"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["checked", "skipped", "302", "http://example.test/"]
