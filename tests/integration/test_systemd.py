"""streamd as systemd runs it: notify protocol, watchdog, SIGHUP reload, SIGTERM without loss."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from streamd.runtime import systemd
from tests.clips import mixed_clip
from tests.conftest import REPO, Collected, Launch, Streamd, write_config


class NotifySocket:
    """A real AF_UNIX datagram socket standing where systemd's would."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        self.sock.setblocking(False)
        self.address = path
        self.messages: list[tuple[float, str]] = []

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            self.messages.append((time.monotonic(), data.decode()))
        return [m for _, m in self.messages]

    async def wait_for(self, predicate: object, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.drain()):  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"notify messages so far: {self.drain()}")
            await asyncio.sleep(0.05)

    async def watch(self, seconds: float) -> None:
        """Receive for a while, time-stamping each datagram as it arrives."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.drain()
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self.sock.close()


def lines(messages: list[str]) -> list[str]:
    return [line for message in messages for line in message.splitlines()]


def test_notify_reaches_abstract_and_path_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for address in (str(tmp_path / "notify"), f"@streamd-test-{os.getpid()}"):
        receiver = NotifySocket(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert systemd.notify("READY=1")
        assert receiver.drain() == ["READY=1"]
        receiver.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not systemd.notify("READY=1")


async def test_ready_watchdog_stopping_in_order(tmp_path: Path, launch: Launch, subscriber: Collected) -> None:
    config = launch.write()
    notify = NotifySocket(str(tmp_path / "notify"))
    daemon = await Streamd(
        "run", "-c", str(config), env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "2000000"}
    ).start()
    await notify.wait_for(lambda m: "READY=1" in lines(m))
    await notify.watch(3)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(20) == 0
    sent = lines(notify.drain())
    notify.close()
    assert sent[0] == "READY=1" and sent[-1] == "STOPPING=1"
    assert any(line.startswith("STATUS=") for line in sent)
    pings = [t for t, m in notify.messages if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    # Pings every WATCHDOG_USEC/2 = 1 s; what systemd requires is one within WATCHDOG_USEC.
    assert len(pings) >= 2 and max(gaps) < 2.0, f"a gap past WATCHDOG_USEC: {gaps}"


async def test_watchdog_stops_when_the_engine_is_wedged(tmp_path: Path, launch: Launch) -> None:
    config = launch.write(daemon={"shutdown_timeout": 30})
    notify = NotifySocket(str(tmp_path / "notify"))
    daemon = await Streamd(
        "run",
        "-c",
        str(config),
        env={
            "NOTIFY_SOCKET": notify.address,
            "WATCHDOG_USEC": "400000",
        },
        module="tests.servers.stalling_daemon",
    ).start()
    await notify.wait_for(lambda m: "READY=1" in lines(m))
    receiving = asyncio.create_task(notify.watch(120))  # as systemd does: read as they come
    # 15 frames at 15 fps, then frames pile up with no progress: the daemon says so and stops pinging.
    # A busy machine may pause the first 15 long enough (0.4 s) for a stall of their own, followed
    # by pings again as they complete: the stall that counts is the one logged after the wedge.
    await daemon.wait_for_event("engine_stall_injected", timeout=60)
    earlier = sum(e.get("event") == "engine_stalled" for e in daemon.events())
    stalled = await daemon.wait_for_event("engine_stalled", count=earlier + 1, timeout=60)
    stalled_at = datetime.fromisoformat(stalled["timestamp"].replace("Z", "+00:00")).timestamp()
    await asyncio.sleep(1.0)  # an observation window (2.5 ping intervals): no ping may arrive in it
    wall = time.time() - time.monotonic()
    late = [t + wall - stalled_at for t, m in notify.messages if m == "WATCHDOG=1" and t + wall > stalled_at + 0.1]
    assert not late, f"WATCHDOG=1 while the engine is wedged, {late} s after engine_stalled"
    receiving.cancel()
    # The wedged engine would hold a graceful stop for shutdown_timeout (30 s): a second
    # SIGTERM exits at once.
    daemon.signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    stopping = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 1
    assert time.monotonic() - stopping < 10, "not the 30 s a graceful stop would wait"
    notify.close()
    events = [e["event"] for e in daemon.events()]
    assert "engine_stall_injected" in events and "engine_stalled" in events and "forced_exit" in events


async def test_sighup_adds_and_removes_sources_without_a_gap_for_the_others(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    clip, _ = mixed_clip(tmp_path)

    def sources(*names: str) -> list[dict[str, object]]:
        return [{"name": n, "uri": clip, "realtime": True, "loop": True, "drop": "block"} for n in names]

    path = tmp_path / "streamd.toml"
    write_config(path, default_model, sources("a", "b", "keep"), broker.port, mqtt={"publish_empty": True})
    notify = NotifySocket(str(tmp_path / "notify"))
    daemon = await Streamd("run", "-c", str(path), env={"NOTIFY_SOCKET": notify.address}).start()
    await subscriber.wait_for(lambda c: all(len(c.on(f"/{n}/detections")) >= 10 for n in ("a", "b", "keep")), 60)

    write_config(path, default_model, sources("b", "keep", "new"), broker.port, mqtt={"publish_empty": True})
    daemon.signal(signal.SIGHUP)
    await subscriber.wait_for(lambda c: len(c.on("/new/detections")) >= 10, 60)
    await notify.wait_for(lambda m: lines(m).count("READY=1") >= 2)

    path.write_text(path.read_text().replace('device = "CPU"', 'device = "CPU"\ncolour = "red"'))
    daemon.signal(signal.SIGHUP)
    await notify.wait_for(lambda m: lines(m).count("READY=1") >= 3)
    before = len(subscriber.on("/keep/detections"))
    await subscriber.wait_for(lambda c: len(c.on("/keep/detections")) >= before + 10, 30)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    notify.close()

    keep = sorted(m["frame"] for m in subscriber.json("/keep/detections"))
    assert keep == list(range(len(keep))), "the unchanged source kept its sequence, no frame lost or repeated"
    # Removed for good: "ended", then its retained state cleared with its other topics (#37).
    assert subscriber.on("/a/state")[-2:] == [b"ended", b""]
    sent = lines([m for _, m in notify.messages])
    reloading = [line for line in sent if line.startswith("RELOADING=1") or line.startswith("MONOTONIC_USEC=")]
    assert len(reloading) == 4  # two reloads, each RELOADING=1 + MONOTONIC_USEC
    events = daemon.events()
    done = next(e for e in events if e["event"] == "reload_done")
    assert done["added"] == ["new"] and done["removed"] == ["a"] and done["restarted"] == []
    print(f"reload: applied in {done['seconds']} s; 'keep' published {len(keep)} frames with no gap")
    rejected = next(e for e in events if e["event"] == "reload_rejected")
    assert rejected["error"] == "model.colour: unknown key"


async def test_sigterm_mid_stream_loses_no_frame(launch: Launch, subscriber: Collected) -> None:
    source = {"name": "cam", "uri": launch.clip, "realtime": True, "loop": True, "drop": "block"}
    daemon = await launch([source], mqtt={"publish_empty": True, "qos": 1})
    await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= 20, 60)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(15) == 0
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)
    frames = sorted(m["frame"] for m in subscriber.json("/cam/detections"))
    stopped = next(e for e in daemon.events() if e["event"] == "stopped")
    assert frames == list(range(len(frames))), "every captured frame was published, in sequence"
    assert len(frames) == stopped["frames_published"]["cam"]


def test_unit_file_verifies() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    unit = (REPO / "systemd/streamd.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    # No hard dependency on a group most servers lack; the comment's README section exists.
    groups = next(line for line in unit.splitlines() if line.startswith("SupplementaryGroups="))
    assert "render" not in groups
    section = unit.split('see README ("', 1)[1].split('")', 1)[0]
    assert f"## {section}" in (REPO / "README.md").read_text()
    streamd = Path(sys.executable).with_name("streamd")
    local = Path(os.environ.get("TMPDIR", "/tmp")) / f"streamd-verify-{os.getpid()}.service"
    local.write_text(unit.replace("/opt/streamd/bin/streamd", str(streamd)))
    try:
        result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True)
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    finally:
        local.unlink()


MDWE_PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3+)
    sys.exit(3)
import openvino as ov, openvino.opset13 as ops, numpy as np
x = ops.parameter([1, 3, 32, 32], ov.Type.f32)
y = ops.convolution(x, ops.constant(np.ones((4, 3, 3, 3), np.float32)), [1, 1], [0, 0], [0, 0], [1, 1])
ov.Core().compile_model(ov.Model([y], [x]), "CPU")
"""


def test_openvino_jit_needs_writable_executable_memory() -> None:
    """Why the unit keeps MemoryDenyWriteExecute=no: under the same kernel rule, compiling fails."""
    result = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True, timeout=120)
    if result.returncode == 3:
        pytest.skip("this kernel has no PR_SET_MDWE")
    assert result.returncode != 0 and "can't protect" in result.stderr
