"""Double of lllyasviel/stable-diffusion-webui-forge:modules_forge/main_entry.py: checkpoint/module selection.

Forge switches models through these (``sd_models.reload_model_weights`` is a no-op there); processing then calls
``sd_models.forge_model_reload()``.
"""

from modules import sd_models, shared


def refresh_model_loading_parameters():
    checkpoint_info = sd_models.select_checkpoint()
    sd_models.model_data.forge_loading_parameters = dict(
        checkpoint_info=checkpoint_info, additional_modules=shared.opts.data.get("forge_additional_modules", []))


def checkpoint_change(ckpt_name: str, save=True, refresh=True):
    """Select ``ckpt_name`` (any alias); unknown names change nothing and return False."""
    info = sd_models.get_closet_checkpoint_match(ckpt_name)
    if info is None:
        print(f"Checkpoint not found: {ckpt_name}")
        return False
    shared.opts.set("sd_model_checkpoint", info.title)
    if save:
        shared.opts.save(shared.config_filename)
    if refresh:
        refresh_model_loading_parameters()
    return True


def modules_change(module_values: list, save=True, refresh=True) -> bool:
    shared.opts.data["forge_additional_modules"] = list(module_values)
    if save:
        shared.opts.save(shared.config_filename)
    if refresh:
        refresh_model_loading_parameters()
    return True
