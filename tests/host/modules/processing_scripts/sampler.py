"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/processing_scripts/sampler.py (A1111 1.10.1; Forge has
the same class).

A built-in script (``ScriptBuiltinUI``, so ``setup_for_ui_only``): its UI holds the txt2img/img2img "Sampling steps",
"Sampling method" and "Schedule type" controls, and ``setup`` copies their values onto ``p``. The host runs
``setup`` whenever ``p.script_args`` is assigned on a ``p`` whose ``is_api`` is False, so a processing object built
by an extension gets the UI defaults (20 steps, the first visible sampler, "Automatic") unless it is marked as an
API call.
"""

import gradio as gr
from modules import scripts, sd_samplers, sd_schedulers, shared
from modules.ui_components import FormGroup, FormRow


class ScriptSampler(scripts.ScriptBuiltinUI):
    section = "sampler"

    def __init__(self):
        self.steps = None
        self.sampler_name = None
        self.scheduler = None

    def title(self):
        return "Sampler"

    def ui(self, is_img2img):
        sampler_names = [x.name for x in sd_samplers.visible_samplers()]
        scheduler_names = [x.label for x in sd_schedulers.schedulers]
        container = FormRow if shared.opts.data.get("samplers_in_dropdown", True) else FormGroup
        with container(elem_id=f"sampler_selection_{self.tabname}"):
            self.sampler_name = gr.Dropdown(label="Sampling method", elem_id=f"{self.tabname}_sampling",
                                            choices=sampler_names, value=sampler_names[0])
            self.scheduler = gr.Dropdown(label="Schedule type", elem_id=f"{self.tabname}_scheduler",
                                         choices=scheduler_names, value=scheduler_names[0])
            self.steps = gr.Slider(minimum=1, maximum=150, step=1, elem_id=f"{self.tabname}_steps",
                                   label="Sampling steps", value=20)
        # the real order of the returned controls: steps, sampler, scheduler
        return self.steps, self.sampler_name, self.scheduler

    def setup(self, p, steps, sampler_name, scheduler):
        p.steps = steps
        p.sampler_name = sampler_name
        p.scheduler = scheduler
