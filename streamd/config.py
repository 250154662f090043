"""One validated Config object, read from TOML and overridden by ``STREAMD_*`` variables.

Every error is reported as ``key.path: what is wrong`` so an operator can fix it without a
traceback; the CLI turns :class:`ConfigError` into exit code 78 (EX_CONFIG).
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from streamd.config_objects import MAX_NAME, Polygon, Strict, topic_name
from streamd.events.config import EventsConfig
from streamd.filters.config import ObjectFilter
from streamd.recording.config import RecordingConfig
from streamd.redact import CameraUrlError, parse_camera_url, redact_uri
from streamd.snapshots.config import SnapshotConfig
from streamd.sources.motion_config import MotionConfig
from streamd.tracking.config import LineConfig, TrackingConfig, ZoneConfig
from streamd.web.config import HttpConfig, MetricsConfig, well_formed

DEFAULT_CONFIG_PATH = Path("/etc/streamd/streamd.toml")


class ConfigError(Exception):
    """A configuration problem an operator can fix; ``key`` is the dotted path at fault.

    ``also`` carries the other problems found in the same pass, so an operator fixes them all
    in one edit; ``lines()`` gives one line each, the first one's first."""

    def __init__(self, key: str, message: str, also: list[ConfigError] | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message
        self.also = also or []

    def lines(self) -> list[str]:
        return [str(self)] + [str(other) for other in self.also]


def _default_instance() -> str:
    host = socket.gethostname().split(".")[0].lower()
    return re.sub(r"[^a-z0-9_-]", "-", host) or "streamd"


Device = Annotated[str, Field(min_length=1, pattern=r"^[A-Z][A-Z0-9_.:,]*$")]


class ModelConfig(Strict):
    path: Path
    decoder: Literal["auto", "tf-od", "ssd", "yolo", "paddle-det", "classification"] = "auto"
    labels: str = "coco"
    # [width, height] the model sees; dynamic H/W are filled from it.
    input_size: tuple[Annotated[int, Field(gt=0, le=8192)], Annotated[int, Field(gt=0, le=8192)]] = (300, 300)
    # Per input; -1 keeps a dimension dynamic (CPU only: models like PP-OCR whose size must vary).
    input_shape: dict[str, list[int]] | None = None
    device: Device = "HETERO:GPU,CPU"
    cpu_operators: list[str] = Field(default_factory=lambda: ["MulticlassNms", "NonMaxSuppression", "MatrixNms"])
    fallback_device: Device = "CPU"
    performance_hint: Literal["THROUGHPUT", "LATENCY", "CUMULATIVE_THROUGHPUT"] = "THROUGHPUT"
    # INFERENCE_PRECISION_HINT. "auto" is the plugin's choice: bf16 on CPUs with avx512_bf16/AMX,
    # which changes scores a little; "f32" gives the same numbers on every x86-64 CPU.
    precision: Literal["auto", "f32", "bf16", "f16"] = "auto"
    # Empty string turns the compiled-blob cache off; None picks $CACHE_DIRECTORY or ~/.cache.
    cache_dir: str | None = None
    preprocess: Literal["auto", "graph", "host"] = "auto"
    confidence: float = Field(default=0.4, ge=0.0, le=1.0)
    # What the network expects; None means "the decoder's convention".
    color_order: Literal["RGB", "BGR"] | None = None
    mean: list[float] | None = None
    scale: list[float] | None = None
    infer_requests: int = Field(default=0, ge=0, le=64)  # 0 = 4 x OPTIMAL_NUMBER_OF_INFER_REQUESTS
    # INFERENCE_NUM_THREADS; 0 = every core this process may use (a worker: its own cores).
    threads: int = Field(default=0, ge=0, le=4096)
    top_k: int = Field(default=5, gt=0, le=1000)  # classification decoder

    @field_validator("path")
    @classmethod
    def _model_exists(cls, value: Path) -> Path:
        value = value.expanduser()
        if not value.is_file():
            raise ValueError(
                f"model file not found: {value.resolve()} (the default person detector: `python -m "
                "streamd.demo.model` fetches and converts it into ~/.cache/streamd/models/)"
            )
        return value

    @field_validator("input_shape")
    @classmethod
    def _static_dims(cls, value: dict[str, list[int]] | None) -> dict[str, list[int]] | None:
        for name, dims in (value or {}).items():
            if not dims or any(d <= 0 and d != -1 for d in dims):
                raise ValueError(f"input {name!r}: dimensions are positive integers (-1: keep dynamic), got {dims}")
        return value


class SourceConfig(Strict):
    name: str
    uri: str
    max_fps: float = Field(default=0.0, ge=0.0, le=1000.0)
    realtime: bool = True
    loop: bool = False
    # Default: "block" for files read as fast as possible (lossless: nothing to catch up with),
    # "oldest" for live sources and paced files (latency stays bounded).
    drop: Literal["oldest", "newest", "block"] = "oldest"
    speed: float = Field(default=1.0, ge=0.01, le=100.0)  # realtime files: 2.0 plays twice as fast
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    # Seconds an open or a read may stall before it counts as a disconnect (then: reconnect).
    read_timeout: float = Field(default=10.0, gt=0.0, le=600.0)
    # FFmpeg decoder threads for this source; 0 = by the picture's size: 1 up to 1280x720 (frame
    # threads cost CPU per frame), 2 above (FFmpeg's own default, a thread per core, made ~600
    # threads for 16 sources on 16 cores).
    decode_threads: int = Field(default=0, ge=0, le=64)
    # Where the video is decoded: "cpu", "auto" (the first hardware device FFmpeg can open, else
    # the CPU) or a PyAV device type ("cuda", "qsv", "vaapi"...); an absent one falls back to the CPU.
    decode: str = Field(default="cpu", pattern=r"^[a-z0-9_]+$", max_length=32)
    # Where it is decoded and converted: "process", a decoder process of its own (out of the
    # daemon's GIL: 1.35x the frames with a free model), "thread", the reader thread, or "auto":
    # a process when it decodes on the CPU, the thread when on a hardware device (NVDEC in the
    # thread cost less CPU per frame than in a process; benchmarks/README.md). A source that
    # records, and a V4L2 camera, are read in the thread.
    decode_in: Literal["auto", "process", "thread"] = "auto"
    tracking: TrackingConfig | None = None  # None: off, the pipeline does no tracking work
    zones: list[ZoneConfig] = Field(default_factory=list)
    lines: list[LineConfig] = Field(default_factory=list)
    filters: dict[str, ObjectFilter] = Field(default_factory=dict)  # per label
    # Detections standing (anchor: bottom centre) inside one of these are discarded.
    object_masks: list[Polygon] = Field(default_factory=list)
    snapshots: SnapshotConfig | None = None  # None: off; needs tracking
    motion: MotionConfig | None = None  # None: every frame is inferred
    recording: RecordingConfig | None = None  # None: off; clips around tracks, needs tracking

    @model_validator(mode="before")
    @classmethod
    def _default_drop(cls, data: Any) -> Any:
        if isinstance(data, dict) and "drop" not in data and isinstance(data.get("uri"), str):
            unpaced_file = is_file_uri(data["uri"]) and data.get("realtime", True) is False
            data = {**data, "drop": "block" if unpaced_file else "oldest"}
        return data

    @property
    def takes_snapshots(self) -> bool:
        """Snapshots are taken per tracked object: the one place that rule is written (the
        validator below refuses ``snapshots`` without ``tracking``)."""
        return self.snapshots is not None and self.tracking is not None

    @model_validator(mode="after")
    def _zones_need_tracking(self) -> SourceConfig:
        if (self.zones or self.lines) and self.tracking is None:
            raise ValueError("zones and lines follow tracked objects: add [sources.tracking] to this source")
        names = [z.name for z in self.zones] + [line.name for line in self.lines]
        if len(names) != len(set(names)):
            raise ValueError("zone and line names must be unique within a source")
        if self.snapshots is not None and not self.takes_snapshots:
            raise ValueError("snapshots are taken per tracked object: add [sources.tracking] to this source")
        if self.recording is not None and self.tracking is None:
            raise ValueError("recording makes a clip per tracked object: add [sources.tracking] to this source")
        if self.recording is not None and self.uri.startswith("/dev/video"):
            raise ValueError(
                "recording keeps the camera's compressed stream, and a V4L2 device sends raw frames: "
                "record from the camera's RTSP stream instead (encoding raw frames is not supported)"
            )
        zones = {z.name for z in self.zones}
        for label, rule in self.filters.items():
            if (rule.threshold or rule.required_zones) and self.tracking is None:
                raise ValueError(
                    f"filters.{label}: threshold and required_zones apply to tracks: add [sources.tracking]"
                )
            unknown = [z for z in rule.required_zones if z not in zones]
            if unknown:
                raise ValueError(f"filters.{label}.required_zones: no zone named {', '.join(map(repr, unknown))}")
        return self

    _name = field_validator("name")(classmethod(lambda cls, v: topic_name(v)))

    @field_validator("uri")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        """A camera URL that cannot be parsed is refused here, naming the key, not by a reader
        thread at its first reconnect (whose traceback would carry the password)."""
        if "://" in value:
            try:
                parse_camera_url(value)
            except CameraUrlError as exc:
                raise ValueError(f"{exc}: {redact_uri(value)}") from None
        return value


def _default_queue_bytes() -> int:
    """An eighth of the machine's memory, at most 1 GiB: frames waiting never crowd out the rest."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        physical = 4 << 30
    return int(min(1 << 30, physical // 8))


class QueueConfig(Strict):
    size: int = Field(default=64, gt=0, le=100_000)  # frames kept per source while inference is busy
    # All sources together, in bytes of frame data: memory stays bounded whatever the number of
    # sources (past it, the oldest frame of the source holding the most is dropped; 'block'
    # readers wait).
    max_bytes: int = Field(default_factory=_default_queue_bytes, ge=1 << 20, le=1 << 40)


class TlsConfig(Strict):
    ca: str = ""
    cert: str = ""
    key: str = ""


class MqttConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, gt=0, lt=65536)
    topic_prefix: str = "streamd"
    instance: str = Field(default_factory=_default_instance)
    qos: Literal[0, 1, 2] = 1
    username: str = ""
    password_file: str = ""
    tls: TlsConfig = Field(default_factory=TlsConfig)
    buffer: int = Field(default=10000, gt=0, le=10_000_000)
    # Where messages wait while the broker is away: None = $STATE_DIRECTORY (systemd) or
    # ~/.local/state/streamd; "" = memory only (lost on restart).
    buffer_dir: str | None = None
    publish_empty: bool = False
    publish_detections: bool = True  # per-frame messages; events (tracking) are published either way
    payload: Literal["compact", "full"] = "compact"  # full adds per-frame timings
    keepalive: int = Field(default=30, ge=5, le=65535)  # MQTT carries it in 16 bits
    # Default streamd-{instance}; worker processes add -w{index} (each its own session and buffer).
    client_id: str = Field(default="", max_length=128)
    discovery: bool = False  # Home Assistant MQTT discovery: a binary sensor per source and label
    discovery_prefix: str = "homeassistant"
    discovery_labels: list[str] = Field(default_factory=lambda: ["person"])
    presence_off_delay: float = Field(default=3.0, ge=0, le=86400)  # seconds without a detection before OFF
    # {source}/detect/set and {source}/snapshots/set accept ON / OFF (see control.py).
    control: bool = True
    remember_switches: bool = False  # keep them across restarts (a file beside the buffer)

    @model_validator(mode="after")
    def _switches_need_a_directory(self) -> MqttConfig:
        if self.remember_switches and self.buffer_dir == "":
            raise ValueError('remember_switches keeps them in the state directory: set buffer_dir (not "")')
        return self

    @property
    def identity(self) -> str:
        """The MQTT client id; it also names the buffer file, so two clients never share one."""
        return self.client_id or f"streamd-{self.instance}"

    @field_validator("topic_prefix", "instance")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not value or any(c in value for c in "+#/") or value != value.strip():
            raise ValueError("must be non-empty with no '+', '#', '/' or surrounding spaces")
        if not value.isprintable():
            raise ValueError("must not contain control characters (it is part of topics and the buffer's file name)")
        if len(value) > MAX_NAME:
            raise ValueError(f"at most {MAX_NAME} characters (it is part of topics and the buffer's file name)")
        return value


class LogConfig(Strict):
    format: Literal["json", "console", "auto"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class DaemonConfig(Strict):
    shutdown_timeout: float = Field(default=10.0, gt=0, le=3600)
    stats_interval: float = Field(default=10.0, ge=1.0, le=86400)
    # Worker processes, each a whole pipeline for its share of the sources on its own cores:
    # "auto" = one per 4 cores this process may use (1 below 8 cores), at most one per source.
    workers: Literal["auto"] | Annotated[int, Field(ge=1, le=256)] = "auto"


class Config(Strict):
    model: ModelConfig
    sources: list[SourceConfig] = Field(min_length=1)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_metrics_listen(cls, data: Any) -> Any:
        """``metrics.listen`` (before 0.8.0) still sets the server's address unless ``http.listen`` does."""
        metrics, http = (data.get(k) if isinstance(data, dict) else None for k in ("metrics", "http"))
        if isinstance(metrics, dict) and isinstance(metrics.get("listen"), str) and well_formed(metrics["listen"]):
            http = dict(http) if isinstance(http, dict) else {}
            http.setdefault("listen", metrics["listen"])
            data = {**data, "http": http}
        return data

    @model_validator(mode="after")
    def _unique_sources(self) -> Config:
        seen: set[str] = set()
        for source in self.sources:
            if source.name in seen:
                raise ValueError(f"duplicate source name {source.name!r}")
            seen.add(source.name)
        return self


def is_file_uri(uri: str) -> bool:
    """A path to a file (finite, seekable), as opposed to a stream URL or a V4L2 device."""
    return "://" not in uri and not uri.startswith("/dev/video")
