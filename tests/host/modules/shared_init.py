"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/shared_init.py: loads config.json into shared.opts.

Keys missing from the file keep their defaults in ``opts.data`` (as in a config.json the real WebUI saved at
startup), so ``process_images`` can restore every overridden setting.
"""

import os

from modules import shared


def initialize():
    os.makedirs(os.path.dirname(os.path.abspath(shared.config_filename)), exist_ok=True)
    if os.path.exists(shared.config_filename):
        shared.opts.load(shared.config_filename)
    for key, info in shared.opts.data_labels.items():
        if key not in shared.opts.data and not info.do_not_save:
            shared.opts.data[key] = info.default
    from modules import devices

    shared.device = devices.device
