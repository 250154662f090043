"""Read a model, fix its shape, choose its pre-processing and placement, compile it.

FastDeploy's first lesson, made automatic: a GPU needs a static shape, so a model exported
with dynamic dims is reshaped to what it really receives (``model.input_shape``, else batch 1
and H/W from ``model.input_size``).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

from streamd.config import ConfigError, ModelConfig
from streamd.images import Decoded, InputTarget, decoded
from streamd.inference import placement as placement_mod
from streamd.inference.decoders import Decoder, DecoderError, Preprocessing, decoder_class
from streamd.inference.labels import load_labels
from streamd.inference.shapes import ImageInput, fix_shapes
from streamd.logging import get_logger

log = get_logger(__name__)

FORMATS = {
    ".xml": "OpenVINO IR",
    ".onnx": "ONNX",
    ".pdmodel": "PaddlePaddle",
    ".pb": "TensorFlow",
    ".tflite": "TensorFlow Lite",
}


class ModelUnavailable(Exception):
    """The model file exists but cannot be read: exit 69 (EX_UNAVAILABLE)."""


@dataclass
class PreparedModel:
    """Everything decided before the first frame: one per daemon, shared by every source."""

    config: ModelConfig
    core: ov.Core
    model: ov.Model  # reshaped and adapted, no pre-processing yet
    image: ImageInput
    decoder: Decoder
    preprocessing: Preprocessing
    preprocess_mode: str  # graph | host
    device_request: placement_mod.DeviceRequest
    read_seconds: float
    cache_dir: str
    format: str
    other_inputs: list[str] = field(default_factory=list)

    @functools.cached_property
    def name(self) -> str:  # in every payload: computed once
        return self.config.path.stem


def default_cache_dir() -> str:
    base = os.environ.get("CACHE_DIRECTORY") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base.split(":")[0]) / "streamd" / "ov-cache")


def prepare(cfg: ModelConfig, core: ov.Core | None = None) -> PreparedModel:
    """Read + reshape + adapt the model; no device work yet (that is :func:`compile_variant`)."""
    core = core or ov.Core()
    request = placement_mod.DeviceRequest.parse(cfg.device)
    started = time.perf_counter()
    try:
        model = core.read_model(str(cfg.path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with C++ text
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(f"cannot read model {cfg.path}: {first}") from exc
    read_seconds = time.perf_counter() - started
    try:
        decoder_cls = decoder_class(cfg.decoder, model)
        decoder = decoder_cls(load_labels(cfg.labels, decoder_cls.default_labels), cfg.confidence)
    except (DecoderError, OSError) as exc:
        raise ConfigError("model.decoder" if isinstance(exc, DecoderError) else "model.labels", str(exc)) from None
    if cfg.top_k and hasattr(decoder, "top_k"):
        decoder.top_k = cfg.top_k
    image = fix_shapes(model, cfg, request.wants_static_shapes)
    model = decoder.adapt(model)
    base = decoder_cls.preprocessing
    pre = Preprocessing(
        color_order=cfg.color_order or base.color_order,
        mean=tuple(cfg.mean) if cfg.mean is not None else base.mean,
        scale=tuple(cfg.scale) if cfg.scale is not None else base.scale,
    )
    mode = cfg.preprocess
    if mode == "auto":
        # Measured on a 2-core CPU: in-graph resize costs ~18 % of throughput, host cv2 releases the
        # GIL and overlaps with inference. On a GPU the graph moves that work off the host.
        mode = (
            "graph"
            if request.wants_static_shapes
            and any(
                placement_mod.is_present(d, core.available_devices)
                for d in request.devices
                if placement_mod.family(d) != "CPU"
            )
            else "host"
        )
    cache_dir = default_cache_dir() if cfg.cache_dir is None else cfg.cache_dir
    return PreparedModel(
        config=cfg,
        core=core,
        model=model,
        image=image,
        decoder=decoder,
        preprocessing=pre,
        preprocess_mode=mode,
        device_request=request,
        read_seconds=read_seconds,
        cache_dir=cache_dir,
        format=FORMATS.get(cfg.path.suffix.lower(), cfg.path.suffix),
        other_inputs=[i.get_any_name() for i in model.inputs if i.get_any_name() != image.name],
    )


def input_target(prepared: PreparedModel) -> InputTarget | None:
    """What :func:`frame_preparer` scales a picture to: ((width, height), RGB?), or None where
    it passes the whole frame (the graph resizes, or the network's size is not fixed)."""
    image = prepared.image
    if prepared.preprocess_mode != "host" or not image.static:
        return None
    return (int(image.size[0]), int(image.size[1])), prepared.preprocessing.color_order == "RGB"


def frame_preparer(prepared: PreparedModel) -> Callable[[Decoded | np.ndarray], np.ndarray]:
    """What is done to a decoded picture before it meets the compiled model (the graph does the
    rest, see :func:`with_preprocessing`): in host mode, scaled to the network's size and put in
    its colour order in one step from the decoder's planes (``images.Decoded.scaled``)."""
    image = prepared.image
    host = prepared.preprocess_mode == "host"
    size = image.size if host and image.static else None
    to_rgb = host and prepared.preprocessing.color_order == "RGB"

    def prepare_frame(picture: Decoded | np.ndarray) -> np.ndarray:
        frame = decoded(picture)  # a BGR array (a test, a tool) or a decoder's picture
        if size is not None:
            return frame.scaled((int(size[0]), int(size[1])), to_rgb)[np.newaxis]
        image = frame.bgr()
        if to_rgb:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return image[np.newaxis]

    return prepare_frame


def with_preprocessing(prepared: PreparedModel, frame_size: tuple[int, int] | None) -> ov.Model:
    """The model with PrePostProcessor steps: u8 NHWC frames in, untouched.

    ``frame_size`` (width, height) is the size frames arrive in; the graph resizes them to the
    network's size. ``None`` means the host already resized them. Frames are BGR as OpenCV
    decodes them, except in host mode, where the reader already gave them the network's order.
    """
    image = prepared.image
    model = prepared.model.clone()
    ppp = PrePostProcessor(model)
    port = ppp.input(image.name)
    net_w, net_h = image.size
    width, height = frame_size if frame_size is not None else (net_w, net_h)
    pre = prepared.preprocessing
    # Host mode converts the colour in the reader thread with the resize (cv2: ~20 us at
    # 300x300); in the graph a ConvertColor node cost 3-7 % of the model's throughput here.
    colour_on_host = prepared.preprocess_mode == "host" and pre.color_order == "RGB"
    tensor = port.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    tensor.set_color_format(ColorFormat.RGB if colour_on_host else ColorFormat.BGR)
    if width > 0 and height > 0:
        tensor.set_shape([1, height, width, 3])
    else:
        tensor.set_spatial_dynamic_shape()
    port.model().set_layout(ov.Layout(image.layout))
    steps = port.preprocess()
    if (width, height) != (net_w, net_h) and net_w > 0:
        steps.resize(ResizeAlgorithm.RESIZE_LINEAR)
    if pre.color_order == "RGB" and not colour_on_host:
        steps.convert_color(ColorFormat.RGB)
    if image.element_type != ov.Type.u8 or pre.mean or pre.scale:
        steps.convert_element_type(ov.Type.f32)
    if pre.mean:
        steps.mean(list(pre.mean))
    if pre.scale:
        steps.scale(list(pre.scale))
    return ppp.build()


@dataclass
class CompiledVariant:
    compiled: ov.CompiledModel
    placement: placement_mod.Placement
    frame_size: tuple[int, int] | None
    seconds: float
    requests: int
    precision: dict[str, str] = field(default_factory=dict)  # effective, per device

    @property
    def precision_label(self) -> str:
        """One string for logs and metric labels: ``bf16``, or ``GPU=f16,CPU=f32`` when they differ."""
        values = set(self.precision.values())
        if len(values) == 1:
            return values.pop()
        return ",".join(f"{d}={p}" for d, p in self.precision.items()) or "unknown"


_TYPE_NAMES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "f32": "f32", "bf16": "bf16", "f16": "f16"}


