"""A minimal, fast HTTP/1.1 upstream for the benchmarks: fixed body, keep-alive, asyncio."""

from __future__ import annotations

import asyncio
import sys


def webmail_page(links: int = 200) -> bytes:
    """A ~14 KB HTML page with `links` outbound links, like a webmail message view."""
    rows = "".join(f'<li><a href="https://news{i % 37}.example.com/a/{i}?utm=mail">Story {i}</a></li>\n'
                   for i in range(links))
    head = "<!doctype html><html><head><title>Inbox</title></head><body><ul>\n"
    return f"{head}{rows}</ul></body></html>\n".encode()


async def main(host: str, port: int, size: int, kind: str = "text") -> None:
    """Serve `size` bytes (text or binary) or the webmail page to every request until killed."""
    if kind == "html":
        body, content_type = webmail_page(), b"text/html; charset=utf-8"
    elif kind == "binary":
        body, content_type = (bytes(range(256)) * (size // 256 + 1))[:size], b"application/octet-stream"
    else:
        body, content_type = (b"x" * 63 + b"\n") * (size // 64) + b"x" * (size % 64), b"text/plain"
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nContent-Length: "
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
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1024,
                     sys.argv[4] if len(sys.argv) > 4 else "text"))
