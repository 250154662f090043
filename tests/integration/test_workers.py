"""Worker processes (``[daemon] workers``): real processes, a real broker, the real model.

The parent owns the service; each worker is a whole pipeline for its share of the sources. These
tests kill, stop and reload them the way systemd and operators do, and read what a subscriber
and a scraper see."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from streamd.demo.broker import free_port
from tests.conftest import REPO, Collected, Launch, Streamd
from tests.integration.test_observability import EVERYWHERE, http, samples, wait_ready
from tests.waits import until

pytestmark = pytest.mark.slow

NAMES = ["north", "south", "east", "west"]


def frames_of(collected: Collected, source: str) -> list[int]:
    return [m["frame"] for m in collected.json(f"/{source}/detections")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not running either.
    with contextlib.suppress(OSError):
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    return False


def plan_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    workers = body["workers"]
    assert isinstance(workers, dict)
    return workers


async def test_four_files_over_two_workers_every_frame_once_in_order(launch: Launch, subscriber: Collected) -> None:
    sources = [launch.source(name, realtime=False, loop=False) for name in NAMES]
    daemon = await launch(sources, daemon={"workers": 2}, mqtt={"publish_empty": True})
    assert await daemon.wait(120) == 0, daemon.stderr.decode()[-3000:]
    events = daemon.events()
    plan = next(e for e in events if e.get("event") == "service_starting")["plan"]
    assert sorted(len(p["sources"]) for p in plan) == [2, 2]  # balanced
    assert {p["cores"] for p in plan} == {"0", "1"}  # disjoint cores, one each on this machine
    frames = len(launch.truth)
    await subscriber.wait_for(lambda c: all(len(frames_of(c, n)) >= frames for n in NAMES), 30)
    for name in NAMES:
        assert frames_of(subscriber, name) == list(range(frames)), name  # once each, in order
    stopped = [e for e in events if e.get("event") == "stopped" and "worker" in e]
    assert sorted(e["worker"] for e in stopped) == [0, 1]  # both drained and said so
    # Each worker has its own client id and buffer file; the service's status is the parent's.
    assert sorted(p.name for p in (launch.tmp_path / "mqtt-buffer").glob("mqtt-*.sqlite3")) == [
        "mqtt-test-w0.sqlite3",
        "mqtt-test-w1.sqlite3",
    ]
    await subscriber.wait_for(lambda c: c.on("streamd/test/status")[-1:] == [b"offline"], 10)
    assert subscriber.on("streamd/test/status")[0] == b"online"


async def test_sigkill_of_one_worker_restarts_it_while_the_other_goes_on(launch: Launch, subscriber: Collected) -> None:
    daemon = await launch([launch.source(n) for n in NAMES], http=True, daemon={"workers": 2})
    body = await wait_ready(launch.http_port, 200)
    workers = plan_of(body)
    victim, other = workers["0"], workers["1"]
    await subscriber.wait_for(lambda c: all(frames_of(c, n) for n in NAMES), 30)

    os.kill(victim["pid"], signal.SIGKILL)
    killed_at = time.time()
    exited = await daemon.wait_for_event("worker_exited")
    assert exited["worker"] == 0 and exited["exit"] == "signal SIGKILL"
    assert exited["sources"] == victim["sources"]
    # Not ready until it is back; then ready, with a new pid and one restart counted.
    body = await wait_ready(launch.http_port, 200)
    back = plan_of(body)
    assert back["0"]["pid"] != victim["pid"] and back["0"]["restarts"] == 1
    assert back["1"]["pid"] == other["pid"] and back["1"]["restarts"] == 0  # never restarted
    _status, text = await http(f"{launch.http}/metrics")
    scrape = samples(text)
    assert scrape[("streamd_worker_restarts_total", (("worker", "0"),))] == 1.0
    assert scrape[("streamd_worker_restarts_total", (("worker", "1"),))] == 0.0

    def published_after(name: str, moment: float) -> bool:
        return any(_epoch(m["ts"]) > moment for m in subscriber.json(f"/{name}/detections"))

    # The victim's sources publish again...
    await subscriber.wait_for(lambda c: all(published_after(n, killed_at + 0.5) for n in victim["sources"]), 60)
    await daemon.wait_for_event("worker_ready", count=3)  # both at start, then the restarted one
    readies = [e for e in daemon.events() if e.get("event") == "worker_ready" and e.get("worker") == 0]
    assert [e["pid"] for e in readies] == [victim["pid"], back["0"]["pid"]]
    # ...and the other worker's kept publishing frames captured while the victim was down.
    back_at = min(
        _epoch(m["ts"])
        for n in victim["sources"]
        for m in subscriber.json(f"/{n}/detections")
        if _epoch(m["ts"]) > killed_at
    )
    for name in other["sources"]:
        during = [m for m in subscriber.json(f"/{name}/detections") if killed_at <= _epoch(m["ts"]) <= back_at]
        assert during, f"{name} published nothing in the {back_at - killed_at:.2f} s its neighbour was down"
    # #32: a restarted worker's frame numbers start above every number its predecessor used: the
    # key subscribers dedupe by, (source, frame), never names two different frames.
    for name in victim["sources"]:
        stamps: dict[int, set[str]] = {}
        for message in subscriber.json(f"/{name}/detections"):
            stamps.setdefault(message["frame"], set()).add(message["ts"])
        reused = sorted(frame for frame, ts in stamps.items() if len(ts) > 1)
        assert not reused, f"{name}: frame numbers reused after the restart: {reused[:10]}"
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(60) == 0


async def test_sigterm_during_a_restart_backoff_is_a_clean_stop(launch: Launch, subscriber: Collected) -> None:
    """#32: the killed worker's SIGKILL was counted as a drain that failed (exit 1), and the stop
    waited the backoff out."""
    daemon = await launch([launch.source(n) for n in NAMES[:2]], http=True, daemon={"workers": 2})
    body = await wait_ready(launch.http_port, 200)
    os.kill(plan_of(body)["0"]["pid"], signal.SIGKILL)
    await daemon.wait_for_event("worker_exited")
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(60) == 0, daemon.stderr.decode()[-3000:]
    stopped = next(e for e in daemon.events() if e.get("event") == "stopped" and "worker" not in e)
    assert stopped["exit"] == 0 and stopped["restarts"] == {"0": 1, "1": 0}, stopped


async def test_metrics_keep_a_finished_workers_series_until_the_service_exits(
    launch: Launch, subscriber: Collected
) -> None:
    """#32: a worker whose files ended vanished from the service's /metrics with its counts."""
    sources = [launch.source("done", realtime=False, loop=False), launch.source("live")]
    daemon = await launch(sources, http=True, daemon={"workers": 2})
    await daemon.wait_for_event("worker_done")
    await subscriber.wait_for(lambda c: c.on("/done/state")[-1:] == [b"ended"], 30)
    _status, text = await http(f"{launch.http}/metrics")
    scrape = samples(text)
    done = next(k for k in scrape if k[0] == "streamd_frames_captured_total" and ("source", "done") in k[1])
    assert scrape[done] == len(launch.truth), "the finished worker's last count"
    assert any(k[0] == "streamd_frames_captured_total" and ("source", "live") in k[1] for k in scrape)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(60) == 0


