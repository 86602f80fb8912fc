"""Minimal double of AUTOMATIC1111/stable-diffusion-webui:modules/scripts_postprocessing.py (Extras tab scripts)."""


class PostprocessedImage:
    def __init__(self, image):
        self.image = image
        self.info = {}


class ScriptPostprocessing:
    filename = None
    controls = None
    args_from = None
    args_to = None
    order = 1000
    name = None
    group = None

    def ui(self):
        pass

    def process(self, pp, **args):
        pass

    def process_firstpass(self, pp, **args):
        pass

    def image_changed(self):
        pass


class ScriptPostprocessingRunner:
    def __init__(self):
        self.scripts = None
        self.ui_created = False

    def initialize_scripts(self, scripts_data):
        self.scripts = []
        for script_data in scripts_data:
            script = script_data.script_class()
            script.filename = script_data.path
            self.scripts.append(script)
