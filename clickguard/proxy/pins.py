"""The addresses judged for a name, pinned for the connection the proxy opens to it (see `Pins`)."""

from __future__ import annotations

import asyncio
import socket
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from mitmproxy import connection

type AddressInfo = tuple[int, int, int, str, tuple[Any, ...]]
type _Release = weakref.finalize[[str], connection.Server]  # drops one connection's hold on a pin


def _address_info(address: str, port: int | str | None, type_: int, proto: int) -> AddressInfo:
    """One getaddrinfo entry for an address already resolved."""
    number = int(port or 0)
    if ":" in address:
        return (socket.AF_INET6, type_ or socket.SOCK_STREAM, proto, "", (address, number, 0, 0))
    return (socket.AF_INET, type_ or socket.SOCK_STREAM, proto, "", (address, number))


class Pins:
    """The addresses clickguard checked for a name it is about to connect to; the loop's lookups answer them.

    mitmproxy connects by name (``asyncio.open_connection(host, port)``), so it would look
    the name up again, after the check: a DNS answer that changes in between (rebinding, a
    short TTL, a second resolver) would send the request to an address nobody judged.
    While a connection to a name is being opened, `getaddrinfo` answers that name with the
    checked addresses (all of them, in order, so the fallback between them still works);
    other lookups go to the loop's own. Several connections to one name share its pin.
    """

    def __init__(self) -> None:
        self._pinned: dict[str, tuple[tuple[str, ...], int]] = {}  # name: (addresses, connections opening)
        self._by_server: weakref.WeakKeyDictionary[connection.Server, _Release] = weakref.WeakKeyDictionary()
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer pinned names in this loop's lookups (and connects, on a loop that resolves in C)."""
        original: Callable[..., Coroutine[Any, Any, list[Any]]] = loop.getaddrinfo

        async def getaddrinfo(host: object, port: int | str | None, *, family: int = 0, type: int = 0,
                              proto: int = 0, flags: int = 0) -> list[Any]:
            pinned = self._pinned.get(host) if isinstance(host, str) else None
            if pinned is None:
                return await original(host, port, family=family, type=type, proto=proto, flags=flags)
            infos = [_address_info(a, port, type, proto) for a in pinned[0]]
            return [i for i in infos if family in (0, i[0])]

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign,assignment]
        if not isinstance(loop, asyncio.BaseEventLoop):
            # uvloop (clickguard run --event-loop uvloop) resolves inside create_connection, in C,
            # without its getaddrinfo method: the connect itself goes to the pinned addresses there.
            loop.create_connection = self._connecting(loop.create_connection)  # type: ignore[method-assign]
        self._loop = loop

    def _connecting(self, connect: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        """A loop's create_connection that connects a pinned name to its addresses, in order."""

        async def create_connection(protocol_factory: Callable[[], asyncio.BaseProtocol],
                                    host: str | None = None, port: int | None = None, **kwargs: Any) -> Any:
            pinned = self._pinned.get(host) if isinstance(host, str) else None
            if pinned is None:
                return await connect(protocol_factory, host, port, **kwargs)
            if kwargs.get("ssl") and kwargs.get("server_hostname") is None:
                kwargs["server_hostname"] = host  # the name, as a connect by name would send
            family = kwargs.pop("family", 0)
            addresses = [a for a in pinned[0] if family in (0, _address_info(a, port, 0, 0)[0])]
            errors: list[OSError] = []
            for address in addresses:  # the fallback between them, as asyncio's own connect does
                try:
                    return await connect(protocol_factory, address, port, **kwargs)
                except OSError as e:
                    errors.append(e)
            if len(errors) == 1:
                raise errors[0]
            raise OSError(f"Multiple exceptions: {', '.join(map(str, errors))}" if errors
                          else f"no pinned address of {host} in this address family")

        return create_connection

    def uninstall(self) -> None:
        """The loop's own lookups again."""
        if self._loop is not None:
            vars(self._loop).pop("getaddrinfo", None)
            vars(self._loop).pop("create_connection", None)
            self._loop = None

    def pin(self, server: connection.Server, name: str, addresses: tuple[str, ...]) -> None:
        """Connecting to server (by name) may only reach these addresses, the ones judged."""
        self.release(server)
        _, opening = self._pinned.get(name, ((), 0))
        self._pinned[name] = (addresses, opening + 1)
        # Released when the connection opens or fails, or at the latest when the server object
        # goes (a connect cancelled while it waited runs neither hook): no pin outlives its connect.
        self._by_server[server] = weakref.finalize(server, self._drop, name)

    def release(self, server: connection.Server) -> None:
        """The server's connection is open (or failed): its name's pin is no longer its own to keep."""
        drop = self._by_server.pop(server, None)
        if drop is not None:
            drop()

    def _drop(self, name: str) -> None:
        """One connection fewer is opening to name."""
        addresses, opening = self._pinned[name]
        if opening > 1:
            self._pinned[name] = (addresses, opening - 1)
        else:
            del self._pinned[name]
