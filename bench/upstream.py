"""A minimal, fast HTTP/1.1 upstream for the benchmarks: fixed body, keep-alive, asyncio."""

from __future__ import annotations

import asyncio
import sys


async def main(host: str, port: int, size: int) -> None:
    """Serve `size` bytes to every request until killed."""
    body = (b"x" * 63 + b"\n") * (size // 64) + b"x" * (size % 64)
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                if not request:
                    break
                writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1024))
