"""``streamd quantize``: post-training INT8 quantisation of the configured model with NNCF,
calibrated on frames of the configured sources (the user's own scenes), then checked against the
FP model on held-out frames before anything is written.

Agreement is measured on what the daemon publishes: decoded detections, matched one to one by
label and IoU >= 0.5. A detection scored within ``MARGIN`` of ``model.confidence`` by one model
is a coin toss for either, so it is neither required nor held against: ``recall`` is the share of
the FP model's clear detections (score >= confidence + MARGIN) that the INT8 model also makes
(>= confidence - MARGIN), ``precision`` the same the other way round; ``agreement`` is their
harmonic mean (F1). Below ``--min-agreement`` the
model is not written (exit 1). NNCF is an optional extra: ``pip install 'streamd[quantize]'``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov

from streamd.config import Config, ModelConfig
from streamd.inference.model import PreparedModel, compile_variant, prepare
from streamd.inference.shapes import fix_shapes
from streamd.logging import get_logger
from streamd.tools.verify import reference_input
from streamd.tracking.tracker import greedy_match, iou_matrix
from streamd.types import Detection

log = get_logger(__name__)

HELD_OUT_EVERY = 4  # every 4th sampled frame is kept out of calibration, for the agreement check
MARGIN = 0.1  # score band around model.confidence where a detection counts for neither side


@dataclass
class Agreement:
    frames: int
    fp_detections: int  # clear ones (score >= confidence + MARGIN)
    int8_detections: int
    fp_found: int  # clear FP detections the INT8 model also made
    int8_found: int  # clear INT8 detections the FP model also made

    @property
    def recall(self) -> float:
        return self.fp_found / self.fp_detections if self.fp_detections else 1.0

    @property
    def precision(self) -> float:
        return self.int8_found / self.int8_detections if self.int8_detections else 1.0

    @property
    def agreement(self) -> float:
        r, p = self.recall, self.precision
        return 2 * r * p / (r + p) if r + p else 0.0


def sample_frames(config: Config, count: int) -> list[np.ndarray]:
    """Up to ``count`` decoded frames spread evenly over the configured sources (files are read
    end to end with a stride; streams give their next frames)."""
    per_source = max(1, count // len(config.sources))
    frames: list[np.ndarray] = []
    for source in config.sources:
        cap = cv2.VideoCapture(source.uri, cv2.CAP_FFMPEG)
        try:
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            stride = max(1, total // per_source) if total > 0 else 1
            taken = index = 0
            while taken < per_source:
                ok = cap.grab()
                if not ok:
                    break
                if index % stride == 0:
                    ok, image = cap.retrieve()
                    if ok:
                        frames.append(image)
                        taken += 1
                index += 1
        finally:
            cap.release()
        log.info("quantize_sampled", source=source.name, frames=taken)
    return frames


def found(clear: list[Detection], other: list[Detection]) -> int:
    """How many of ``clear`` the other model made too (same label, IoU >= 0.5, one to one)."""
    iou = iou_matrix([d.box for d in clear], [d.box for d in other])
    for i, a in enumerate(clear):
        for j, b in enumerate(other):
            if a.label != b.label:
                iou[i, j] = 0.0
    return len(greedy_match(iou, 0.5))


def detections(prepared: PreparedModel, frames: list[np.ndarray]) -> list[list[Detection]]:
    request = compile_variant(prepared, None, bare=True).compiled.create_infer_request()
    found = []
    for image in frames:
        outputs = list(request.infer(reference_input(prepared, image)).values())
        found.append(prepared.decoder.decode(outputs, image.shape[1], image.shape[0]))
    return found


def check_agreement(fp: PreparedModel, int8: PreparedModel, frames: list[np.ndarray], confidence: float) -> Agreement:
    """Both models decoded at ``confidence - MARGIN`` (see :func:`reference_config`)."""
    result = Agreement(len(frames), 0, 0, 0, 0)
    for a, b in zip(detections(fp, frames), detections(int8, frames), strict=True):
        clear_a = [d for d in a if d.score >= confidence + MARGIN]
        clear_b = [d for d in b if d.score >= confidence + MARGIN]
        result.fp_detections += len(clear_a)
        result.int8_detections += len(clear_b)
        result.fp_found += found(clear_a, b)
        result.int8_found += found(clear_b, a)
    return result


def reference_config(model: ModelConfig, path: Path | None = None) -> ModelConfig:
    """CPU, f32 where not quantised, host pre-processing: the two models differ only in weights."""
    update: dict[str, Any] = {
        "precision": "f32",
        "preprocess": "host",
        "device": "CPU",
        "cache_dir": "",
        "confidence": max(0.0, model.confidence - MARGIN),
    }
    if path is not None:
        update["path"] = path
    return model.model_copy(update=update)


def quantize(
    config: Config, frames: int, out: Path, min_agreement: float, ignore: tuple[str, ...] = ()
) -> tuple[int, dict[str, Any]]:
    try:
        import nncf  # type: ignore[import-untyped]
    except ImportError:
        print("streamd quantize needs NNCF: pip install 'streamd[quantize]'", file=sys.stderr)
        return 69, {}
    started = time.perf_counter()
    fp_config = reference_config(config.model)
    fp = prepare(fp_config)
    images = sample_frames(config, frames)
    if len(images) < 2 * HELD_OUT_EVERY:
        print(f"streamd quantize: only {len(images)} frames could be read from the sources", file=sys.stderr)
        return 66, {}
    held_out = images[::HELD_OUT_EVERY]
    calibration = [image for i, image in enumerate(images) if i % HELD_OUT_EVERY]
    # The model as read, with the static shape the daemon gives it (the decoder adapts it again
    # when the INT8 IR is loaded, as for any model).
    core = ov.Core()
    model = core.read_model(str(config.model.path))
    fix_shapes(model, config.model, wants_static=True)
    inputs = [reference_input(fp, image) for image in calibration]
    # MIXED (asymmetric activations) agreed better than the default here: 0.963 vs 0.941.
    patterns = [*type(fp.decoder).quantize_ignored, *ignore]
    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):  # its progress bars: stdout is the JSON report
        quantized = nncf.quantize(
            model,
            nncf.Dataset(inputs),
            subset_size=len(inputs),
            preset=nncf.QuantizationPreset.MIXED,
            ignored_scope=nncf.IgnoredScope(patterns=patterns, validate=False) if patterns else None,
        )
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / f"{config.model.path.stem}-int8.xml"
        ov.save_model(quantized, str(candidate))
        int8 = prepare(reference_config(config.model, candidate))
        result = check_agreement(fp, int8, held_out, config.model.confidence)
        report = {
            "model": str(config.model.path),
            "ignored": patterns,
            "calibration_frames": len(calibration),
            "held_out_frames": len(held_out),
            "fp_detections": result.fp_detections,
            "int8_detections": result.int8_detections,
            "fp_found_by_int8": result.fp_found,
            "int8_found_by_fp": result.int8_found,
            "score_margin": MARGIN,
            "recall": round(result.recall, 4),
            "precision": round(result.precision, 4),
            "agreement": round(result.agreement, 4),
            "min_agreement": min_agreement,
            "seconds": round(time.perf_counter() - started, 1),
        }
        if result.fp_detections == 0:
            report["written"] = None
            report["reason"] = "no detections in the held-out frames: nothing to judge agreement on"
            return 1, report
        if result.agreement < min_agreement:
            report["written"] = None
            report["reason"] = f"agreement {result.agreement:.3f} is below {min_agreement} (--min-agreement)"
            return 1, report
        out.mkdir(parents=True, exist_ok=True)
        target = out / candidate.name
        for suffix in (".xml", ".bin"):
            shutil.copyfile(candidate.with_suffix(suffix), target.with_suffix(suffix))
    report["written"] = str(target)
    return 0, report
