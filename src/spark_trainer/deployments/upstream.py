"""A small HTTP/1.1 client for the proxy's one job: requests to replicas on loopback.

Measured on the 2-core development machine, an httpx ``AsyncClient`` round trip to a
replica costs about 1.8 ms of CPU, a plain asyncio stream about 0.35 ms; at that price
httpx alone would be most of the proxy's latency budget. The replicas are HTTP/1.1
servers of known kinds (uvicorn, vLLM's, TGI's, Triton's), so this client speaks just
what they answer with: ``Content-Length``, ``chunked`` or read-to-close bodies, keep-alive
connections kept in a small pool per replica. Bodies are handed on chunk by chunk as
they arrive, which is what streams server-sent events through.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK_BYTES = 64 * 1024
# Bodies up to this size, of announced length, are read with the head and relayed whole
# (UpstreamResponse.content).
SMALL_BODY_BYTES = 64 * 1024
IDLE_PER_UPSTREAM = 64


class UpstreamGone(Exception):
    """The replica refused the connection or closed it before any response: the request
    did nothing there and may be sent to another replica."""


class UpstreamFailed(Exception):
    """The replica broke off or sent something that is not HTTP after answering began."""


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


@dataclass(eq=False)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    _connection: _Connection
    _pool: UpstreamPool
    _key: tuple[str, int]
    _length: int | None
    _chunked: bool
    _reusable: bool
    _done: bool = field(default=False)
    # The whole body of a small response (read with the head), else None: read it with
    # chunks().
    content: bytes | None = None

    async def chunks(self, read_timeout: float) -> AsyncIterator[bytes]:
        """The body, chunk by chunk; the connection goes back to the pool at its end."""
        reader = self._connection.reader
        try:
            # Each read has the timeout (never a yield: the consumer's pace is its own).
            if self._chunked:
                async for chunk in _dechunk(reader, read_timeout):
                    yield chunk
            elif self._length is not None:
                remaining = self._length
                while remaining:
                    async with asyncio.timeout(read_timeout):
                        chunk = await reader.read(min(READ_CHUNK_BYTES, remaining))
                    if not chunk:
                        raise UpstreamFailed("the replica closed the connection mid-body")
                    remaining -= len(chunk)
                    yield chunk
            else:
                while True:
                    async with asyncio.timeout(read_timeout):
                        chunk = await reader.read(READ_CHUNK_BYTES)
                    if not chunk:
                        break
                    yield chunk
            self._done = True
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            raise UpstreamFailed(f"the replica broke off its response ({exc!r})") from None
        finally:
            self.release()

    async def _read_small(self) -> None:
        assert self._length is not None
        try:
            self.content = await self._connection.reader.readexactly(self._length)
            self._done = True
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamFailed(f"the replica broke off its response ({exc!r})") from None
        finally:
            self.release()

    @property
    def small(self) -> bool:
        """A body of announced length that fits in one read (not a stream)."""
        return not self._chunked and self._length is not None and self._length <= SMALL_BODY_BYTES

    def release(self) -> None:
        if self._done and self._reusable:
            self._pool.put_back(self._key, self._connection)
        else:
            self._connection.close()
        self._reusable = False  # release is idempotent


class UpstreamPool:
    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}

    def put_back(self, key: tuple[str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, deque())
        if len(idle) < IDLE_PER_UPSTREAM and not connection.reader.at_eof():
            idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: bytes,
        header_lines: bytes,
        body: bytes,
        read_timeout: float,
    ) -> UpstreamResponse:
        """``header_lines``: the request's header fields as sent, each ending in CRLF (Host
        and Content-Length are written here)."""
        key = (host, port)
        request = b"%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s" % (
            method.encode("ascii"),
            target,
            host.encode("ascii"),
            port,
            header_lines,
        )
        if body or method == "POST":
            request += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        else:
            request += b"\r\n"
        # A pooled connection the replica has since closed fails on first use; one
        # fresh connection is tried before the replica counts as gone.
        while True:
            connection, pooled = await self._connection(key)
            try:
                async with asyncio.timeout(read_timeout):
                    try:
                        connection.writer.write(request)
                        head = await connection.reader.readuntil(b"\r\n\r\n")
                    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                        connection.close()
                        if pooled:
                            continue
                        raise UpstreamGone(f"the replica closed the connection ({exc!r})") from None
                    response = self._response(key, connection, head, method)
                    if response.small:
                        # Its body follows the head at once: read here, under the same
                        # timeout, rather than in a second step of the caller's.
                        await response._read_small()
            except TimeoutError:
                connection.close()
                raise UpstreamFailed(f"no response within {read_timeout:g} s") from None
            return response

    async def _connection(self, key: tuple[str, int]) -> tuple[_Connection, bool]:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if not connection.reader.at_eof():
                return connection, True
            connection.close()
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(key[0], key[1], limit=MAX_HEAD_BYTES)
        except (OSError, TimeoutError) as exc:
            raise UpstreamGone(f"cannot connect to the replica ({exc!r})") from None
        return _Connection(reader, writer), False

    def _response(
        self, key: tuple[str, int], connection: _Connection, head: bytes, method: str
    ) -> UpstreamResponse:
        # Headers stay bytes, names lower-cased: ASGI's form, so the proxy relays them as
        # they are.
        try:
            status_line, *header_lines = head[:-4].split(b"\r\n")
            version, status_text = status_line.split(b" ", 2)[:2]
            status = int(status_text)
            headers = [
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(b":") for line in header_lines)
            ]
        except ValueError:
            connection.close()
            raise UpstreamFailed("the replica's response is not HTTP") from None
        fields = dict(headers)
        chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
        try:
            length = int(fields[b"content-length"]) if b"content-length" in fields else None
        except ValueError:
            connection.close()
            raise UpstreamFailed("the replica's Content-Length is not a number") from None
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            length, chunked = 0, False
        keep_alive = version == b"HTTP/1.1" and fields.get(b"connection", b"").lower() != b"close"
        return UpstreamResponse(
            status=status,
            headers=headers,
            _connection=connection,
            _pool=self,
            _key=key,
            _length=length,
            _chunked=chunked,
            _reusable=keep_alive and (chunked or length is not None),
        )


async def _dechunk(reader: asyncio.StreamReader, read_timeout: float) -> AsyncIterator[bytes]:
    while True:
        async with asyncio.timeout(read_timeout):
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # Trailers (if any) end with an empty line.
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return
            chunk = await reader.readexactly(size)
            await reader.readexactly(2)
        yield chunk
