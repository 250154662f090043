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


async def test_items_put_without_waking_wait_for_the_next_wake_up_or_take() -> None:
    loop = asyncio.get_running_loop()
    seen: list[list[int]] = []
    delivered = asyncio.Event()

    def deliver(items: list[int]) -> None:
        seen.append(list(items))
        delivered.set()

    handoff: Handoff[int] = Handoff(loop, deliver)
    await asyncio.to_thread(lambda: [handoff.put(i, wake=False) for i in range(3)])
    for _ in range(20):
        await asyncio.sleep(0)
    assert seen == [], "nothing woke the loop"
    await asyncio.to_thread(handoff.put, 3)
    await asyncio.wait_for(delivered.wait(), 30)
    assert seen == [[0, 1, 2, 3]]
    await asyncio.to_thread(handoff.put, 4, False)
    handoff.take()
    assert seen == [[0, 1, 2, 3], [4]]
    await asyncio.to_thread(handoff.put, 5)
    handoff.take()  # the loop takes it before the wake-up it scheduled runs: that one delivers nothing
    for _ in range(20):
        await asyncio.sleep(0)
    assert seen == [[0, 1, 2, 3], [4], [5]]
