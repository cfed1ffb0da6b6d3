"""How clickguard runs mitmproxy: the same proxy, without per-request work that does nothing here.

`install` applies both changes to a master before clickguard's addon is added.

**Hook dispatch.** mitmproxy's `AddonManager.trigger_event` visits every addon
of the chain for every event: mitmdump's chain holds 36, and a flow fires about
eight events (its four lifecycle hooks, each followed by ``update``), so some
290 visits a request, each building a context manager, a coroutine and two
generators to find that most addons have no such hook. Profiled under load that
was about a third of the proxy's Python time, in mitmdump as in clickguard.
`HookDispatch` makes the same calls in the same order. Per hook name it keeps
the chain's plan once: each addon without children that implements the hook,
with its bound method, and each addon with children (``addons``, as mitmproxy's
script loader has) visited mitmproxy's own way each time, as its children come
and go. Whether an addon has children is read when a plan is made (mitmproxy's
script loader sets ``addons`` in its constructor). The plans are dropped whenever
the chain changes (`add`, `remove`, `clear`). An addon's error is logged by
mitmproxy's own `safecall`, and the chain goes on; `AddonHalt` ends it;
`OptionsError` propagates, as in mitmproxy.
A hook's arguments are read once per event, not once per addon.

**Debug type checks.** mitmproxy checks the type of every field of each request
and response it constructs, only while Python runs with ``__debug__`` (not
under ``-O``): a help for addon authors, 6% of the proxy's Python time under
load. What mitmproxy parses from the wire has those types by construction, and
clickguard's own responses are type-checked (mypy), so the check is skipped.
Running the whole proxy under ``-O`` instead would also drop every library's
assertions, which nobody here has read for what they guard.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

from mitmproxy import exceptions, hooks, http, master
from mitmproxy.addonmanager import AddonManager, safecall


def install(proxy: master.Master) -> None:
    """Apply both changes (see the module) to a master, before clickguard's addon is added."""
    HookDispatch.install(proxy.addons)
    skip_debug_type_checks()


def skip_debug_type_checks() -> None:
    """No type check of each request and response mitmproxy constructs (as under ``python -O``)."""
    if "__post_init__" in vars(http.MessageData):
        http.MessageData.__post_init__ = _no_check  # type: ignore[attr-defined,method-assign]


def _no_check(self: object) -> None:
    """The dataclasses' generated __init__ still calls __post_init__: it does nothing."""


type _Plan = tuple[tuple[Any, Any], ...]  # (addon, its hook method, or None: visit it mitmproxy's way)


class HookDispatch(AddonManager):
    """An AddonManager whose `trigger_event` skips the addons without the hook (see the module)."""

    _plans: dict[str, _Plan]

    @classmethod
    def install(cls, manager: AddonManager) -> HookDispatch:
        """Turn a master's AddonManager into this one in place (Master.__init__ makes the plain one)."""
        manager.__class__ = cls
        assert isinstance(manager, HookDispatch)
        manager._plans = {}
        return manager

    def add(self, *addons: Any) -> None:
        try:
            super().add(*addons)
        finally:
            self._plans = {}

    def remove(self, addon: Any) -> None:
        try:
            super().remove(addon)
        finally:
            self._plans = {}

    def clear(self) -> None:
        try:
            super().clear()
        finally:
            self._plans = {}

    def _plan(self, name: str) -> _Plan:
        """The chain's calls for one hook name."""
        plan: list[tuple[Any, Any]] = []
        for addon in self.chain:
            if hasattr(addon, "addons"):
                plan.append((addon, None))  # its children may change: looked up at each event
                continue
            func = getattr(addon, name, None)
            if func is None or isinstance(func, types.ModuleType):
                continue  # mitmproxy skips these too (a module imported under a hook's name)
            plan.append((addon, func if callable(func) else None))  # not callable: mitmproxy's error
        self._plans[name] = out = tuple(plan)
        return out

    async def trigger_event(self, event: hooks.Hook) -> None:
        """Call the hook on every addon implementing it, in chain order (mitmproxy's trigger_event)."""
        plan = self._plans.get(event.name)
        if plan is None:
            plan = self._plan(event.name)
        args: list[Any] | None = None
        for addon, func in plan:
            if func is None:
                try:
                    with safecall():
                        await self.invoke_addon(addon, event)
                except exceptions.AddonHalt:
                    return
                continue
            if args is None:
                args = event.args()
            try:
                result = func(*args)
                if result is not None and inspect.isawaitable(result):
                    await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as error:
                _log_addon_error(error)


def _log_addon_error(error: Exception) -> None:
    """Log an addon's error exactly as mitmproxy's safecall does (it catches what is raised in it)."""
    with safecall():
        raise error
