"""A TCP proxy on loopback that the tests control: it forwards, cuts or stalls.

Put it between the service and PostgreSQL or Redis to make real network faults:
``cut()`` closes every connection and refuses new ones (a server gone, a network
down), ``stall()`` keeps connections open but passes no bytes either way (a server
that hangs, a dropped route), ``restore()`` forwards again. ``wait_for_connections()``
waits for the clients to try to connect, as they do in an outage. It runs in a thread
of its own, with its own event loop, so the service under test may be in this process
(an app in the test's event loop) or another one (a served app, a worker).
"""

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, Literal

Mode = Literal["forward", "cut", "stall"]
CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.mode: Mode = "forward"
        self.connections = 0  # Accepted since the start, for assertions.
        self._accepted = threading.Condition()  # Notified at each connection.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._resumed = asyncio.Event()

    def start(self) -> "TcpProxy":
        self._thread.start()
        self._call(self._start()).result(timeout=5)
        return self

    def close(self) -> None:
        self._call(self._close()).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def cut(self) -> None:
        """Close every open connection, and close new ones at once."""
        self._call(self._set_mode("cut")).result(timeout=5)

    def stall(self) -> None:
        """Keep connections open but forward nothing, until ``restore``."""
        self._call(self._set_mode("stall")).result(timeout=5)

    def restore(self) -> None:
        """Forward again; stalled connections pass the bytes they held back."""
        self._call(self._set_mode("forward")).result(timeout=5)

    def wait_for_connections(self, count: int, timeout: float) -> None:
        """Until ``count`` connections have come since the start; TimeoutError after
        ``timeout`` seconds."""
        with self._accepted:
            if not self._accepted.wait_for(lambda: self.connections >= count, timeout):
                raise TimeoutError(f"{self.connections} connections, not {count}")

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> "Future[None]":
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _start(self) -> None:
        self._resumed.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        await self._set_mode("cut")
        if self._server is not None:
            self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await asyncio.sleep(0.01)  # Let the aborted transports report their loss.

    async def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "forward":
            self._resumed.set()
            return
        self._resumed.clear()
        if mode == "cut":
            self._drop_all()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        with self._accepted:
            self.connections += 1
            self._accepted.notify_all()
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        if self.mode == "cut":
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        await asyncio.gather(
            self._pipe(client_reader, server_writer),
            self._pipe(server_reader, client_writer),
        )
        for writer in (client_writer, server_writer):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                await self._resumed.wait()  # A stall holds the bytes here.
                if self.mode == "cut":
                    return
                writer.write(data)
                await writer.drain()
        # One side closed: close the other, as a real connection would.
        writer.transport.abort()


@contextlib.contextmanager
def tcp_proxy(target_host: str, target_port: int) -> Iterator[TcpProxy]:
    """A started proxy to the target, closed on exit."""
    proxy = TcpProxy(target_host, target_port).start()
    try:
        yield proxy
    finally:
        proxy.close()
