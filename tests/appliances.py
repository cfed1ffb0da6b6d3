"""Simulated appliances and ordinary servers on loopback: aiohttp servers with exact headers.

Each route answers with the status, headers (in order, repeats allowed, the
`Server` header exactly as given) and body it is told to; a body can be sent
with a Content-Length, chunked, or generated in chunks for large downloads.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

ELF_MACHINES = {"mips": 8, "arm": 40, "x86": 3, "x86_64": 62, "ppc": 20, "sh": 42, "sparc": 2, "m68k": 4}


def elf(arch: str = "mips", *, big_endian: bool = True, size: int = 4096) -> bytes:
    """An ELF executable header for arch, padded to size (what IoT bots' binaries start with)."""
    order = ">" if big_endian else "<"
    ident = b"\x7fELF" + bytes([1, 2 if big_endian else 1, 1, 0]) + bytes(8)
    header = ident + struct.pack(order + "HHIIIIIHHHHHH", 2, ELF_MACHINES[arch], 1, 0x400000, 52, 0, 0,
                                 52, 32, 1, 40, 0, 0)
    filler = bytes(range(256)) * ((size - len(header)) // 256 + 1)
    return header + filler[: size - len(header)]


@dataclass
class Route:
    """One answer: status, headers, body (or a body generated in chunks)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False  # send without Content-Length
    repeat: int = 1  # a large body: `body` sent this many times


@dataclass
class Server:
    """A running simulated server."""

    host: str
    port: int = 0
    requests: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        """http://host:port"""
        return f"http://{self.host}:{self.port}"


@contextmanager
def serve(host: str, routes: Mapping[str, Route]) -> Iterator[Server]:
    """Serve routes on host (a 127.0.0.x address) for the duration of the block."""
    server = Server(host)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner_box: list[web.AppRunner] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        server.requests.append(request.path_qs)
        route = routes.get(request.path_qs) or routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="not found", headers={"Server": "test"})
        response = web.StreamResponse(status=route.status)
        for name, value in route.headers:
            response.headers.add(name, value)
        if "Server" not in response.headers:
            response.headers["Server"] = "test"
        if route.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(route.body) * route.repeat
        await response.prepare(request)
        for _ in range(route.repeat):
            await response.write(route.body)
        await response.write_eof()
        return response

    async def start() -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        server.port = runner.addresses[0][1]
        runner_box.append(runner)
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    started.wait(30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