async def retained(port: int, pattern: str) -> dict[str, bytes]:
    """What a client that connects now gets as retained messages (until a quiet second)."""
    found: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"late-{time.monotonic_ns()}") as client:
        await client.subscribe(pattern)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    found[str(message.topic)] = message.payload if isinstance(message.payload, bytes) else b""
    return found


async def test_home_assistant_entities_of_workers_stay_available_and_a_removed_source_leaves_none(
    launch: Launch, subscriber: Collected
) -> None:
    """#37: the entities watched a worker's non-retained status (unavailable after Home Assistant
    restarted); a source removed by a reload left its entities and states retained."""
    ha = {"discovery": True, "discovery_prefix": "streamd/ha"}
    sources = [launch.source("keep", tracking={}), launch.source("ghost", tracking={})]
    daemon = await launch(sources, http=True, daemon={"workers": 2}, mqtt=ha)
    await wait_ready(launch.http_port, 200)
    await subscriber.wait_for(lambda c: c.on("/ghost/detect/state") and c.on("/keep/detect/state"), 60)
    before = await retained(launch.broker.port, "streamd/#")
    configs = {t: json.loads(p) for t, p in before.items() if t.endswith("/config")}
    assert configs and {c["availability_topic"] for c in configs.values()} == {"streamd/test/status"}
    assert before["streamd/test/status"] == b"online", "the topic the entities watch is retained"
    ghostly = sorted(t for t in before if "ghost" in t)
    assert any("/ha/binary_sensor/" in t for t in ghostly) and "streamd/test/ghost/detect/state" in ghostly

    launch.write([sources[0]], daemon={"workers": 2}, mqtt=ha, web={"listen": launch.http[7:]})
    daemon.signal(signal.SIGHUP)
    await daemon.wait_for_event("source_removed")
    await subscriber.wait_for(lambda c: c.on("/ghost/state")[-1:] == [b""], 30)
    after = await retained(launch.broker.port, "streamd/#")
    assert not [t for t in after if "ghost" in t], sorted(t for t in after if "ghost" in t)
    assert any("keep" in t for t in after), "the kept source's are still there"
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(60) == 0


