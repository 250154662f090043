"""Which device runs which operator: FastDeploy's ``set_openvino_cpu_operators``, made automatic.

HETERO honours the node rt_info ``"affinity"`` only when *every* node has one, so the plan
assigns all of them: each node goes to the first listed device that supports it
(``Core.query_model``), operator types the GPU cannot run are pinned to the CPU, and devices
that are not on this machine are dropped (falling back to ``model.fallback_device``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import openvino as ov

STATIC_SHAPE_DEVICES = ("GPU", "NPU")


class PlacementError(Exception):
    pass


@dataclass(frozen=True)
class DeviceRequest:
    """``HETERO:GPU,CPU`` -> mode ``HETERO``, devices ``[GPU, CPU]``; ``CPU`` -> mode ``""``."""

    mode: str
    devices: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> DeviceRequest:
        mode, sep, rest = text.partition(":")
        if sep and mode in ("HETERO", "AUTO", "MULTI"):
            devices = tuple(d.strip() for d in rest.split(",") if d.strip())
            if not devices:
                raise PlacementError(f"{text!r}: {mode} needs at least one device, e.g. {mode}:GPU,CPU")
            return cls(mode, devices)
        if sep or "," in text:
            raise PlacementError(f"{text!r}: expected DEVICE or HETERO:DEV1,DEV2")
        return cls("", (text,))

    def render(self, devices: Sequence[str] | None = None) -> str:
        devs = self.devices if devices is None else tuple(devices)
        return f"{self.mode}:{','.join(devs)}" if self.mode else devs[0]

    @property
    def wants_static_shapes(self) -> bool:
        return any(family(d) in STATIC_SHAPE_DEVICES for d in self.devices)


def family(device: str) -> str:
    return device.split(".")[0]


def is_present(device: str, available: Iterable[str]) -> bool:
    """``GPU`` is present when any ``GPU.n`` is; ``GPU.1`` only when that one is."""
    available = list(available)
    if "." in device:
        return device in available or (device.endswith(".0") and family(device) in available)
    return any(family(a) == device for a in available)


@dataclass
class Placement:
    requested: str
    device: str  # what is compiled
    dropped: list[str] = field(default_factory=list)
    fallback: bool = False
    affinity: dict[str, str] = field(default_factory=dict)  # node friendly name -> device
    op_types: dict[str, Counter[str]] = field(default_factory=dict)  # device -> op type counts

    @property
    def heterogeneous(self) -> bool:
        return self.device.startswith("HETERO:")

    def summary(self) -> dict[str, dict[str, int]]:
        return {dev: dict(sorted(types.items())) for dev, types in self.op_types.items()}


def assign_affinity(
    nodes: Sequence[tuple[str, str]],
    supported: Mapping[str, set[str]],
    devices: Sequence[str],
    cpu_operators: Iterable[str],
) -> dict[str, str]:
    """Pure placement rule: CPU operator types to the CPU, others to the first device that can.

    ``nodes`` are (friendly name, type name); ``supported`` maps device -> names it can run
    (from ``query_model``). Raises when a node fits nowhere.
    """
    pinned = set(cpu_operators)
    affinity: dict[str, str] = {}
    for name, op_type in nodes:
        if op_type in pinned:
            affinity[name] = "CPU"
            continue
        device = next((d for d in devices if name in supported.get(d, set())), None)
        if device is None:
            if name not in supported.get("CPU", set()):
                raise PlacementError(f"operator {name} ({op_type}) is supported by none of {list(devices)}")
            device = "CPU"
        affinity[name] = device
    return affinity


def plan(
    core: ov.Core,
    model: ov.Model,
    requested: str,
    cpu_operators: Sequence[str],
    fallback_device: str,
) -> Placement:
    """Decide the compile device and, for HETERO, every node's affinity (not yet applied)."""
    request = DeviceRequest.parse(requested)
    available = core.available_devices
    present = [d for d in request.devices if is_present(d, available)]
    dropped = [d for d in request.devices if d not in present]
    placement = Placement(requested=requested, device=requested, dropped=dropped)
    if dropped and (not present or present == [fallback_device]):
        placement.device = fallback_device
        placement.fallback = True
    elif dropped:
        placement.device = request.render(present)
    if not placement.device.startswith("HETERO:"):
        counts: Counter[str] = Counter(op.get_type_name() for op in model.get_ops())
        placement.op_types = {placement.device: counts}
        return placement

    devices = list(DeviceRequest.parse(placement.device).devices)
    types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops()}
    if "CPU" not in devices and any(t in set(cpu_operators) for t in types.values()):
        devices.append("CPU")  # the pinned operators need somewhere to run
    supported = {d: set(core.query_model(model, d)) for d in dict.fromkeys([*devices, "CPU"])}
    placement.affinity = assign_affinity(list(types.items()), supported, devices, cpu_operators)
    used = [d for d in devices if d in set(placement.affinity.values())]
    placement.device = "HETERO:" + ",".join(used)
    placement.op_types = {d: Counter() for d in used}
    for name, device in placement.affinity.items():
        placement.op_types[device][types[name]] += 1
    return placement


def apply(model: ov.Model, placement: Placement) -> None:
    for op in model.get_ops():
        op.get_rt_info()["affinity"] = placement.affinity[op.get_friendly_name()]
