"""The event history (#35) with the real model and broker: a person walks through a zone -> one
row (start < end, the zone, the label), found by every filter and not by a wrong one, still there
after a restart; the same against the machine's PostgreSQL; a database newer than the code is
refused naming both versions; ``kill -9`` in a burst of writes leaves a database that opens."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import uuid
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Collected, Launch, Streamd
from tests.integration.test_live import get
from tests.integration.test_observability import wait_ready

EVERYWHERE = {"name": "porch", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROW_SCHEMA = json.loads(resources.files("streamd.schemas").joinpath("event-row.schema.json").read_text())


def postgres_problem() -> str | None:
    try:
        with create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://")).connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:
        return f"no PostgreSQL at {PG_URL}: {type(exc).__name__}"
    return None


async def api(launch: Launch, path: str) -> Any:
    status, _, body = await get(launch.http + path)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


async def one_walk(launch: Launch, subscriber: Collected, source: str, db: str) -> dict[str, Any]:
    """A person walks through the zone once; the row once its end is written."""
    daemon = await launch(
        [launch.source(source, loop=False, tracking={"max_age": 5}, zones=[EVERYWHERE])],
        http=True,
        events={"db": db},
    )
    try:
        await subscriber.wait_for(lambda c: any(b'"end"' in p for p in c.on(f"/{source}/events")), 60)
        await daemon.wait(60)
    finally:
        if daemon.process is not None and daemon.process.returncode is None:
            daemon.signal()
            await daemon.wait(30)
    assert daemon.process is not None and daemon.process.returncode == 0
    ended = [json.loads(p) for p in subscriber.on(f"/{source}/events") if b'"end"' in p]
    return ended[0]


async def check_the_api(launch: Launch, source: str, end: dict[str, Any], db: str) -> None:
    """A daemon on the same database answers for the row: every filter, a wrong one, the page."""
    daemon = await launch([launch.source(source, tracking={})], http=True, events={"db": db})
    try:
        await wait_ready(launch.http_port, 200)
        rows = await api(launch, f"/api/events?source={source}")
        assert len(rows) == 1, rows
        row = rows[0]
        jsonschema.validate(row, ROW_SCHEMA)
        assert row["track_id"] == end["id"] and row["label"] == "person" and row["zones"] == ["porch"]
        start, stop = (datetime.fromisoformat(row[k].replace("Z", "+00:00")) for k in ("start", "end"))
        assert start < stop
        assert abs(start.timestamp() - datetime.fromisoformat(end["first_seen"].replace("Z", "+00:00")).timestamp()) < 1
        before = datetime.fromtimestamp(stop.timestamp() + 60, UTC).isoformat()
        after = datetime.fromtimestamp(start.timestamp() - 60, UTC).isoformat()
        for query in (f"label=person&source={source}", f"zone=porch&source={source}",
                      f"after={after}&before={before}&source={source}".replace("+", "%2B")):  # fmt: skip
            assert [r["id"] for r in await api(launch, f"/api/events?{query}")] == [row["id"]], query
        for wrong in ("label=cat", "zone=garden", f"after={before}".replace("+", "%2B")):
            assert await api(launch, f"/api/events?source={source}&{wrong}") == [], wrong
        assert (await api(launch, f"/api/events/{row['id']}"))["id"] == row["id"]
        assert (await get(f"{launch.http}/api/events/nosuch"))[0] == 404
        assert (await get(f"{launch.http}/api/events?limit=501"))[0] == 400
        assert (await get(f"{launch.http}/api/events?after=yesterday"))[0] == 400
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0


async def test_a_walk_through_a_zone_is_one_row_found_by_every_filter_after_a_restart(
    tmp_path: Path, default_model: Path, broker: Any, subscriber: Collected
) -> None:
    launch = Launch(tmp_path, default_model, broker, script=[None] * 3 + ["astronaut"] * 10 + [None] * 12)
    db = f"sqlite:///{tmp_path / 'history.db'}"
    end = await one_walk(launch, subscriber, "door", db)
    await check_the_api(launch, "door", end, db)  # a new process: the row outlived the first
    with sqlite3.connect(tmp_path / "history.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_the_same_on_postgresql(tmp_path: Path, default_model: Path, broker: Any, subscriber: Collected) -> None:
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    launch = Launch(tmp_path, default_model, broker, script=[None] * 3 + ["astronaut"] * 10 + [None] * 12)
    source = f"pg-{uuid.uuid4().hex[:8]}"  # the shared database keeps other runs' rows
    end = await one_walk(launch, subscriber, source, PG_URL)
    await check_the_api(launch, source, end, PG_URL)


async def test_a_database_newer_than_the_code_is_refused_naming_both_versions(launch: Launch) -> None:
    db = launch.tmp_path / "newer.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE streamd_schema (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO streamd_schema VALUES (99)")
    daemon = await launch([launch.source(tracking={})], events={"db": f"sqlite:///{db}"})
    assert await daemon.wait(60) == 78
    stderr = daemon.stderr.decode()
    assert "events.db" in stderr and "schema version 99" in stderr and "knows up to 1" in stderr


async def test_kill_9_in_a_burst_of_writes_leaves_a_database_that_opens(tmp_path: Path) -> None:
    """Rows written as fast as the writer goes from another process, killed mid-burst: the file
    opens, passes its integrity check, and every row in it is whole."""
    db = tmp_path / "burst.db"
    script = f"""
