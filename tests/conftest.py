"""Shared fixtures: a real Mosquitto per test, the real default model, real clips on disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiomqtt
import pytest

from streamd.demo.broker import Mosquitto
from streamd.demo.model import ensure_default_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def default_model() -> Path:
    return ensure_default_model()


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as mosquitto:
        yield mosquitto


def write_config(
    path: Path, model_path: Path, sources: list[dict[str, Any]], port: int, **tables: dict[str, Any]
) -> Path:
    """A TOML config; ``tables`` merge into [model], [mqtt], [queue]... Values are TOML-rendered."""

    def render(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | Path):
            return json.dumps(str(value))
        if isinstance(value, list | tuple):
            return "[" + ", ".join(render(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {render(v)}" for k, v in value.items()) + " }"
        return str(value)

    sections: dict[str, dict[str, Any]] = {
        # f32: the tests compare scores and boxes with references, and "auto" is bf16 on CPUs with
        # avx512_bf16/AMX (test_inference checks what "auto" does against f32 on its own).
        "model": {"path": model_path, "device": "CPU", "cache_dir": "", "precision": "f32"},
        "mqtt": {"host": "127.0.0.1", "port": port, "instance": "test", "buffer_dir": path.parent / "mqtt-buffer"},
        "http": {"listen": ""},
        "events": {"db": f"sqlite:///{path.parent / 'events.db'}"},
        "log": {"format": "json"},
    }
    for name, values in tables.items():
        sections.setdefault(name, {}).update(values)
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {render(v)}" for k, v in values.items()]
        lines.append("")
    for source in sources:
        lines.append("[[sources]]")
        lines += [f"{k} = {render(v)}" for k, v in source.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@dataclass
class Collected:
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, suffix: str) -> list[bytes]:
        return [p for t, p in self.messages if t.endswith(suffix)]

    def json(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on(suffix)]

    async def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        async def poll() -> None:
            while not predicate(self):
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(poll(), timeout)


@pytest.fixture
async def subscriber(broker: Mosquitto) -> AsyncIterator[Collected]:
    """A real client subscribed to everything streamd publishes, before streamd starts."""
    collected = Collected()
    ready = asyncio.Event()

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"test-sub-{os.getpid()}") as client:
            await client.subscribe("streamd/#", qos=1)
            ready.set()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                collected.messages.append((str(message.topic), payload))
                collected.arrived.set()

    task = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 10)
    yield collected
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await task


class DurableSubscriber:
    """A real client with a persistent session (clean_session off, QoS 1) that reconnects by
    itself: what a production consumer of streamd looks like, and what survives a broker restart."""

    def __init__(self, port: int, name: str) -> None:
        self.port, self.name = port, name
        self.collected = Collected()
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.name, clean_session=False) as c:
                    await c.subscribe("streamd/#", qos=1)
                    self.subscribed.set()
                    async for message in c.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        self.collected.messages.append((str(message.topic), payload))
                        self.collected.arrived.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    async def __aenter__(self) -> Collected:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self.collected

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture(autouse=True)
async def reap_daemons() -> AsyncIterator[None]:
    """A test that fails half-way must not leave its daemon running (and loading the machine)."""
    yield
    for daemon in list(Streamd.running):
        Streamd.running.discard(daemon)
        if daemon.process is not None and daemon.process.returncode is None:
            daemon.process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(daemon.process.wait(), 10)


class Streamd:
    """``streamd`` run as a real process, the way systemd runs it. Its log (stderr, JSON lines)
    is read as it comes, so a test can wait for an event while the daemon runs."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, module: str = "streamd") -> None:
        self.args = args
        self.module = module  # tests.servers.stalling_daemon runs it with a test double
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.process: asyncio.subprocess.Process | None = None
        self.stdout = b""
        self._lines: list[bytes] = []
        self._logged = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    running: ClassVar[set[Streamd]] = set()  # killed by the reap_daemons fixture if a test leaves one behind

    async def start(self) -> Streamd:
        Streamd.running.add(self)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            *self.args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        self._reader = asyncio.create_task(self._read_log())
        return self

    async def _read_log(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self._lines.append(line)
            self._logged.set()

    @property
    def stderr(self) -> bytes:
        return b"".join(self._lines)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None and self._reader is not None
        try:
            self.stdout = await asyncio.wait_for(self._communicate(), timeout)
        except TimeoutError:
            self.process.kill()
            await self._communicate()
            raise AssertionError(
                f"streamd did not exit in {timeout}s; stderr:\n{self.stderr.decode()[-3000:]}"
            ) from None
        return self.process.returncode if self.process.returncode is not None else -1

    async def _communicate(self) -> bytes:
        assert self.process is not None and self.process.stdout is not None and self._reader is not None
        out = await self.process.stdout.read()
        await self._reader
        await self.process.wait()
        return out

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self._lines:
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    async def wait_for_event(self, name: str, count: int = 1, timeout: float = 60.0) -> dict[str, Any]:
        """Until the log holds ``count`` events called ``name``; returns the last of them."""

        async def poll() -> dict[str, Any]:
            while True:
                matching = [e for e in self.events() if e.get("event") == name]
                if len(matching) >= count:
                    return matching[count - 1]
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"streamd exited before logging {name} x{count}")
                self._logged.clear()
                await self._logged.wait()

        try:
            return await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {name} x{count} in {timeout}s:\n{self.stderr.decode()[-3000:]}") from None


class Launch:
    """Arrange and start a daemon in one call: the mixed clip, a config (by default one looping
    real-time source called ``cam`` on the test's broker), the process. ``http=True`` also serves
    /metrics on a free port (``launch.http``)."""

    def __init__(self, tmp_path: Path, model: Path, broker: Mosquitto, script: list[str | None] | None = None) -> None:
        from tests.clips import mixed_clip

        self.tmp_path, self.model, self.broker = tmp_path, model, broker
        self.clip, self.truth = mixed_clip(tmp_path, script=script)
        self.config = tmp_path / "streamd.toml"
        self.http_port = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def source(self, name: str = "cam", **settings: Any) -> dict[str, Any]:
        """The clip as a looping real-time source; ``settings`` add to or override that."""
        return {"name": name, "uri": self.clip, "realtime": True, "loop": True} | settings

    def write(
        self,
        sources: list[dict[str, Any]] | None = None,
        *,
        http: bool = False,
        web: dict[str, Any] | None = None,
        **tables: Any,
    ) -> Path:
        """``web``: more ``[http]`` keys (``http`` says whether it listens)."""
        from streamd.demo.broker import free_port

        if http:
            self.http_port = free_port()
            tables.setdefault("http", {})["listen"] = f"127.0.0.1:{self.http_port}"
        if web:
            tables.setdefault("http", {}).update(web)
        sources = sources or [self.source()]
        return write_config(self.config, self.model, sources, self.broker.port, **tables)

    async def __call__(
        self,
        sources: list[dict[str, Any]] | None = None,
        *,
        http: bool = False,
        web: dict[str, Any] | None = None,
        **tables: Any,
    ) -> Streamd:
        self.write(sources, http=http, web=web, **tables)
        return await Streamd("run", "-c", str(self.config)).start()


@pytest.fixture
def launch(tmp_path: Path, default_model: Path, broker: Mosquitto) -> Launch:
    return Launch(tmp_path, default_model, broker)
