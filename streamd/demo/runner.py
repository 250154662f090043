"""``streamd demo``: everything set up by itself, then the daemon's real job on the demo clip."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
from importlib import resources
from pathlib import Path

import aiomqtt

from streamd.config_file import load_config
from streamd.daemon import Daemon
from streamd.demo.broker import Mosquitto, port_open
from streamd.demo.clip import demo_script, make_clip
from streamd.demo.model import data_dir, ensure_default_model
from streamd.logging import configure, get_logger

log = get_logger(__name__)


def prepare_demo(realtime: bool, mqtt_host: str, mqtt_port: int) -> Path:
    root = data_dir()
    model = ensure_default_model(root)
    clip = root / "demo" / "people.mp4"
    if not clip.is_file():
        clip.parent.mkdir(parents=True, exist_ok=True)
        make_clip(clip, demo_script())
    template = resources.files("streamd.demo").joinpath("demo.toml").read_text()
    config = root / "demo" / "streamd.toml"
    config.write_text(
        template.format(data=root, realtime=str(realtime).lower(), mqtt_host=mqtt_host, mqtt_port=mqtt_port)
    )
    log.info("demo_prepared", model=str(model), clip=str(clip), config=str(config))
    return config


async def _print_messages(host: str, port: int, ready: asyncio.Event) -> None:
    async with aiomqtt.Client(host, port, identifier="streamd-demo-viewer") as client:
        await client.subscribe("streamd/demo/#", qos=1)
        ready.set()
        async for message in client.messages:
            topic = str(message.topic)
            # Retained messages are what an earlier run left on the broker: say so.
            topic += "  (retained)" if message.retain else ""
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if "/detections" in topic:
                body = json.loads(payload)
                found = ", ".join(
                    f"{d['label']} {d['score']:.2f} at {[int(v) for v in d['box']]}" for d in body["detections"]
                )
                print(
                    f"{topic}  frame {body['frame']:>4}  {body['ts']}  {body['latency_ms']:6.1f} ms  {found}",
                    flush=True,
                )
            elif "/stats" not in topic:
                print(f"{topic}  {payload.decode()}", flush=True)


async def _demo(config_path: Path, host: str, port: int) -> int:
    config = load_config(config_path)
    ready = asyncio.Event()
    viewer = asyncio.create_task(_print_messages(host, port, ready))
    await asyncio.wait_for(ready.wait(), 10)
    code = await Daemon(config, functools.partial(load_config, config_path)).serve()
    await asyncio.sleep(0.5)  # let the last messages reach the viewer
    viewer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await viewer
    return code


def run_demo(fast: bool = False, prepare_only: bool = False) -> int:
    configure("console", "info")
    broker: Mosquitto | None = None
    host, port = "127.0.0.1", 1883
    if not port_open(host, port):
        broker = Mosquitto().start()
        port = broker.port
        log.info("demo_broker_started", port=port, reason="nothing answers on 127.0.0.1:1883")
    try:
        config = prepare_demo(realtime=not fast, mqtt_host=host, mqtt_port=port)
        if prepare_only:
            print(config)
            return 0
        print(f"# streamd demo: subscribed to streamd/demo/# on {host}:{port}; config {config}", file=sys.stderr)
        return asyncio.run(_demo(config, host, port))
    finally:
        if broker is not None:
            broker.stop()
