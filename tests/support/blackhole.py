"""A TCP proxy in front of a real server that can be told to black-hole, the way a host that vanished behind a
Service (or a network partition) looks to both ends: no RST, no FIN, nothing at all.

Invariants a test can rely on:

* **forwarding** - while healthy, bytes go both ways unchanged and EOF is passed on;
* **black hole** - `blackhole()` (or the first client packet containing a marker armed with `blackhole_on`) stalls
  every open connection: the sockets stay open, whatever arrives is read and dropped, and nothing - data, EOF or
  reset - reaches the other side; the marker's own packet is the first one dropped, so "black-hole at the first
  INSERT" is exact;
* **new connections in a black hole** are accepted (the listener is here, not at the server) and never connected
  upstream: a client sees a TCP connection and no greeting, like a SYN-ACK from a load balancer whose backend died;
* **healing** - `heal()` forwards new connections again; connections stalled before stay stalled for good (their
  byte streams have holes), or are reset on both sides with `heal(reset_stalled=True)` (the host came back).

Counters (`accepted`, `client_open`, `stalled`) let tests see whether the client really let go of a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator


class _Pipe:
    """One client connection and, unless it was born in a black hole, its upstream connection."""

    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.client_reader, self.client_writer = client
        self.server_reader: asyncio.StreamReader | None = None
        self.server_writer: asyncio.StreamWriter | None = None
        self.stalled = False
        self.client_closed = False
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for writer in (self.client_writer, self.server_writer):
            if writer is not None:
                _abort(writer)
        for task in self.tasks:
            task.cancel()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class BlackholeProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[_Pipe] = set()
        self._holed = False
        self._marker: bytes | None = None
        self.holed_at: float | None = None  # time.monotonic() when the black hole began
        self.accepted = 0

    # ---- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pipe in list(self._pipes):
            pipe.reset()
        await asyncio.gather(*(t for p in self._pipes for t in p.tasks), return_exceptions=True)
        self._pipes.clear()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, target_host: str, target_port: int) -> AsyncIterator[BlackholeProxy]:
        proxy = cls(target_host, target_port)
        await proxy.start()
        try:
            yield proxy
        finally:
            await proxy.close()

    # ---- faults -----------------------------------------------------------------------------------------------
    def blackhole(self) -> None:
        """From now on forward nothing, on open and new connections."""
        self._holed = True
        self._marker = None
        if self.holed_at is None:
            self.holed_at = time.monotonic()
        for pipe in self._pipes:
            pipe.stalled = True

    def blackhole_on(self, marker: bytes) -> None:
        """Black-hole as soon as a client sends a packet containing `marker` (that packet is dropped)."""
        self._marker = marker

    def heal(self, *, reset_stalled: bool = False) -> None:
        """Forward new connections again; stalled ones stay stalled, or are reset on both sides."""
        self._holed = False
        self._marker = None
        self.holed_at = None
        if reset_stalled:
            for pipe in [p for p in self._pipes if p.stalled]:
                pipe.reset()
                self._pipes.discard(pipe)

    @property
    def is_holed(self) -> bool:
        return self._holed

    @property
    def client_open(self) -> int:
        """Client connections the client has not closed yet (stalled or not)."""
        return sum(1 for p in self._pipes if not p.client_closed)

    @property
    def stalled(self) -> int:
        """Stalled connections whose client has not closed them yet."""
        return sum(1 for p in self._pipes if p.stalled and not p.client_closed)

    # ---- plumbing ---------------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        pipe = _Pipe((reader, writer))
        self._pipes.add(pipe)
        if self._holed:
            pipe.stalled = True
        else:
            try:
                pipe.server_reader, pipe.server_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _abort(writer)
                self._pipes.discard(pipe)
                return
            pipe.tasks.append(asyncio.create_task(self._pump(pipe, upstream=False)))
        pipe.tasks.append(asyncio.create_task(self._pump(pipe, upstream=True)))

    async def _pump(self, pipe: _Pipe, *, upstream: bool) -> None:
        """Copy one direction; `upstream` is client → server."""
        source = pipe.client_reader if upstream else pipe.server_reader
        target = pipe.server_writer if upstream else pipe.client_writer
        assert source is not None
        try:
            while True:
                try:
                    data = await source.read(65536)
                except OSError:
                    data = b""
                if upstream and self._marker is not None and self._marker in data:
                    self.blackhole()
                if not data:
                    if upstream:
                        pipe.client_closed = True
                    if not pipe.stalled and target is not None:
                        with contextlib.suppress(OSError):
                            target.close()
                    return
                if pipe.stalled or target is None:
                    continue  # dropped: a black hole says nothing, not even "closed"
                target.write(data)
                try:
                    await target.drain()
                except OSError:
                    return
        finally:
            if not pipe.stalled:
                self._pipes.discard(pipe)
