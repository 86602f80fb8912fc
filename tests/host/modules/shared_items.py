"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/shared_items.py.

Holds the ``Shared`` module class that turns ``modules.shared.sd_model`` into a module-level property backed by
``sd_models.model_data`` (the real trick: ``sys.modules['modules.shared'].__class__ = Shared``).
"""

import sys
import types


def list_checkpoint_tiles(use_short=False):
    from modules import sd_models

    return sd_models.checkpoint_tiles(use_short)


def refresh_checkpoints():
    from modules import sd_models

    return sd_models.list_models()


def list_samplers():
    from modules import sd_samplers

    return sd_samplers.all_samplers


def reload_hypernetworks():
    from modules import shared

    shared.hypernetworks = {}


def list_vaes():
    from modules import sd_vae

    return ["Automatic", "None"] + list(sd_vae.vae_dict)


def refresh_vae_list():
    from modules import sd_vae

    sd_vae.refresh_vae_list()


class Shared(types.ModuleType):
    sd_model_val = None

    @property
    def sd_model(self):
        from modules import sd_models

        return sd_models.model_data.get_sd_model()

    @sd_model.setter
    def sd_model(self, value):
        from modules import sd_models

        sd_models.model_data.set_sd_model(value)


def install_module_class():
    """Double-only helper called by modules/shared.py once it is fully imported."""
    sys.modules["modules.shared"].__class__ = Shared
