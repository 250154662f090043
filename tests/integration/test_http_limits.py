"""The liveness probe answers while slow clients hold the HTTP server (issue #32: 200 clients
sending one byte a second made 112 of 120 /healthz probes fail). The slow-client driver is
bounded in count and time and talks to the daemon on loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.conftest import Launch
from tests.integration.test_observability import wait_ready

SLOW_CLIENTS = 200
SECONDS = 8.0


async def slow_client(port: int, until: float) -> int:
    """Connect and trickle a request one byte a second until ``until``; returns the times it
    had to reconnect (the server closed it)."""
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 64
    reconnects = 0
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            reconnects += 1
            await asyncio.sleep(0.5)
            continue
        try:
            for byte in request:
                if time.monotonic() >= until or reader.at_eof():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        reconnects += 1
    return reconnects


async def probe(port: int) -> tuple[int, float]:
    """/healthz as a kubelet asks it: a 2 s budget. (status or 0, seconds)"""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 2.0 - (time.monotonic() - started))
        writer.close()
        return int(head.split()[1]), time.monotonic() - started
    except (OSError, TimeoutError, IndexError, ValueError):
        return 0, time.monotonic() - started


async def test_healthz_answers_while_200_clients_trickle_their_requests(launch: Launch) -> None:
    daemon = await launch(http=True)
    try:
        await wait_ready(launch.http_port, 200)
        until = time.monotonic() + SECONDS
        clients = [asyncio.create_task(slow_client(launch.http_port, until)) for _ in range(SLOW_CLIENTS)]
        await asyncio.sleep(1.5)  # every slow client holds a connection by now
        results = []
        while time.monotonic() < until - 1.0:
            results.append(await probe(launch.http_port))
            await asyncio.sleep(0.1)
        await asyncio.gather(*clients)
        failed = [r for r in results if r[0] != 200]
        assert len(results) >= 20 and not failed, f"{len(failed)} of {len(results)} probes failed: {failed[:5]}"
        assert max(seconds for _, seconds in results) < 1.0
        print(f"probes {len(results)}, failed {len(failed)}, slowest {max(s for _, s in results) * 1000:.1f} ms")
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0
