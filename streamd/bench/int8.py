"""``streamd bench --compare-int8 IR``: the configured (FP) model against its INT8 version from
``streamd quantize``, in the same run: benchmark_app and pipeline FPS in alternating rounds, and
detection agreement on the same frames (see quantize.py for how agreement is counted)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from streamd.bench.model import run_benchmark_app
from streamd.bench.pipeline import run_pipeline
from streamd.config import Config, is_file_uri
from streamd.inference.model import compile_variant, prepare
from streamd.tools.quantize import check_agreement, reference_config, sample_frames


def run_compare_int8(config: Config, int8_path: Path, frames: int, rounds: int) -> dict[str, Any]:
    int8_config = config.model_copy(update={"model": config.model.model_copy(update={"path": int8_path})})
    fp_f32 = config.model.model_copy(update={"precision": "f32"})
    arms = {"fp": config, "int8": int8_config}
    bare: dict[str, list[float]] = {"fp": [], "fp_f32": [], "int8": []}
    pipeline: dict[str, list[float]] = {"fp": [], "int8": []}
    precision = {}
    for name, model in (("fp", config.model), ("int8", int8_config.model)):
        variant = compile_variant(prepare(model), None, bare=True)
        precision[name] = variant.precision_label
        del variant
    for index in range(1, rounds + 1):
        for name, arm in arms.items():
            prepared = prepare(arm.model)
            found = run_benchmark_app(prepared, "CPU")
            if found is not None:
                bare[name].append(found)
            run = run_pipeline(arm, frames, f"{name} pipeline {index}/{rounds}")
            pipeline[name].append(round(run.fps, 1))
        found = run_benchmark_app(prepare(fp_f32), "CPU")
        if found is not None:
            bare["fp_f32"].append(found)
    files = [s for s in config.sources if is_file_uri(s.uri)]
    images = sample_frames(config.model_copy(update={"sources": files}), 200)
    agreement = check_agreement(
        prepare(reference_config(config.model)),
        prepare(reference_config(config.model, int8_path)),
        images,
        config.model.confidence,
    )

    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 1) if values else None

    report: dict[str, Any] = {
        "fp_model": str(config.model.path),
        "int8_model": str(int8_path),
        "fp_precision": precision["fp"],
        "benchmark_app_fps": {k: median(v) for k, v in bare.items()},
        "benchmark_app_rounds": bare,
        "pipeline_fps": {k: median(v) for k, v in pipeline.items()},
        "pipeline_rounds": pipeline,
        "agreement": {
            "frames": agreement.frames,
            "fp_detections": agreement.fp_detections,
            "int8_detections": agreement.int8_detections,
            "recall": round(agreement.recall, 4),
            "precision": round(agreement.precision, 4),
            "f1": round(agreement.agreement, 4),
        },
    }
    fps = report["benchmark_app_fps"]
    if fps["fp"] and fps["int8"]:
        report["int8_speedup_vs_fp"] = round(fps["int8"] / fps["fp"], 3)
    if fps["fp_f32"] and fps["int8"]:
        report["int8_speedup_vs_fp_f32"] = round(fps["int8"] / fps["fp_f32"], 3)
    if pipeline["fp"] and pipeline["int8"]:
        report["pipeline_speedup"] = round(statistics.median(pipeline["int8"]) / statistics.median(pipeline["fp"]), 3)
    return report
