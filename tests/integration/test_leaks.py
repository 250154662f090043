"""No secret leaves by any path (issue #32): camera passwords with '/' and '@', vendor query
keys, the broker password, fed through every log path that can fail — diagnosis, capture, MQTT
connect, ``check``, reload (accepted and rejected) — with the real camera, broker and model."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from streamd.demo.broker import Mosquitto, free_port
from tests.conftest import Streamd, write_config
from tests.integration.test_observability import wait_ready
from tests.integration.test_sources import rtsp_camera

BROKER_PASSWORD = "Br0ker-Pw-4417"
SECRETS = {
    "slashed": "Sl4sh/ed@Pw",  # #32: crashed diagnosis, the traceback carried it
    "wrong": "Wr0ng/Pass",
    "vendor": "Vend0rPas",  # ?loginpas=, a key the old list did not name
    "reload": "Rel0ad/Secret",
    "rejected": "Rej3cted-Pw",
}


def sources(dead: int, camera_port: int) -> list[dict[str, object]]:
    return [
        {"name": "slashed", "uri": f"rtsp://admin:{SECRETS['slashed']}@127.0.0.1:{dead}/x", "read_timeout": 2.0},
        {"name": "wrong", "uri": f"rtsp://admin:{SECRETS['wrong']}@127.0.0.1:{camera_port}/stream"},
        {
            "name": "vendor",
            "uri": f"http://127.0.0.1:{dead}/snapshot.cgi?loginuse=admin&loginpas={SECRETS['vendor']}&chn=1",
            "read_timeout": 2.0,
        },
    ]


async def streamd_check(config: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "streamd", "check", "-c", str(config)]
    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)


def assert_clean(*outputs: bytes | str) -> None:
    text = "".join(o.decode(errors="replace") if isinstance(o, bytes) else o for o in outputs)
    for name, secret in [*SECRETS.items(), ("broker", BROKER_PASSWORD)]:
        assert secret not in text, f"the {name} secret leaked:\n{text[-3000:]}"


async def test_no_secret_in_any_output_of_run_check_reload_and_mqtt_connect(
    tmp_path: Path, default_model: Path
) -> None:
    passwords = tmp_path / "passwd"
    await asyncio.to_thread(
        subprocess.run, ["mosquitto_passwd", "-c", "-b", str(passwords), "streamd", BROKER_PASSWORD], check=True
    )
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_text(BROKER_PASSWORD + "\n")
    camera = rtsp_camera(tmp_path, credentials="admin:right")
    dead = free_port()
    port = free_port()
    with Mosquitto(settings=f"allow_anonymous false\npassword_file {passwords}\n") as broker:
        mqtt = {"username": "streamd", "password_file": secret_file}
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            sources(dead, camera.port),
            broker.port,
            mqtt=mqtt,
            http={"listen": f"127.0.0.1:{port}"},
        )
        try:
            check = await streamd_check(config)
            assert check.returncode == 69, check.stderr
            assert "slashed          REFUSED" in check.stdout, check.stdout + check.stderr  # not a crash
            assert "wrong            AUTH FAILED (401)" in check.stdout, check.stdout
            assert "loginpas=***" in check.stdout
            assert_clean(check.stdout, check.stderr)

            daemon = await Streamd("run", "-c", str(config)).start()
            await wait_ready(port, 503, 60, saying="AUTH FAILED (401)")
            await daemon.wait_for_event("source_reconnecting", count=3)
            retries = {e["source"]: e["reason"] for e in daemon.events() if e["event"] == "source_reconnecting"}
            assert retries == {"slashed": "refused", "wrong": "auth", "vendor": "refused"}
            assert not [e for e in daemon.events() if e["event"] in ("source_crashed", "thread_crashed")]

            # A reload with a new camera, then one the config refuses (its URL's port is no port).
            fresh = {"name": "fresh", "uri": f"rtsp://u:{SECRETS['reload']}@127.0.0.1:{dead}/y", "read_timeout": 2.0}
            write_config(
                config, default_model, [*sources(dead, camera.port), fresh], broker.port, mqtt=mqtt,
                http={"listen": f"127.0.0.1:{port}"},
            )  # fmt: skip
            daemon.signal(signal.SIGHUP)
            await daemon.wait_for_event("reload_done")
            await daemon.wait_for_event("source_reconnecting", count=4)
            bad = {"name": "bad", "uri": f"rtsp://u:{SECRETS['rejected']}@127.0.0.1:99999/"}
            write_config(config, default_model, [fresh, bad], broker.port, mqtt=mqtt)
            daemon.signal(signal.SIGHUP)
            rejected = await daemon.wait_for_event("reload_rejected")
            assert "port" in rejected["error"] and rejected["key"].startswith("sources")
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(60) == 0
            assert_clean(daemon.stderr, daemon.stdout)

            # The MQTT connect path: the broker refuses the password the file holds.
            secret_file.write_text("Wr0ngBr0ker\n")
            write_config(config, default_model, sources(dead, camera.port), broker.port, mqtt=mqtt)
            refused = await Streamd("run", "-c", str(config)).start()
            assert await refused.wait(60) == 69
            assert b"Wr0ngBr0ker" not in refused.stderr
            assert_clean(refused.stderr, refused.stdout)
        finally:
            camera.kill()


async def test_an_unparsable_camera_url_is_a_config_error_naming_the_key(tmp_path: Path, default_model: Path) -> None:
    for uri, says in (
        ("rtsp://admin:pw0rd@127.0.0.1:99999/x", "port"),
        ("http://[::1/x", "IPv6"),
    ):
        config = write_config(tmp_path / "streamd.toml", default_model, [{"name": "cam", "uri": uri}], 1883)
        result = await streamd_check(config)
        assert result.returncode == 78, result.stderr
        assert 'sources["cam"].uri' in result.stderr and says in result.stderr, result.stderr
        assert "pw0rd" not in result.stdout + result.stderr