async def test_the_services_readyz_says_why_a_camera_of_a_worker_does_not_open(
    launch: Launch, subscriber: Collected, tmp_path: Path
) -> None:
    """#37: the worker said AUTH FAILED (401), the service's /readyz only "reconnecting"."""
    from tests.integration.test_sources import rtsp_camera

    camera = rtsp_camera(tmp_path, credentials="admin:right")
    try:
        backyard = {"name": "backyard", "uri": f"rtsp://admin:wrong@127.0.0.1:{camera.port}/stream"}
        daemon = await launch([launch.source("front"), backyard], http=True, daemon={"workers": 2})
        body = await wait_ready(launch.http_port, 200, 60, saying="AUTH FAILED")  # front streams: ready
        assert body["source_errors"] == {"backyard": "AUTH FAILED (401)"}, body
        assert body["mqtt_connected"] is True and body["device"] == "CPU" and "mqtt_buffered" in body
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(60) == 0
    finally:
        camera.kill()


async def test_sigterm_drains_every_worker_and_leaves_no_process(launch: Launch, subscriber: Collected) -> None:
    tables: dict[str, Any] = {"daemon": {"workers": 2}, "mqtt": {"publish_empty": True}}
    daemon = await launch([launch.source(n) for n in NAMES], http=True, **tables)
    body = await wait_ready(launch.http_port, 200)
    pids = [w["pid"] for w in plan_of(body).values()]
    await subscriber.wait_for(lambda c: all(len(frames_of(c, n)) >= 3 for n in NAMES), 30)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(60) == 0
    assert not [pid for pid in pids if alive(pid)]
    stopped = [e for e in daemon.events() if e.get("event") == "stopped" and "worker" in e]
    assert sorted(e["worker"] for e in stopped) == [0, 1]
    for event in stopped:  # what each worker captured it published: nothing lost at the stop
        for name, published in event["frames_published"].items():
            assert published == event["captured"][name] - event["dropped"].get(name, 0), event
    await subscriber.wait_for(lambda c: c.on("streamd/test/status")[-1:] == [b"offline"], 10)
    for name in NAMES:
        numbers = frames_of(subscriber, name)
        assert len(numbers) == len(set(numbers)), f"{name}: a frame published twice"


async def test_a_killed_parent_takes_its_workers_with_it(launch: Launch, subscriber: Collected) -> None:
    daemon = await launch([launch.source(n) for n in NAMES[:2]], http=True, daemon={"workers": 2})
    body = await wait_ready(launch.http_port, 200)
    pids = [w["pid"] for w in plan_of(body).values()]
    run_dir = Path(next(e for e in daemon.events() if e.get("event") == "service_starting")["run_dir"])
    assert await asyncio.to_thread(run_dir.is_dir)
    daemon.signal(signal.SIGKILL)
    await daemon.wait(30)
    await until(lambda: not any(alive(pid) for pid in pids), 30, "workers to exit after their parent died")
    # The broker tells subscribers: the parent's last will.
    await subscriber.wait_for(lambda c: c.on("streamd/test/status")[-1:] == [b"offline"], 30)
    # #32: one graceful drain each (a second SIGTERM had cut it short), and nothing left behind.
    events = [e for e in daemon.events() if "worker" in e]
    for index in (0, 1):
        mine = [e["event"] for e in events if e["worker"] == index]
        assert mine.count("shutdown_requested") == 1 and "forced_exit" not in mine, mine
        assert "stopped" in mine and "worker_orphaned" in mine, [e for e in events if e["worker"] == index]
    assert not await asyncio.to_thread(run_dir.exists), "the run directory is left behind"


