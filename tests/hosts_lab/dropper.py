"""A proxy that loses answers: it forwards one HTTP request to a host, reads the host's whole
answer, keeps it (so the lab knows what the customer never heard), and resets the customer's
connection instead of passing the answer on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import attrs

from .netns import GATEWAY


@attrs.frozen
class Dropped:
    status: int
    body: bytes


async def _message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 message's head and body (the body by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head, await reader.readexactly(length)


class ReplyDropper:
    def __init__(self, target: str, port: int) -> None:
        self.target = target
        self.target_port = port
        self.dropped: list[Dropped] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{GATEWAY}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, str(GATEWAY), 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            self.target, self.target_port
        )
        try:
            head, body = await _message(reader)
            upstream_writer.write(head + body)
            await upstream_writer.drain()
            answer_head, answer_body = await asyncio.wait_for(_message(upstream_reader), 10)
            status = int(answer_head.split(b" ", 2)[1])
            self.dropped.append(Dropped(status, answer_body))
        finally:
            upstream_writer.close()
            client = writer.get_extra_info("socket")
            if client is not None:  # an RST, not a polite close
                with contextlib.suppress(OSError):
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
