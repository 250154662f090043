"""The seam between the engine and a device, after OpenVINO model_api's ``InferenceAdapter``, cut
to what the engine uses: start a request with its userdata; hear on the device's thread when it
is done, with its outputs copied in the compiled model's order (decoders resolve them by name
once, at bind) and the seconds it took. A test that needs a device that misbehaves (one that
stops answering) substitutes the adapter, not the engine."""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import openvino as ov
from openvino._pyopenvino import AsyncInferQueue as NativeQueue

# (userdata, outputs, seconds on the device): called on the device's thread.
Done = Callable[[Any, list[np.ndarray], float], None]


class InferenceAdapter(Protocol):
    def start(self, tensor: ov.Tensor, userdata: Any) -> None:
        """Start one request (the caller holds one of ``requests`` slots); non-blocking. The
        input's memory is shared, not copied: ``userdata`` keeps it alive until ``done``."""

    def close(self) -> None:
        """Wait for the requests still running; the adapter is not used again."""


RELEASE_TIMEOUT = 30.0  # seconds: a device thread lets go of a finished request in microseconds
_KEPT: set[int] = set()  # the native ids of the device threads whose Python thread state is kept


def keep_thread_state() -> None:
    """Called on a device thread: its Python thread state lives as long as the thread does.
    OpenVINO calls back through pybind11, which, on a thread Python did not start, made a thread
    state for each call and deleted it after: with the free model, 67-77 us of CPU a callback
    (35-43 of them in the kernel) against 42 with the state kept (20,000 requests, 4 in flight).
    One ``PyGILState_Ensure`` that is never released keeps it (the lock is held here)."""
    ident = threading.get_native_id()
    if ident not in _KEPT:
        _KEPT.add(ident)
        ctypes.pythonapi.PyGILState_Ensure()


class OpenVinoAdapter:
    """An ``AsyncInferQueue`` of ``requests`` requests on a compiled model."""

    def __init__(self, compiled: ov.CompiledModel, requests: int, done: Done) -> None:
        self._queue: ov.AsyncInferQueue | None = ov.AsyncInferQueue(compiled, requests)
        # OpenVINO's C++ start for one tensor (it waits for an idle request with the interpreter
        # lock released, sets the tensor as it is, and starts): the Python ``start_async`` over it
        # asks for the idle request a second time, wraps that request in a new Python object and
        # dispatches on the input's type first, per frame.
        self._start_native: Callable[[ov.Tensor, Any], None] = NativeQueue.start_async.__get__(self._queue)
        self._done = done
        self._outputs = range(len(compiled.outputs))
        # Set once OpenVINO has let go of the callback, that is, of every request (``close``).
        self._released = threading.Event()
        callback = _Callback(self._on_done)
        weakref.finalize(callback, self._released.set)
        self._queue.set_callback(callback)

    def _on_done(self, request: ov.InferRequest, userdata: Any) -> None:
        keep_thread_state()
        # Copy the (small) outputs before the request is reused; nothing else on this thread
        # (which holds the interpreter lock meanwhile: ``output_tensors`` took 17 us, this 5).
        outputs = [request.get_output_tensor(index).data.copy() for index in self._outputs]
        self._done(userdata, outputs, request.latency / 1000.0)

    def start(self, tensor: ov.Tensor, userdata: Any) -> None:
        self._start_native(tensor, userdata)

    def close(self) -> None:
        """Wait for the running requests, then for OpenVINO to destroy them, before the caller may
        drop the compiled model. ``wait_all`` returns when the last callbacks have run, but a
        device thread may still hold a request for a moment after; if it is the last holder, it
        destroys the request there, and with it the callback, which needs the interpreter lock.
        Dropping the compiled model meanwhile joins that thread while holding the lock: both wait
        for ever (``test_adapter.py``'s cycles hung in every run). Where the request holds the
        model's last reference, the thread would join itself and abort the process ("Resource
        deadlock avoided", seen with a plain queue). So ``close`` waits, the lock released, until
        the callback is gone.

        The queue goes with its last request: its callback holds this adapter, a cycle through
        C++ that no garbage collection breaks, so dropping it here is what frees the compiled
        model's threads and memory after a reload (the 20-swap test counts them)."""
        queue, self._queue = self._queue, None
        if queue is None:
            return
        self._start_native = _closed  # it held the queue too
        queue.wait_all()
        del queue
        if not self._released.wait(RELEASE_TIMEOUT):
            raise RuntimeError(f"OpenVINO held its requests {RELEASE_TIMEOUT} s after they finished")


def _closed(tensor: ov.Tensor, userdata: Any) -> None:
    raise RuntimeError("the adapter is closed")


class _Callback:
    """The queue's callback as an object of its own: a bound method is made anew on each access,
    so only an object handed over once tells (by being collected) that OpenVINO let go of it."""

    __slots__ = ("__weakref__", "_call")

    def __init__(self, call: Callable[[ov.InferRequest, Any], None]) -> None:
        self._call = call

    def __call__(self, request: ov.InferRequest, userdata: Any) -> None:
        self._call(request, userdata)


# What the engine builds a device with (the composition root passes it in; a test passes a
# device that misbehaves): (compiled model, requests, done) -> adapter.
AdapterFactory = Callable[[ov.CompiledModel, int, Done], InferenceAdapter]
