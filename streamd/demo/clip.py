"""Clips made from scikit-image's photos: people (astronaut, camera) and no people (cat, coffee).

Used by the demo and by the tests, which know the ground truth of every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PERSON_PHOTOS = ("astronaut", "camera")
OTHER_PHOTOS = ("chelsea", "coffee")


def photo(name: str, size: int) -> np.ndarray:
    """A scikit-image photo as BGR u8, square, ``size`` pixels a side."""
    image = _scikit_image_photo(name)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    side = min(image.shape[:2])
    image = image[:side, :side]
    resized: np.ndarray = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    bgr: np.ndarray = cv2.cvtColor(resized, cv2.COLOR_RGB2BGR)
    return bgr


def _scikit_image_photo(name: str) -> np.ndarray:
    """RGB (or grey) as ``skimage.data.<name>()`` returns it. Without scikit-image installed (the
    demo installs only what it runs: scikit-image brings SciPy, ~230 MB), the four PNGs are taken
    from its wheel, downloaded once with ``pip download --no-deps`` and never installed."""
    try:
        from skimage import data
    except ImportError:
        path = _photo_file(name)
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise RuntimeError(f"cannot read {path}") from None
        converted: np.ndarray = image if image.ndim == 2 else cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
        return converted
    loaded: np.ndarray = getattr(data, name)()
    return loaded


def _photo_file(name: str) -> Path:
    import subprocess
    import sys
    import tempfile
    import zipfile

    from streamd.demo.model import data_dir

    folder = data_dir() / "photos"
    path = folder / f"{name}.png"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            wanted = ["scikit-image>=0.22", "--only-binary=:all:", "-d", tmp]
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *wanted], check=True)
            wheel = next(Path(tmp).glob("scikit_image-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                for photo_name in (*PERSON_PHOTOS, *OTHER_PHOTOS):
                    (folder / f"{photo_name}.png").write_bytes(zf.read(f"skimage/data/{photo_name}.png"))
    return path


@dataclass(frozen=True)
class ClipFrame:
    index: int
    photo: str | None  # what was pasted, None for a blank frame
    box: tuple[int, int, int, int] | None  # x1, y1, x2, y2 of the pasted photo

    @property
    def has_person(self) -> bool:
        return self.photo in PERSON_PHOTOS


def make_clip(
    path: Path,
    script: list[str | None],
    size: tuple[int, int] = (640, 480),
    fps: float = 15.0,
    photo_size: int = 280,
    fourcc: str = "mp4v",
) -> list[ClipFrame]:
    """Write one frame per ``script`` entry (a photo name or None) on a grey background.

    The photo slides left to right so consecutive boxes differ, as in a real scene.
    """
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with fourcc {fourcc}")
    photos = {name: photo(name, photo_size) for name in set(script) if name}
    truth = []
    span = max(1, width - photo_size)
    for index, name in enumerate(script):
        frame = np.full((height, width, 3), 128, dtype=np.uint8)
        box = None
        if name:
            x = int(span * index / max(1, len(script) - 1))
            y = (height - photo_size) // 2
            frame[y : y + photo_size, x : x + photo_size] = photos[name]
            box = (x, y, x + photo_size, y + photo_size)
        writer.write(frame)
        truth.append(ClipFrame(index, name, box))
    writer.release()
    return truth


def demo_script(repeats: int = 4) -> list[str | None]:
    """People, a cat, coffee and empty frames, in runs like a real doorway camera sees."""
    runs: list[str | None] = []
    for _ in range(repeats):
        runs += ["astronaut"] * 30 + [None] * 10 + ["chelsea"] * 20 + ["camera"] * 30 + ["coffee"] * 20
    return runs


def make_scene_clip(
    path: Path,
    scenes: list[list[tuple[str, int, int]]],
    size: tuple[int, int] = (640, 480),
    fps: float = 15.0,
    photo_size: int = 280,
) -> None:
    """One frame per scene: each (photo, x, y) pasted at that top-left corner; [] is a blank frame."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    photos = {name: photo(name, photo_size) for scene in scenes for name, _, _ in scene}
    for scene in scenes:
        frame = np.full((height, width, 3), 128, dtype=np.uint8)
        for name, x, y in scene:
            frame[y : y + photo_size, x : x + photo_size] = photos[name]
        writer.write(frame)
    writer.release()


def make_quiet_clip(
    path: Path, frames: int = 600, fps: float = 15.0, passing: float = 0.1, size: tuple[int, int] = (640, 480)
) -> list[bool]:
    """What most cameras show most of the time: a static scene with sensor noise, where a person
    walks across once, for ``passing`` of the clip. Returns, per frame, whether a person is in it."""
    width, height = size
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(60, 200, (height, width, 3), dtype=np.uint8), (0, 0), 6)
    person = photo("camera", height // 2)
    side = person.shape[0]
    walk = max(2, int(frames * passing))
    start = (frames - walk) // 2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    truth = []
    for index in range(frames):
        frame = scene.copy()
        step = index - start
        present = 0 <= step < walk
        if present:
            x = int(step * (width - side) / (walk - 1))
            frame[height // 4 : height // 4 + side, x : x + side] = person
        noise = rng.normal(0, 3, frame.shape)
        writer.write(np.clip(frame + noise, 0, 255).astype(np.uint8))
        truth.append(present)
    writer.release()
    return truth


def main() -> None:
    """``python -m streamd.demo.clip OUT [--size WxH] [--h264] [--repeats N]``: a bench or test clip."""
    import argparse
    import shutil
    import subprocess
    import tempfile

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="640x480", help="WxH (default %(default)s)")
    parser.add_argument("--h264", action="store_true", help="encode H.264 with ffmpeg/libx264 (yuv420p)")
    parser.add_argument("--repeats", type=int, default=4, help="demo script repeats (110 frames each)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    scale = min(width / 640, height / 480)
    if not args.h264:
        make_clip(args.out, demo_script(args.repeats), (width, height), photo_size=int(280 * scale))
        return
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("--h264 needs the ffmpeg binary (Debian: apt-get install ffmpeg)")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.avi"
        make_clip(raw, demo_script(args.repeats), (width, height), photo_size=int(280 * scale), fourcc="MJPG")
        subprocess.run(
            [
                ffmpeg,
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(raw),
                "-c:v",
                "libx264",
                "-preset",
                "medium",
                "-crf",
                "23",
                "-pix_fmt",
                "yuv420p",
                str(args.out),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
