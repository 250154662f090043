"""FastDeploy's first lesson, made automatic: a GPU needs a static shape, so every input of a
model exported with dynamic dims is fixed to what it really receives (``model.input_shape``,
else batch 1 and H/W from ``model.input_size``), or refused with the config line that fixes it."""

from __future__ import annotations

from dataclasses import dataclass

import openvino as ov

from streamd.config import ConfigError, ModelConfig


@dataclass
class ImageInput:
    name: str
    original: str  # the shape as exported, e.g. [?,?,?,3]
    shape: list[int]  # fixed; -1 where the user asked to keep a dim dynamic (CPU only)
    layout: str  # NHWC or NCHW
    element_type: ov.Type

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the network sees; (-1, -1) when spatially dynamic."""
        if self.layout == "NHWC":
            return self.shape[2], self.shape[1]
        return self.shape[3], self.shape[2]

    @property
    def static(self) -> bool:
        return all(d > 0 for d in self.shape)


def _layout_of(shape: ov.PartialShape) -> str | None:
    if not (shape.rank.is_static and shape.rank.get_length() == 4):
        return None
    last, second = shape[3], shape[1]
    if last.is_static and last.get_length() in (1, 3):
        return "NHWC"
    if second.is_static and second.get_length() in (1, 3):
        return "NCHW"
    return None


def _dims(shape: ov.PartialShape) -> list[int]:
    return [d.get_length() if d.is_static else -1 for d in shape]


def fix_shapes(model: ov.Model, cfg: ModelConfig, wants_static: bool) -> ImageInput:
    """Reshape every input to a fixed shape, or explain which config line fixes it."""
    wanted = dict(cfg.input_shape or {})
    unknown = set(wanted) - {n for i in model.inputs for n in i.get_names()}
    if unknown:
        names = [i.get_any_name() for i in model.inputs]
        raise ConfigError("model.input_shape", f"no input named {sorted(unknown)[0]!r}; inputs are {names}")
    new_shapes: dict[str, list[int]] = {}
    image: ImageInput | None = None
    for port in model.inputs:
        name = port.get_any_name()
        pshape = port.get_partial_shape()
        layout = _layout_of(pshape)
        given = next((wanted[n] for n in port.get_names() if n in wanted), None)
        dims = _dims(pshape)
        if given is not None:
            if len(given) != len(dims):
                raise ConfigError("model.input_shape", f"input {name!r} has rank {len(dims)}, got {given}")
            dims = list(given)
        elif layout is not None:
            width, height = cfg.input_size
            h_axis, w_axis = (1, 2) if layout == "NHWC" else (2, 3)
            dims[0] = 1 if dims[0] < 0 else dims[0]
            dims[h_axis] = height if dims[h_axis] < 0 else dims[h_axis]
            dims[w_axis] = width if dims[w_axis] < 0 else dims[w_axis]
        elif dims and dims[0] < 0:
            dims[0] = 1
        if any(d < 0 for d in dims) and wants_static:
            suggestion = "[" + ", ".join(str(d if d > 0 else 640) for d in dims) + "]"
            raise ConfigError(
                "model.input_shape",
                f"input {name!r} has shape {pshape} and stays dynamic "
                f"([{','.join(str(d) if d > 0 else '?' for d in dims)}]); "
                f'{cfg.device} needs a static shape. Set it: input_shape = {{ "{name}" = {suggestion} }} '
                "(models whose input size must vary, like PP-OCR or RCNN, can only run on CPU)",
            )
        new_shapes[name] = dims
        if layout is not None and image is None:
            image = ImageInput(name, str(pshape), dims, layout, port.get_element_type())
    if image is None:
        raise ConfigError("model.path", "the model has no image input (rank 4 with 1 or 3 channels)")
    model.reshape({n: ov.PartialShape([d if d > 0 else -1 for d in s]) for n, s in new_shapes.items()})
    return image