async def test_sighup_moving_a_source_loses_and_duplicates_nothing(launch: Launch, subscriber: Collected) -> None:
    sources = [launch.source(n) for n in NAMES]
    tables: dict[str, Any] = {"daemon": {"workers": 2}, "mqtt": {"publish_empty": True}}
    daemon = await launch(sources, http=True, **tables)
    body = await wait_ready(launch.http_port, 200)
    workers = plan_of(body)
    # Remove worker 0's sources from the file: balance moves one of worker 1's over.
    gone = set(workers["0"]["sources"])
    staying = [s for s in sources if s["name"] not in gone]
    await subscriber.wait_for(lambda c: all(len(frames_of(c, s["name"])) >= 5 for s in staying), 30)
    launch.write(staying, **tables, web={"listen": f"127.0.0.1:{launch.http_port}"})
    daemon.signal(signal.SIGHUP)

    def parents(name: str) -> list[dict[str, Any]]:
        return [e for e in daemon.events() if e.get("event") == name and "worker" not in e]

    await until(lambda: parents("reload_done"), 60, "the parent's reload_done")
    done = parents("reload_done")[0]
    assert len(done["moved"]) == 1
    mover = done["moved"][0]
    assert mover in workers["1"]["sources"]
    body = await wait_ready(launch.http_port, 200)
    after = plan_of(body)
    assert after["0"]["sources"] == [mover] and len(after["1"]["sources"]) == 1
    assert after["0"]["pid"] == workers["0"]["pid"] and after["1"]["pid"] == workers["1"]["pid"]

    def segments() -> list[list[dict[str, Any]]]:
        runs: list[list[dict[str, Any]]] = []
        for message in subscriber.json(f"/{mover}/detections"):
            # The new worker's numbers start above the old one's (#32: never reused): a jump of
            # the microseconds since the service started, far beyond the old worker's count.
            if not runs or message["frame"] > runs[-1][-1]["frame"] + 100_000:
                runs.append([])
            runs[-1].append(message)
        return runs

    await subscriber.wait_for(lambda c: len(segments()) >= 2 and len(segments()[1]) >= 3, 60)
    old, new = segments()[:2]
    # The old worker published every frame it inferred of the mover, each once, all before the
    # new worker's first frame was captured.
    _status, text = await http(f"{launch.http}/metrics")
    inferred = samples(text)[("streamd_frames_inferred_total", (("source", mover), ("worker", "1")))]
    assert len(old) == inferred
    assert [m["frame"] for m in old] == sorted({m["frame"] for m in old})
    assert _epoch(old[-1]["ts"]) < _epoch(new[0]["ts"])
    # A move is no end: no retained "ended" for the mover, only for the sources removed.
    states = subscriber.on(f"/{mover}/state")
    assert b"ended" not in states
    for name in gone:  # "ended", then every retained topic of the source cleared (#37)
        await subscriber.wait_for(lambda c, n=name: c.on(f"/{n}/state")[-2:] == [b"ended", b""], 10)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(60) == 0


