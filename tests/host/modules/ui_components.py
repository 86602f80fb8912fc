"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/ui_components.py (imports gradio; works on 3.41 and 4.x)."""

import sys

import gradio as gr

# gradio 4 writes a .pyi stub next to every file that defines a component subclass; keep the repo clean.
_component_meta = sys.modules.get("gradio.component_meta")
_write_pyi = getattr(_component_meta, "create_or_modify_pyi", None)
if _write_pyi is not None:
    _component_meta.create_or_modify_pyi = lambda *args, **kwargs: None


class FormComponent:
    def get_expected_parent(self):
        return getattr(gr.components, "Form", None)


gr.Dropdown.get_expected_parent = FormComponent.get_expected_parent


class ToolButton(FormComponent, gr.Button):
    """Small button with a single emoji as text, fits inside gradio forms."""

    def __init__(self, *args, **kwargs):
        classes = kwargs.pop("elem_classes", [])
        super().__init__(*args, elem_classes=["tool", *classes], **kwargs)

    def get_block_name(self):
        return "button"


class ResizeHandleRow(gr.Row):
    """Same as gr.Row but fits inside gradio forms."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.elem_classes = [*(self.elem_classes or []), "resize-handle-row"]

    def get_block_name(self):
        return "row"


class FormRow(FormComponent, gr.Row):
    def get_block_name(self):
        return "row"


class FormColumn(FormComponent, gr.Column):
    def get_block_name(self):
        return "column"


class FormGroup(FormComponent, gr.Group):
    def get_block_name(self):
        return "group"


class FormHTML(FormComponent, gr.HTML):
    def get_block_name(self):
        return "html"


class FormColorPicker(FormComponent, gr.ColorPicker):
    def get_block_name(self):
        return "colorpicker"


class DropdownMulti(FormComponent, gr.Dropdown):
    def __init__(self, **kwargs):
        super().__init__(multiselect=True, **kwargs)

    def get_block_name(self):
        return "dropdown"


class DropdownEditable(FormComponent, gr.Dropdown):
    def __init__(self, **kwargs):
        super().__init__(allow_custom_value=True, **kwargs)

    def get_block_name(self):
        return "dropdown"


class InputAccordion(gr.Checkbox):
    """A (hidden) Checkbox whose value is whether the accordion it renders is open; ``with`` enters the accordion."""

    global_index = 0

    def __init__(self, value, **kwargs):
        self.accordion_id = kwargs.get("elem_id")
        if self.accordion_id is None:
            self.accordion_id = f"input-accordion-{InputAccordion.global_index}"
            InputAccordion.global_index += 1
        kwargs_checkbox = {**kwargs, "elem_id": f"{self.accordion_id}-checkbox", "visible": False}
        super().__init__(value, **kwargs_checkbox)
        self.accordion = gr.Accordion(label=kwargs.get("label", "Accordion"), open=value, elem_id=self.accordion_id,
                                      elem_classes=["input-accordion"])

    def extra(self):
        return gr.Column(elem_id=self.accordion_id + "-extra", elem_classes="input-accordion-extra", min_width=0)

    def __enter__(self):
        self.accordion.__enter__()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.accordion.__exit__(exc_type, exc_val, exc_tb)

    def get_block_name(self):
        return "checkbox"


if _write_pyi is not None:
    _component_meta.create_or_modify_pyi = _write_pyi
