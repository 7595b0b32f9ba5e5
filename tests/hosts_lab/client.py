"""A customer's browser: one keep-alive HTTP/1.1 connection per address, as a person's
browser keeps one; a small client on asyncio streams, because hundreds of customers on one
pooled httpx client cost the lab more CPU than the hosts spend answering them.

A connection the other side closed while idle is noticed before it is used again, and a new
one made; one that closes after a request was sent, before any answer, is `NoAnswer` (the
customer decides whether to send it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

import attrs

CONNECT_SECONDS = 5.0


class NoAnswer(Exception):
    """The request got no answer: the message says what happened."""


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """The answer, and whether the connection may carry another request."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        raise NoAnswer("closed without an answer" if not e.partial else "answer cut") from None
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            for _ in range(100_000):  # chunks
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    break
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:  # the body ends with the connection
            return Answer(int(status), headers, await reader.read()), False
    except asyncio.IncompleteReadError:
        raise NoAnswer("answer cut") from None
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return Answer(int(status), headers, body), keep


class Browser:
    """One customer's connections, by address."""

    def __init__(self) -> None:
        self._connections: dict[str, _Connection] = {}
        self.last_port: int | None = None  # the local port of the last request's connection

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: Any = None
    ) -> Answer:
        """Raises `NoAnswer` (or `TimeoutError` from the caller's timeout)."""
        parts = urlsplit(url)
        address = parts.netloc
        connection = self._connections.pop(address, None)
        if connection is not None and not connection.usable:
            connection.close()
            connection = None
        self.last_port = None
        if connection is None:
            connection = await self._connect(parts.hostname or "", parts.port or 80)
        with contextlib.suppress(TypeError, IndexError):
            self.last_port = int(connection.writer.get_extra_info("sockname")[1])
        payload = b"" if body is None else json.dumps(body).encode()
        head = [
            f"{method} {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1",
            f"Host: {address}",
            f"Content-Length: {len(payload)}",
        ]
        if body is not None:
            head.append("Content-Type: application/json")
        head += [f"{name}: {value}" for name, value in headers.items()]
        try:
            connection.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            await connection.writer.drain()
            answer, keep = await _read_answer(connection.reader)
        except (OSError, NoAnswer) as e:
            connection.close()
            raise NoAnswer(str(e) or type(e).__name__) from None
        except BaseException:  # a timeout or a cancellation mid-answer: the connection is lost
            connection.close()
            raise
        if keep:
            self._connections[address] = connection
        else:
            connection.close()
        return answer

    async def _connect(self, host: str, port: int) -> _Connection:
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as e:
            raise NoAnswer(f"cannot connect: {e or type(e).__name__}") from None
        return _Connection(reader, writer)

    def close(self) -> None:
        for connection in self._connections.values():
            with contextlib.suppress(OSError):
                connection.close()
        self._connections.clear()