async def test_prometheus_scrapes_the_service_and_every_dashboard_query_has_data(
    launch: Launch, subscriber: Collected, tmp_path: Path
) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed (Debian package 'prometheus'); .ci/run installs it")
    recording = {"dir": launch.tmp_path / "recordings", "labels": ["person"]}
    featured = {"tracking": {}, "zones": [EVERYWHERE], "snapshots": {}, "motion": {}, "recording": recording}
    daemon = await launch([launch.source(n, **featured) for n in NAMES], http=True, daemon={"workers": 2})
    await wait_ready(launch.http_port, 200)
    _status, text = await http(f"{launch.http}/metrics")
    scrape = samples(text)
    # Every source once, in the worker that runs it.
    ups = [labels for (name, labels) in scrape if name == "streamd_source_up"]
    assert sorted(dict(labels)["source"] for labels in ups) == sorted(NAMES)

    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: streamd, static_configs: [{{targets: ['127.0.0.1:{launch.http_port}']}}]}}]\n"
    )
    server = subprocess.Popen(  # noqa: ASYNC220 - a server left running in the background
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        dashboard = json.loads((REPO / "deploy/grafana/streamd.json").read_text())
        queries = [
            target["expr"].replace("$instance", ".*").replace("$source", ".*")
            for panel in dashboard["panels"]
            for target in panel.get("targets", [])
        ]

        async def result(query: str) -> list[Any]:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            with contextlib.suppress(OSError, ValueError):
                code, body = await http(url)
                if code == 200:
                    return list(json.loads(body)["data"]["result"])
            return []

        missing = list(queries)
        deadline = time.monotonic() + 90
        while missing and time.monotonic() < deadline:
            missing = [q for q in missing if not await result(q)]
            if missing:
                await asyncio.sleep(1.0)
        assert not missing, f"no data for: {missing}"
        up = await result('up{job="streamd"}')
        assert up and up[0]["value"][1] == "1"
    finally:
        server.terminate()
        server.wait(10)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(60) == 0


def test_check_shows_the_worker_plan(launch: Launch) -> None:
    launch.write([launch.source(n) for n in NAMES], daemon={"workers": 2})
    result = subprocess.run(
        [sys.executable, "-m", "streamd", "check", "-c", str(launch.config)],
        capture_output=True,
        text=True,
        env=Streamd("").env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "workers   2 (daemon.workers = 2; 2 usable cores: 0-1)" in result.stdout
    assert "worker 0: cores 0" in result.stdout and "worker 1: cores 1" in result.stdout
    buffers = [line for line in result.stdout.splitlines() if line.startswith("buffer ")]
    assert len(buffers) == 2 and "mqtt-test-w0.sqlite3" in buffers[0] and "mqtt-test-w1.sqlite3" in buffers[1]


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


async def test_systemd_hears_of_the_service_as_a_whole_and_a_wedged_worker_is_replaced(
    tmp_path: Path, launch: Launch
) -> None:
    from tests.integration.test_systemd import NotifySocket, lines

    config = launch.write([launch.source(n) for n in NAMES[:2]], http=True, daemon={"workers": 2})
    notify = NotifySocket(str(tmp_path / "notify"))
    env = {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": ""}
    daemon = await Streamd("run", "-c", str(config), env=env).start()
    await notify.wait_for(lambda m: "READY=1" in lines(m))
    body = await wait_ready(launch.http_port, 200)  # READY=1 came once both workers were ready
    wedged = plan_of(body)["1"]
    await notify.wait_for(lambda m: lines(m).count("WATCHDOG=1") >= 2)
    # A worker that stops answering (SIGSTOP: alive, no progress) stops the service's pings,
    # then is killed and restarted by the parent.
    os.kill(wedged["pid"], signal.SIGSTOP)
    receiving = asyncio.create_task(notify.watch(300))  # as systemd does: read as they come
    stalled = await daemon.wait_for_event("worker_stalled", timeout=60)
    assert stalled["worker"] == 1
    # No progress for two intervals (10 s) stops the service's pings; three (15 s) kill it.
    wall = time.time() - time.monotonic()
    killed_at = _epoch(stalled["timestamp"])
    pings = [t + wall for t, m in notify.messages if m == "WATCHDOG=1"]
    assert not [t for t in pings if killed_at - 3.0 < t < killed_at], "pinged while a worker was wedged"
    back = await wait_ready(launch.http_port, 200)
    assert plan_of(back)["1"]["pid"] != wedged["pid"] and plan_of(back)["1"]["restarts"] == 1
    pinged = len([m for _, m in notify.messages if m == "WATCHDOG=1"])
    await notify.wait_for(lambda m: lines(m).count("WATCHDOG=1") > pinged)  # pinging again
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(60) == 0
    receiving.cancel()
    sent = lines(notify.drain())
    notify.close()
    assert sent[-1] == "STOPPING=1"
    assert not alive(wedged["pid"])
