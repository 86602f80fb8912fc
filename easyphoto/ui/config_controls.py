"""Gradio controls built from a typed config's field specs: the config model is the single source of defaults,
bounds, labels and help text for the UI (as it is for the API and the CLI)."""

from __future__ import annotations

from collections.abc import Sequence

from easyphoto.config import ConfigModel


def controls(gr, model: type[ConfigModel], names: Sequence[str], *, prefix: str) -> list:
    specs = {s.name: s for s in model.field_specs()}
    return [_control(gr, specs[name], f"{prefix}_{name}") for name in names]


def _control(gr, spec, elem_id: str):
    common = {"label": spec.title, "elem_id": elem_id, "info": spec.description or None}
    if spec.default is None:  # optional: empty means "automatic" (gradio 3 would turn an empty Number into 0)
        return gr.Textbox(value="", placeholder="empty: automatic", **common)
    if spec.kind == "bool":
        return gr.Checkbox(value=spec.default, **common)
    if spec.kind == "choice":
        return gr.Dropdown(choices=list(spec.choices), value=spec.default, **common)
    if spec.kind in ("int", "float") and spec.minimum is not None and spec.maximum is not None and not spec.optional:
        step = 1 if spec.kind == "int" else None
        return gr.Slider(minimum=spec.minimum, maximum=spec.maximum, value=spec.default, step=step, **common)
    if spec.kind in ("int", "float"):
        return gr.Number(value=spec.default, precision=0 if spec.kind == "int" else None, **common)
    return gr.Textbox(value=spec.default or "", **common)


def values_to_config(model: type[ConfigModel], names: Sequence[str], values: Sequence) -> ConfigModel:
    """Validated config from control values; int fields arrive as floats from sliders and numbers."""
    specs = {s.name: s for s in model.field_specs()}
    data = {}
    for name, value in zip(names, values, strict=True):
        if isinstance(value, str) and specs[name].kind in ("int", "float"):
            value = value.strip() or None
        if value is not None and specs[name].kind == "int":
            try:
                value = int(float(value))
            except ValueError:
                raise ValueError(f"{specs[name].title}: {value!r} is not a whole number") from None
        data[name] = value
    return model.from_dict(data)
