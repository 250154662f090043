"""A lossless reader that finds its share of the queue full waits for a batch of places, not one."""

from __future__ import annotations

import threading

from streamd.runtime.room import Room


def _taker(room: Room, results: list[bool]) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(room.take(timeout=30.0)), daemon=True)
    thread.start()
    return thread


def test_free_places_are_taken_at_once_then_the_reader_waits_for_a_batch() -> None:
    room = Room(16, batch=4)
    assert all(room.take(timeout=0.0) for _ in range(16))
    assert not room.take(timeout=0.01)  # full: nothing within the timeout

    results: list[bool] = []
    waiting = _taker(room, results)
    for _ in range(3):
        room.give()
    waiting.join(0.3)
    assert waiting.is_alive(), "woken before a batch of places was free"
    room.give()
    waiting.join(30.0)
    assert results == [True]
    # The rest of the batch is taken without waiting.
    assert all(room.take(timeout=0.0) for _ in range(3))
    assert not room.take(timeout=0.01)


def test_a_place_freed_while_the_reader_checked_its_stop_is_taken() -> None:
    room = Room(8, batch=2)
    for _ in range(8):
        room.take(timeout=0.0)
    assert not room.take(timeout=0.01)
    room.give()  # one place: less than a batch, but the reader's next call takes it
    assert room.take(timeout=0.0)


def test_the_batch_never_exceeds_a_quarter_of_the_share() -> None:
    room = Room(4, batch=8)  # a small queue: one place wakes the reader
    for _ in range(4):
        room.take(timeout=0.0)
    results: list[bool] = []
    waiting = _taker(room, results)
    room.give()
    waiting.join(30.0)
    assert results == [True]