import time
from streamd.events.store import EventStore
store = EventStore("sqlite:///{db}")
store.migrate()
print("READY", flush=True)
n = 0
while True:
    rows = [dict(id=f"{{n}}-{{i}}", track_id=i, source="s", label="person", start=time.time(), end=None,
                 top_score=0.9, zones='["a"]', lines="[]", stationary=False, snapshot=None, clip=None,
                 updated=time.time()) for i in range(200)]
    store.write(rows)
    n += 1
"""
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2]
    )
    assert writer.stdout is not None
    assert (await writer.stdout.readline()).strip() == b"READY"
    await asyncio.sleep(1.5)
    writer.send_signal(signal.SIGKILL)
    await writer.wait()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count, whole = connection.execute(
            "SELECT count(*), sum(label = 'person' AND zones = '[\"a\"]' AND top_score = 0.9) FROM events"
        ).fetchone()
    assert count > 0 and count % 200 == 0 and whole == count, (count, whole)


def recorded_porch(tmp_path: Path, model: Path, broker_port: int) -> tuple[Any, int, Path]:
    """An RTSP camera (a person walks in and out) tracked, snapshotted (no save_dir: the history
    keeps them) and recorded, into a history in tmp_path: (the camera, the HTTP port, the config)."""
    from streamd.demo.broker import free_port
    from tests.conftest import write_config
    from tests.integration.test_recording import RECORDING, camera

    rtsp = camera(tmp_path)
    port = free_port()
    source = {
        "name": "porch",
        "uri": rtsp.url,
        "read_timeout": 5.0,
        "tracking": {"max_age": 8},
        "snapshots": {},
        "recording": {"dir": tmp_path / "recordings", **RECORDING},
    }
    config = write_config(
        tmp_path / "streamd.toml", model, [source], broker_port,
        http={"listen": f"127.0.0.1:{port}"}, events={"db": f"sqlite:///{tmp_path / 'history.db'}"},
    )  # fmt: skip
    return rtsp, port, config


async def test_a_recorded_walk_has_its_snapshot_and_clip_served_as_the_files_are(
    tmp_path: Path, default_model: Path, broker: Any, subscriber: Collected
) -> None:
    """An RTSP camera, tracking, snapshots (no save_dir: the history keeps them) and recording:
    the row names both files, and the API serves the same bytes (the clip with Range)."""
    rtsp, port, config = recorded_porch(tmp_path, default_model, broker.port)
    daemon = await Streamd("run", "-c", str(config), env={"STATE_DIRECTORY": str(tmp_path / "state")}).start()
    base = f"http://127.0.0.1:{port}"
    try:
        await subscriber.wait_for(lambda c: c.on("/porch/clip/person"), 120)
        clip = subscriber.json("/porch/clip/person")[0]

        async def row_with_both() -> dict[str, Any] | None:
            status, _, body = await get(f"{base}/api/events?source=porch")
            rows = [r for r in json.loads(body) if r["track_id"] == clip["id"]] if status == 200 else []
            return rows[0] if rows and rows[0]["snapshot"] and rows[0]["clip"] else None

        row = None
        for _ in range(50):  # written within the writer's batch interval
            if (row := await row_with_both()) is not None:
                break
            await asyncio.sleep(0.2)
        assert row is not None, "the row never named its snapshot and clip"
        assert Path(row["clip"]).name == clip["file"]
        status, headers, body = await get(f"{base}/api/events/{row['id']}/snapshot.jpg")
        snapshot = await asyncio.to_thread(Path(row["snapshot"]).read_bytes)
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body == snapshot
        assert Path(row["snapshot"]).parent == tmp_path / "state" / "event-snapshots"
        assert oct(os.stat(row["snapshot"]).st_mode & 0o777) == "0o600"
        status, headers, body = await get(f"{base}/api/events/{row['id']}/clip.mp4")
        whole = await asyncio.to_thread((tmp_path / "recordings" / "porch" / clip["file"]).read_bytes)
        assert status == 200 and headers["Content-Type"] == "video/mp4" and body == whole
        status, _, part = await get_range(f"{base}/api/events/{row['id']}/clip.mp4", "bytes=100-199")
        assert status == 206 and part == whole[100:200]
    finally:
        rtsp.kill()
        daemon.signal()
        assert await daemon.wait(30) == 0


async def get_range(url: str, wanted: str) -> tuple[int, dict[str, str], bytes]:
    from tests.integration.test_recording import get as get_with_headers

    return await asyncio.to_thread(get_with_headers, url, {"Range": wanted})


@pytest.mark.slow
async def test_a_full_disk_keeps_the_pipeline_going_counts_says_why_and_writes_resume(
    launch: Launch, subscriber: Collected
) -> None:
    """RLIMIT_FSIZE (as ``prlimit --fsize``) makes every write of the history fail as on a full
    disk: detections go on, the error metric counts, after 60 s /readyz says why, and once the
    limit is lifted the waiting rows are written and the reason goes."""
    import resource

    from tests.integration.test_observability import samples, value

    db = launch.tmp_path / "history.db"
    source = launch.source(tracking={"max_age": 3}, zones=[EVERYWHERE])
    daemon = await launch([source], http=True, events={"db": f"sqlite:///{db}"})
    assert daemon.process is not None
    pid = daemon.process.pid

    async def scrape() -> dict[Any, float]:
        return samples((await get(f"{launch.http}/metrics"))[2].decode())

    try:
        await wait_ready(launch.http_port, 200)
        await until(lambda: above(scrape, "streamd_events_written_total", 0), 60)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        await until(lambda: above(scrape, "streamd_event_write_errors_total", 0, reason="OperationalError"), 60)
        before = len(subscriber.on("/cam/detections"))
        await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= before + 20, 30)  # MQTT goes on
        body = await wait_ready(launch.http_port, 503, 90, saying="event history unwritable")
        assert any("event history unwritable" in r for r in body["reasons"]), body  # type: ignore[union-attr]
        written = value(await scrape(), "streamd_events_written_total")
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        await until(lambda: above(scrape, "streamd_events_written_total", written), 30)
        body = await wait_ready(launch.http_port, 200, 30)
        await daemon.wait_for_event("events_writable", timeout=10)
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0


async def above(scrape: Any, name: str, threshold: float, **labels: str) -> bool:
    """The sample is above ``threshold`` (a series that does not exist yet counts as 0)."""
    return float((await scrape()).get((name, tuple(sorted(labels.items()))), 0.0)) > threshold


async def until(check: Any, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.5)


async def test_the_worker_service_writes_one_history_that_the_parent_answers(launch: Launch) -> None:
    db = f"sqlite:///{launch.tmp_path / 'history.db'}"
    sources = [launch.source("one", tracking={"max_age": 3}), launch.source("two", tracking={"max_age": 3})]
    daemon = await launch(sources, http=True, daemon={"workers": 2}, events={"db": db})

    async def both() -> bool:
        status, _, body = await get(f"{launch.http}/api/events?limit=500")
        return status == 200 and {row["source"] for row in json.loads(body)} == {"one", "two"}

    try:
        await wait_ready(launch.http_port, 200, 120)
        await until(both, 60)
        workers = {e.get("worker") for e in daemon.events() if e.get("event") == "events_store"}
        assert len(workers) == 2, "each worker opened the one store"
    finally:
        daemon.signal()
        assert await daemon.wait(60) == 0
