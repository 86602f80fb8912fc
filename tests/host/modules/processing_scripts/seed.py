"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/processing_scripts/seed.py (A1111 1.10.1; Forge the same).

A built-in script whose ``setup`` copies the Seed box (default -1: random) onto ``p.seed`` (and, with "Extra"
ticked, the variation seed and seed resize) whenever the host runs the UI setup of a processing object.
"""

import gradio as gr
from modules import scripts
from modules.shared import cmd_opts


class ScriptSeed(scripts.ScriptBuiltinUI):
    section = "seed"
    create_group = False

    def __init__(self):
        self.seed = None
        self.reuse_seed = None
        self.reuse_subseed = None

    def title(self):
        return "Seed"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        if getattr(cmd_opts, "use_textbox_seed", False):
            self.seed = gr.Textbox(label="Seed", value="", elem_id=self.elem_id("seed"))
        else:
            self.seed = gr.Number(label="Seed", value=-1, elem_id=self.elem_id("seed"), precision=0)
        seed_checkbox = gr.Checkbox(label="Extra", elem_id=self.elem_id("subseed_show"), value=False)
        subseed = gr.Number(label="Variation seed", value=-1, elem_id=self.elem_id("subseed"), precision=0)
        subseed_strength = gr.Slider(label="Variation strength", value=0.0, minimum=0, maximum=1, step=0.01,
                                     elem_id=self.elem_id("subseed_strength"))
        seed_resize_from_w = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize seed from width", value=0,
                                       elem_id=self.elem_id("seed_resize_from_w"))
        seed_resize_from_h = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize seed from height", value=0,
                                       elem_id=self.elem_id("seed_resize_from_h"))
        return self.seed, seed_checkbox, subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h

    def setup(self, p, seed, seed_checkbox, subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h):
        p.seed = seed
        if seed_checkbox and subseed_strength > 0:
            p.subseed = subseed
            p.subseed_strength = subseed_strength
        if seed_checkbox and seed_resize_from_w > 0 and seed_resize_from_h > 0:
            p.seed_resize_from_w = seed_resize_from_w
            p.seed_resize_from_h = seed_resize_from_h
