"""Operator placement: device strings, presence, and the affinity rule (FastDeploy's lesson 2)."""

from __future__ import annotations

import pytest

from streamd.inference.placement import DeviceRequest, PlacementError, assign_affinity, is_present


def test_device_strings_parse() -> None:
    assert DeviceRequest.parse("HETERO:GPU,CPU") == DeviceRequest("HETERO", ("GPU", "CPU"))
    assert DeviceRequest.parse("CPU") == DeviceRequest("", ("CPU",))
    assert DeviceRequest.parse("HETERO:GPU.1,CPU").render(["CPU"]) == "HETERO:CPU"
    assert DeviceRequest.parse("HETERO:GPU,CPU").wants_static_shapes
    assert not DeviceRequest.parse("HETERO:CPU").wants_static_shapes
    for bad in ("HETERO:", "GPU,CPU", "FOO:BAR"):
        with pytest.raises(PlacementError):
            DeviceRequest.parse(bad)


def test_presence_by_family_and_index() -> None:
    assert is_present("GPU", ["CPU", "GPU.0", "GPU.1"])
    assert is_present("GPU.1", ["CPU", "GPU.0", "GPU.1"])
    assert not is_present("GPU.2", ["CPU", "GPU.0", "GPU.1"])
    assert is_present("GPU.0", ["CPU", "GPU"])
    assert not is_present("GPU", ["CPU"])


NODES = [("image", "Parameter"), ("conv", "Convolution"), ("nms", "MulticlassNms"), ("topk", "TopK"), ("out", "Result")]


def test_every_node_gets_an_affinity_and_nms_goes_to_cpu() -> None:
    # What query_model says an Intel GPU supports: everything but the NMS (as FastDeploy found).
    supported = {"GPU": {"image", "conv", "topk", "out"}, "CPU": {n for n, _ in NODES}}
    affinity = assign_affinity(NODES, supported, ["GPU", "CPU"], ["MulticlassNms", "NonMaxSuppression"])
    assert affinity == {"image": "GPU", "conv": "GPU", "nms": "CPU", "topk": "GPU", "out": "GPU"}


def test_pinned_types_go_to_cpu_even_when_the_gpu_claims_them() -> None:
    supported = {"GPU": {n for n, _ in NODES}, "CPU": {n for n, _ in NODES}}
    affinity = assign_affinity(NODES, supported, ["GPU", "CPU"], ["MulticlassNms"])
    assert affinity["nms"] == "CPU" and affinity["conv"] == "GPU"


def test_unsupported_on_first_device_falls_through_in_priority_order() -> None:
    supported = {"NPU": {"image", "out"}, "GPU": {"conv"}, "CPU": {n for n, _ in NODES}}
    affinity = assign_affinity(NODES, supported, ["NPU", "GPU", "CPU"], [])
    assert affinity == {"image": "NPU", "conv": "GPU", "nms": "CPU", "topk": "CPU", "out": "NPU"}


def test_a_node_nobody_supports_is_an_error_naming_it() -> None:
    with pytest.raises(PlacementError, match="nms"):
        assign_affinity(NODES, {"GPU": {"image", "conv", "topk", "out"}, "CPU": set()}, ["GPU"], [])
