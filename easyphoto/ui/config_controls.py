"""Gradio controls built from a typed config: the config model is the single source of the UI's fields, their
defaults, bounds, labels, help text, groups and which ones start folded away (as it is for the API and the CLI).

`ConfigForm` renders every field of a model, group by group (`config.in_group`), each group in an accordion with
its advanced fields in a folded "Advanced" accordion; a tab may place some groups apart from the others (the Train
tab puts "Photo selection" next to its Check button). Its `components` are the event inputs, in the model's field
order, and `to_config` turns their values back into a validated config, or an `InvalidSettings` error whose
message names each wrong field with its group and label.

Works on gradio 3.41 and 4.4x: nothing here imports gradio, the tab passes it in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from easyphoto.config import ConfigModel, FieldSpec

ADVANCED_LABEL = "Advanced"
MAX_SLIDER_STOPS = 2048  # beyond this many positions a slider cannot be set to a value: a number box instead
LONG_TEXT = 200  # text fields that may be longer than this get two lines


class InvalidSettings(ValueError):
    """Control values that do not make a valid config; the message names each field (group › label (name))."""


@cache
def field_specs(model: type[ConfigModel]) -> tuple[FieldSpec, ...]:
    return tuple(model.field_specs())


def field_names(model: type[ConfigModel]) -> tuple[str, ...]:
    """Every field of the model, in declaration order: the order of `ConfigForm.components`."""
    return tuple(spec.name for spec in field_specs(model))


def groups(model: type[ConfigModel]) -> tuple[str, ...]:
    """The model's UI groups, in the order their first field is declared."""
    return tuple(dict.fromkeys(spec.group for spec in field_specs(model)))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class ConfigForm:
    """The controls of every field of `model`, with elem_ids `<prefix>_<field name>`."""

    def __init__(self, model: type[ConfigModel], prefix: str):
        self.model, self.prefix = model, prefix
        self._built: dict[str, Any] = {}

    def render(self, gr, only: Sequence[str] | None = None, *, folded: bool = False) -> None:
        """Render the groups `only` (default: every group not rendered yet) where the caller's layout is; each is
        an accordion (folded or not), its advanced fields in a folded "Advanced" accordion inside it."""
        rendered = {spec.group for spec in field_specs(self.model) if spec.name in self._built}
        for group in only if only is not None else [g for g in groups(self.model) if g not in rendered]:
            specs = [spec for spec in field_specs(self.model) if spec.group == group]
            if not specs or group in rendered:
                raise ValueError(f"{self.model.__name__} has no group {group!r} left to render")
            with gr.Accordion(group or "Settings", open=not folded, elem_id=f"{self.prefix}_group_{slug(group)}"):
                self._render_fields(gr, [spec for spec in specs if not spec.advanced])
                advanced = [spec for spec in specs if spec.advanced]
                if advanced:
                    with gr.Accordion(ADVANCED_LABEL, open=False, elem_id=f"{self.prefix}_{slug(group)}_advanced"):
                        self._render_fields(gr, advanced)

    def _render_fields(self, gr, specs: Sequence[FieldSpec]) -> None:
        for spec in specs:
            component = control(gr, spec, self.elem_id(spec.name))
            # The WebUI saves every labelled control of the tab in ui-config.json under "<tab>/<label>/value" (and
            # a slider's bounds) and restores them over the code's values: the model would no longer be the source
            # of defaults and bounds, and equal labels of two models (Batch Size, Seed, Crop Ratio) would share one
            # entry, giving the Portrait tab the Train tab's default and slider range. Opt out (host-api.md §2.1).
            component.do_not_save_to_config = True
            self._built[spec.name] = component

    def elem_id(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    @property
    def components(self) -> list:
        """One control per field, in `field_names` order (the inputs `to_config` takes the values of)."""
        missing = [name for name in field_names(self.model) if name not in self._built]
        if missing:
            raise RuntimeError(f"render() every group of {self.model.__name__} first; not rendered: {missing}")
        return [self._built[name] for name in field_names(self.model)]

    def to_config(self, values: Sequence) -> ConfigModel:
        return values_to_config(self.model, field_names(self.model), values)

    def values(self, config: ConfigModel) -> list:
        """The controls' values showing `config` (e.g. a saved one), in `components` order."""
        return [to_control(spec, getattr(config, spec.name)) for spec in field_specs(self.model)]


def control(gr, spec: FieldSpec, elem_id: str):
    """The gradio component for one field, with the model's default as its value."""
    common = {"label": spec.title, "elem_id": elem_id, "info": _info(spec)}
    if spec.optional:  # empty means None; gradio 3 would turn an empty Number into 0
        return gr.Textbox(value=to_control(spec, spec.default), placeholder="empty", **common)
    if spec.kind == "bool":
        return gr.Checkbox(value=spec.default, **common)
    if spec.kind == "choice":
        if len(spec.choices) <= 4:
            return gr.Radio(choices=list(spec.choices), value=spec.default, **common)
        return gr.Dropdown(choices=list(spec.choices), value=spec.default, **common)
    if spec.kind in ("int", "float"):
        step = slider_step(spec)
        if step is not None:
            return gr.Slider(minimum=spec.minimum, maximum=spec.maximum, value=spec.default, step=step, **common)
        return gr.Number(value=spec.default, precision=0 if spec.kind == "int" else None, step=_number_step(spec),
                         **common)
    return gr.Textbox(value=spec.default or "", lines=2 if (spec.max_length or 0) > LONG_TEXT else 1, **common)


def _info(spec: FieldSpec) -> str:
    """The description, then the field's name (what validation messages, the CLI's --set and the API use) and,
    for a control that does not show its bounds (a number box), the accepted range."""
    bounds = spec.minimum is not None and spec.maximum is not None
    shown = bounds and not spec.optional and spec.kind in ("int", "float") and slider_step(spec) is not None
    limits = f": {spec.minimum:g} to {spec.maximum:g}" if bounds and not shown else ""
    return f"{spec.description} [{spec.name}{limits}]".strip()


def slider_step(spec: FieldSpec) -> float | None:
    """The step of a slider for a bounded number whose default lies on it, else None (a number box)."""
    if spec.minimum is None or spec.maximum is None or spec.optional:
        return None
    span = spec.maximum - spec.minimum
    if spec.kind == "int":
        step = spec.step or 1
        return step if span / step <= MAX_SLIDER_STOPS else None
    if span < 1:  # learning rates: a slider's steps would be coarser than the values that matter
        return None
    step = 10.0 ** (math.floor(math.log10(span)) - 2)
    for _ in range(3):  # a default off the grid (25 on a 0-5000 slider) refines it
        if math.isclose((spec.default - spec.minimum) / step, round((spec.default - spec.minimum) / step)):
            return step
        step /= 10
    return None


def _number_step(spec: FieldSpec) -> float:
    if spec.kind == "int":
        return spec.step or 1
    return 10.0 ** math.floor(math.log10(abs(spec.default))) if spec.default else 1


def values_to_config(model: type[ConfigModel], names: Sequence[str], values: Sequence) -> ConfigModel:
    """Validated config from control values (sliders and number boxes hand back floats for int fields, optional
    fields text); raises InvalidSettings naming every wrong field."""
    specs = {spec.name: spec for spec in field_specs(model)}
    if len(names) != len(values):
        raise TypeError(f"{len(values)} control values for {len(names)} {model.__name__} fields")
    data, problems = {}, []
    for name, value in zip(names, values, strict=True):
        try:
            data[name] = from_control(specs[name], value)
        except ValueError as exc:
            problems.append(f"{where(specs[name])}: {exc}")
    if problems:
        raise InvalidSettings("; ".join(problems))
    try:
        return model.from_dict(data)
    except ValueError as exc:  # pydantic's ValidationError (a ValueError on both versions)
        raise InvalidSettings(describe_errors(exc, specs)) from None


def to_control(spec: FieldSpec, value: Any) -> Any:
    """A field's value as its control shows it: optional fields are text boxes, empty for None."""
    if spec.optional:
        return "" if value is None else str(value)
    return value


def from_control(spec: FieldSpec, value: Any) -> Any:
    """A control's value as the field's type: text and floats become ints for int fields, empty text None (for a
    number, and for an optional text, which a text box shows as empty)."""
    if spec.optional and spec.kind == "str" and isinstance(value, str) and not value.strip():
        return None
    if spec.kind not in ("int", "float"):
        return value
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if spec.kind == "int" and isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value:g} is not a whole number")
        value = int(value)
    return value


def where(spec: FieldSpec) -> str:
    """How a message names a field: where its control is, and the name the hints and the API use."""
    return f"{spec.group} › {spec.title} ({spec.name})" if spec.group else f"{spec.title} ({spec.name})"


def describe_errors(exc: Any, specs: dict[str, FieldSpec]) -> str:
    """pydantic's errors as one line per field, on pydantic 1 and 2; whole-model checks give their own message."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part != "__root__"]
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        field = specs.get(loc[0]) if loc else None
        lines.append(f"{where(field)}: {message}" if field else (f"{'.'.join(loc)}: {message}" if loc else message))
    return "; ".join(lines)
