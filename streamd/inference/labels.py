"""Label lists: the built-in COCO names (80 contiguous ids, 91 TF/paper ids) or a file."""

from __future__ import annotations

import re
from pathlib import Path

UNSAFE_IN_TOPIC = re.compile(r"[/+#\x00-\x1f\x7f]")

COCO80 = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic_light",
    "fire_hydrant",
    "stop_sign",
    "parking_meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports_ball",
    "kite",
    "baseball_bat",
    "baseball_glove",
    "skateboard",
    "surfboard",
    "tennis_racket",
    "bottle",
    "wine_glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot_dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted_plant",
    "bed",
    "dining_table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell_phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy_bear",
    "hair_drier",
    "toothbrush",
]

# The 91-id list of the COCO paper, used by the TF Object Detection API (id 1 = person, 0 = background).
_COCO91_MISSING = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def _coco91() -> tuple[str, ...]:
    names = ["background"]
    it = iter(COCO80)
    for class_id in range(1, 91):
        names.append(f"id{class_id}" if class_id in _COCO91_MISSING else next(it))
    return tuple(n.replace("_", " ") for n in names)


COCO91 = _coco91()
COCO80_NAMES = tuple(n.replace("_", " ") for n in COCO80)

BUILTIN = {"coco": None, "coco80": COCO80_NAMES, "coco91": COCO91}


def load_labels(spec: str, default: str) -> tuple[str, ...]:
    """``coco`` means the list the decoder's format uses (``default``); a path reads one name a line."""
    if spec == "coco":
        spec = default
    builtin = BUILTIN.get(spec)
    if builtin is not None:
        return builtin
    return tuple(topic_safe(line.strip()) for line in Path(spec).expanduser().read_text().splitlines() if line.strip())


def topic_safe(label: str) -> str:
    """A label from a file becomes an MQTT topic level and part of a snapshot's file name: '/',
    '+', '#' and control characters become '_' (so ``../x`` or ``p+#`` stay inside the source's
    topics and folder), and at most 64 characters are kept."""
    safe = UNSAFE_IN_TOPIC.sub("_", label)[:64]
    return "_" if safe in ("", ".", "..") else safe


def label_of(labels: tuple[str, ...], class_id: int) -> str:
    return labels[class_id] if 0 <= class_id < len(labels) else str(class_id)
