"""Network faults for tests and chaos runs: a TCP proxy in front of an endpoint that can pass
traffic through, delay it, or swallow it (a black hole: connections accepted, never answered).

It runs in its own thread with its own event loop, so a synchronous test or harness can
switch its mode at any moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass

from .infra import free_port

PASS, SLOW, BLACK_HOLE = "pass", "slow", "black_hole"


@dataclass
class FaultyEndpoint:
    """``url`` forwards to ``target`` (``host:port``) according to ``mode``."""

    target_host: str
    target_port: int
    mode: str = PASS
    delay: float = 2.0
    """Seconds added before each chunk of a request is forwarded, in ``slow`` mode."""
    port: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"faulty-endpoint-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == BLACK_HOLE:
            # Read and drop everything: the client's request goes out and no answer ever comes.
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, upstream_writer, slow=True), self._pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, slow: bool = False) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.mode == BLACK_HOLE:
                    continue
                if slow and self.mode == SLOW:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()
