"""Items handed from a thread reach the loop in order, batched while the loop is busy, and never
after something the thread scheduled later."""

from __future__ import annotations

import asyncio
import threading

from streamd.runtime.handoff import Handoff


async def test_batches_keep_order_against_the_threads_other_calls() -> None:
    loop = asyncio.get_running_loop()
    seen: list[object] = []
    handoff: Handoff[int] = Handoff(loop, lambda items: seen.append(list(items)))
    done = asyncio.Event()

    def producer() -> None:
        for i in range(1000):
            handoff.put(i)
        loop.call_soon_threadsafe(seen.append, "end")
        loop.call_soon_threadsafe(done.set)

    thread = threading.Thread(target=producer)
    thread.start()
    await asyncio.wait_for(done.wait(), 30)
    thread.join()
    assert seen[-1] == "end", "the thread's later call comes after every item it put"
    batches = [b for b in seen[:-1] if isinstance(b, list)]
    assert [i for b in batches for i in b] == list(range(1000))
    assert len(batches) < 1000, "while the loop is busy, items share a wake-up"
