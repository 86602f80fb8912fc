"""The host's "Send to img2img / inpaint" buttons for EasyPhoto's results (AppContext.paste_buttons)."""

import importlib


def paste_buttons(image_component, infotext_component) -> dict:
    """"Send to img2img" / "Send to inpaint" buttons for a result image and its infotext, the host's way
    (modules.infotext_utils): call inside the tab's gr.Blocks; the host connects them after building its UI."""
    try:
        from modules import infotext_utils
    except ImportError:  # WebUI < 1.8 named it generation_parameters_copypaste
        infotext_utils = importlib.import_module("modules.generation_parameters_copypaste")
    buttons = infotext_utils.create_buttons(["img2img", "inpaint"])
    for tabname, button in buttons.items():
        infotext_utils.register_paste_params_button(infotext_utils.ParamBinding(
            paste_button=button, tabname=tabname, source_text_component=infotext_component,
            source_image_component=image_component))
    return buttons
