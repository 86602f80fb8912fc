"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/processing_scripts/refiner.py (A1111 1.10.1; Forge the
same). Its UI default (accordion closed, no checkpoint) makes ``setup`` clear ``p.refiner_checkpoint`` and
``p.refiner_switch_at``."""

import gradio as gr
from modules import scripts


class ScriptRefiner(scripts.ScriptBuiltinUI):
    section = "accordions"
    create_group = False

    def __init__(self):
        pass

    def title(self):
        return "Refiner"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        # the real control is an InputAccordion (a checkbox-valued accordion); a Checkbox carries the same value
        enable_refiner = gr.Checkbox(False, label="Refiner", elem_id=self.elem_id("enable"))
        refiner_checkpoint = gr.Dropdown(label="Checkpoint", elem_id=self.elem_id("checkpoint"), choices=[""],
                                         value="")
        refiner_switch_at = gr.Slider(value=0.8, label="Switch at", minimum=0.01, maximum=1.0, step=0.01,
                                      elem_id=self.elem_id("switch_at"))
        return enable_refiner, refiner_checkpoint, refiner_switch_at

    def setup(self, p, enable_refiner, refiner_checkpoint, refiner_switch_at):
        if not enable_refiner or refiner_checkpoint in (None, "", "None"):
            p.refiner_checkpoint = None
            p.refiner_switch_at = None
        else:
            p.refiner_checkpoint = refiner_checkpoint
            p.refiner_switch_at = refiner_switch_at