def _precision_name(value: Any) -> str:
    name = value.get_type_name() if isinstance(value, ov.Type) else str(value)
    return _TYPE_NAMES.get(name, name)


def effective_precision(compiled: ov.CompiledModel, device: str) -> dict[str, str]:
    """What each device really computes in, read back from the compiled model (not the request:
    ``auto`` means bf16 on some CPUs and f32 on others). HETERO reports it per device."""
    try:
        return {device: _precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))}
    except RuntimeError:
        pass
    found: dict[str, str] = {}
    try:
        per_device = compiled.get_property("DEVICE_PROPERTIES")
    except RuntimeError:
        return found
    for device, props in dict(per_device).items():
        if isinstance(props, dict) and "INFERENCE_PRECISION_HINT" in props:
            found[str(device)] = _precision_name(props["INFERENCE_PRECISION_HINT"])
    return found


def compile_variant(
    prepared: PreparedModel, frame_size: tuple[int, int] | None, *, bare: bool = False
) -> CompiledVariant:
    """Place and compile; blocking (seconds), so the daemon calls it in a worker thread.

    ``bare`` compiles the network without pre-processing (the bench's ceiling)."""
    cfg = prepared.config
    model = prepared.model.clone() if bare else with_preprocessing(prepared, frame_size)
    placed = placement_mod.plan(prepared.core, model, cfg.device, cfg.cpu_operators, cfg.fallback_device)
    if placed.heterogeneous:
        placement_mod.apply(model, placed)
    config: dict[str, Any] = {"PERFORMANCE_HINT": cfg.performance_hint}
    if cfg.precision != "auto":
        config["INFERENCE_PRECISION_HINT"] = cfg.precision  # HETERO forwards it to every device
    if cfg.threads:
        # The CPU plugin already keeps to the process's affinity mask (a worker's cores); this
        # bounds its threads (and so its streams) explicitly. HETERO forwards it as well.
        config["INFERENCE_NUM_THREADS"] = cfg.threads
    if prepared.cache_dir:
        Path(prepared.cache_dir).mkdir(parents=True, exist_ok=True)
        prepared.core.set_property({"CACHE_DIR": prepared.cache_dir})
    started = time.perf_counter()
    try:
        compiled = prepared.core.compile_model(model, placed.device, config)
    except RuntimeError as exc:  # OpenVINO's C++ message: its last line says what failed
        lines = str(exc).strip().splitlines()
        raise ModelUnavailable(f"cannot compile for {placed.device}: {lines[-1] if lines else exc}") from exc
    seconds = time.perf_counter() - started
    # Four times the optimum: half the pool keeps every stream with a request running and one
    # queued while the loop hands results over (1x: ~0.78 of the ceiling, 2x: ~0.9), and the
    # engine takes results in batches of up to the other half (``engine.py``).
    requests = cfg.infer_requests or 4 * int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    prepared.decoder.bind(compiled.outputs, prepared.image.size)
    precision = effective_precision(compiled, placed.device)
    return CompiledVariant(compiled, placed, frame_size, seconds, max(1, requests), precision)
