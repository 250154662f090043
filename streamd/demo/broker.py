"""A throw-away Mosquitto for the demo and the tests: its own port, its own config, no state."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Mosquitto:
    """``with Mosquitto() as broker:`` -> broker.port; stop() and start() again on the same port."""

    def __init__(
        self, port: int | None = None, settings: str = "allow_anonymous true\n", persistent: bool = False
    ) -> None:
        """``settings`` go after the listener line (auth, TLS); ``persistent`` keeps sessions and
        queued QoS>0 messages across a stop/start, like a production broker."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.binary = binary
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="streamd-mosquitto-"))
        self.conf = self.dir / "mosquitto.conf"
        persistence = f"persistence true\npersistence_location {self.dir}/\n" if persistent else "persistence false\n"
        # As root, mosquitto drops to its own user, which cannot read our private temp files.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}listener {self.port} 127.0.0.1\n{settings}{persistence}log_dest file {self.dir / 'mosquitto.log'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.dir / "mosquitto.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"mosquitto did not start on port {self.port}: {tail}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
