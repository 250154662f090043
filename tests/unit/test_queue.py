"""The frame queue's drop policies and round-robin fairness."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from streamd.queue import FrameQueue, QueueClosed
from streamd.types import Frame

PIXEL = np.zeros((1, 1, 1, 3), dtype=np.uint8)


def frame(source: str, seq: int) -> Frame:
    return Frame(source, seq, 0.0, 0.0, 1, 1, PIXEL)


async def drain(queue: FrameQueue) -> list[tuple[str, int]]:
    queue.close()
    got = []
    while True:
        try:
            f = await queue.get()
        except QueueClosed:
            return got
        got.append((f.source, f.seq))


async def test_oldest_policy_keeps_the_newest_frames_and_counts_drops() -> None:
    drops: list[tuple[str, str]] = []
    queue = FrameQueue(3, lambda s, r: drops.append((s, r)))
    for i in range(5):
        queue.put_nowait(frame("cam", i), "oldest")
    assert len(queue) == 3
    assert await drain(queue) == [("cam", 2), ("cam", 3), ("cam", 4)]
    assert drops == [("cam", "queue_full_oldest")] * 2


async def test_newest_policy_keeps_the_first_frames() -> None:
    drops: list[tuple[str, str]] = []
    queue = FrameQueue(2, lambda s, r: drops.append((s, r)))
    for i in range(4):
        queue.put_nowait(frame("cam", i), "newest")
    assert await drain(queue) == [("cam", 0), ("cam", 1)]
    assert drops == [("cam", "queue_full_newest")] * 2


async def test_block_policy_waits_for_room_and_loses_nothing() -> None:
    """The reader's own path: a thread takes a place (a semaphore the queue gives back each time
    one of its frames leaves) before each frame, so it waits instead of dropping."""
    queue = FrameQueue(2)
    loop = asyncio.get_running_loop()
    room = threading.Semaphore(queue.size)
    queue.on_taken("file", room.release)
    deepest = 0

    def reader() -> None:
        for i in range(10):
            room.acquire()
            loop.call_soon_threadsafe(queue.put_nowait, frame("file", i), "block")
        loop.call_soon_threadsafe(queue.close)

    thread = threading.Thread(target=reader)
    thread.start()
    got = []
    while True:
        deepest = max(deepest, len(queue))
        try:
            got.append((await queue.get()).seq)
        except QueueClosed:
            break
    thread.join()
    assert got == list(range(10))
    assert deepest <= 2  # the reader waited for room; nothing was dropped


async def test_round_robin_a_flooding_source_cannot_starve_a_quiet_one() -> None:
    queue = FrameQueue(100)
    for i in range(50):
        queue.put_nowait(frame("busy", i))
    for i in range(3):
        queue.put_nowait(frame("quiet", i))
    first_six = [(await queue.get()).source for _ in range(6)]
    assert first_six.count("quiet") == 3


async def test_get_waits_then_wakes_and_close_ends_it() -> None:
    queue = FrameQueue(4)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    queue.put_nowait(frame("cam", 7))
    assert (await asyncio.wait_for(getter, 1)).seq == 7
    queue.close()
    with pytest.raises(QueueClosed):
        await queue.get()


def sized(source: str, seq: int, nbytes: int) -> Frame:
    f = frame(source, seq)
    f.nbytes = nbytes
    return f


async def test_memory_bound_evicts_from_the_source_holding_the_most_and_spares_lossless_ones() -> None:
    drops: list[tuple[str, str]] = []
    queue = FrameQueue(100, lambda s, r: drops.append((s, r)), max_bytes=10_000)
    for i in range(6):
        queue.put_nowait(sized("busy", i, 1_000), "oldest")
    for i in range(3):
        queue.put_nowait(sized("files", i, 1_000), "block")
    queue.put_nowait(sized("quiet", 0, 1_000), "oldest")
    assert queue.bytes == 10_000 and not drops
    # Two more frames: 'busy' holds the most, so its oldest frames go, never the 'block' source's.
    queue.put_nowait(sized("quiet", 1, 1_000), "oldest")
    queue.put_nowait(sized("files", 3, 1_000), "block")
    assert drops == [("busy", "queue_bytes"), ("busy", "queue_bytes")]
    assert queue.bytes == 10_000
    got = await drain(queue)
    assert [seq for source, seq in got if source == "busy"] == [2, 3, 4, 5]
    assert [seq for source, seq in got if source == "files"] == [0, 1, 2, 3]
    assert queue.bytes == 0


async def test_memory_bound_with_newest_drops_the_arrival() -> None:
    drops: list[tuple[str, str]] = []
    queue = FrameQueue(100, lambda s, r: drops.append((s, r)), max_bytes=2_000)
    for i in range(3):
        queue.put_nowait(sized("cam", i, 1_000), "newest")
    assert drops == [("cam", "queue_bytes")]
    assert await drain(queue) == [("cam", 0), ("cam", 1)]
