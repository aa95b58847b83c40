"""A loopback TCP proxy that adds a fixed delay to every round trip, for latency benchmarks.

    python bench/delay_proxy.py --upstream 4566 --delay-ms 20    # prints {"port": N}, runs until killed

Each byte is held `delay/2` on its way up and `delay/2` on its way back, like a longer wire:
an HTTP request and its answer take `delay` longer, connections and pipelining are untouched,
and throughput is not capped (chunks are queued with their due time, not sent one at a time).
It runs as its own process so its CPU does not land on the event loop being measured.

A few lines of asyncio rather than a library: toxiproxy and the like are Go binaries outside
the package registries this project uses, and a stream delay is all that is needed here.
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

HOST = "127.0.0.1"
CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy reader to writer, each chunk no earlier than `delay_s` after it arrived."""
    due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            at, data = await due.get()
            if not data:
                break
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(CHUNK):
            due.put_nowait((time.monotonic() + delay_s, data))
    except ConnectionError:
        pass
    due.put_nowait((0.0, b""))
    with contextlib.suppress(ConnectionError):
        await sender


class DelayProxy:
    def __init__(self, upstream_port: int, delay_s: float, upstream_host: str = HOST) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._half = delay_s / 2
        self._server: asyncio.Server | None = None
        self.connections = 0

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, HOST, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(_pipe(client_r, up_w, self._half), _pipe(up_r, client_w, self._half))
        finally:
            for w in (up_w, client_w):
                w.close()


async def _main(upstream: int, delay_ms: float) -> None:
    proxy = DelayProxy(upstream, delay_ms / 1000)
    port = await proxy.start()
    print(json.dumps({"port": port, "delay_ms": delay_ms}), flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--upstream", type=int, required=True, help="port on 127.0.0.1 to forward to")
    parser.add_argument("--delay-ms", type=float, required=True, help="added to every round trip")
    args = parser.parse_args()
    try:
        asyncio.run(_main(args.upstream, args.delay_ms))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
