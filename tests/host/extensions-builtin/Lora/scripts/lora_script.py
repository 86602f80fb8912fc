"""Double of AUTOMATIC1111/stable-diffusion-webui:extensions-builtin/Lora/scripts/lora_script.py.

Registers the Lora settings (options_templates at import), the "lora"/"lyco" extra network on before_ui, and
GET /sdapi/v1/loras + POST /sdapi/v1/refresh-loras on app_started.
"""

import extra_networks_lora
import network
import networks
from modules import extra_networks, script_callbacks, shared


def unload():
    networks.loaded_networks.clear()


def before_ui():
    networks.extra_network_lora = extra_networks_lora.ExtraNetworkLora()
    extra_networks.register_extra_network(networks.extra_network_lora)
    extra_networks.register_extra_network_alias(networks.extra_network_lora, "lyco")


script_callbacks.on_script_unloaded(unload)
script_callbacks.on_before_ui(before_ui)

shared.options_templates.update(shared.options_section(("extra_networks", "Extra Networks"), {
    "sd_lora": shared.OptionInfo("None", "Add network to prompt", refresh=networks.list_available_networks),
    "lora_preferred_name": shared.OptionInfo("Alias from file", "When adding to prompt, refer to Lora by"),
    "lora_add_hashes_to_infotext": shared.OptionInfo(True, "Add Lora hashes to infotext"),
    "lora_bundled_ti_to_infotext": shared.OptionInfo(True, "Add Lora name as TI hashes for bundled Textual Inversion"),
    "lora_show_all": shared.OptionInfo(False, "Always show all networks on the Lora page"),
    "lora_hide_unknown_for_versions": shared.OptionInfo([], "Hide networks of unknown versions for model versions"),
    "lora_in_memory_limit": shared.OptionInfo(0, "Number of Lora networks to keep cached in memory"),
    "lora_not_found_warning_console": shared.OptionInfo(False, "Lora not found warning in console"),
    "lora_not_found_gradio_warning": shared.OptionInfo(False, "Lora not found warning popup in webui"),
}))
for _key in ("sd_lora", "lora_preferred_name", "lora_add_hashes_to_infotext", "lora_bundled_ti_to_infotext",
             "lora_show_all", "lora_hide_unknown_for_versions", "lora_in_memory_limit",
             "lora_not_found_warning_console", "lora_not_found_gradio_warning"):
    shared.opts.data.setdefault(_key, shared.options_templates[_key].default)


def create_lora_json(obj: network.NetworkOnDisk):
    return {"name": obj.name, "alias": obj.alias, "path": obj.filename, "metadata": obj.metadata}


def api_networks(_, app):
    @app.get("/sdapi/v1/loras")
    async def get_loras():
        return [create_lora_json(obj) for obj in networks.available_networks.values()]

    @app.post("/sdapi/v1/refresh-loras")
    async def refresh_loras():
        return networks.list_available_networks()


script_callbacks.on_app_started(api_networks)


def infotext_pasted(infotext, d):
    hashes = d.get("Lora hashes")
    if not hashes:
        return
    for pair in hashes.split(","):
        alias, _, shorthash = pair.partition(":")
        found = networks.available_network_hash_lookup.get(shorthash.strip())
        if found is not None:
            d["Prompt"] = d["Prompt"].replace(f"<lora:{alias.strip()}:", f"<lora:{found.get_alias()}:")


script_callbacks.on_infotext_pasted(infotext_pasted)
