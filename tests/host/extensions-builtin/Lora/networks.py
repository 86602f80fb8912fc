"""Double of AUTOMATIC1111/stable-diffusion-webui:extensions-builtin/Lora/networks.py (host-api.md 3.7).

Scans ``--lora-dir`` and ``--lyco-dir-backcompat`` for .pt/.ckpt/.safetensors; unknown names are looked up
again on disk at generation time (files written after startup are found); names still missing add the comment
"Lora not found: a, b" (via sd_hijack.model_hijack.comments, copied into p.comments by processing).
"""

import os

import network
from modules import errors, sd_hijack, shared

available_networks = {}
available_network_aliases = {}
loaded_networks = []
networks_in_memory = {}
available_network_hash_lookup = {}
forbidden_network_aliases = {}
extra_network_lora = None


def _lookup(names):
    return [available_networks.get(name, None) if name.lower() in forbidden_network_aliases
            else available_network_aliases.get(name, None) for name in names]


def load_networks(names, te_multipliers=None, unet_multipliers=None, dyn_dims=None):
    networks_on_disk = _lookup(names)
    if any(x is None for x in networks_on_disk):
        update_available_networks_by_names(names)
        networks_on_disk = _lookup(names)
    if any(x is None for x in networks_on_disk):
        list_available_networks()
        networks_on_disk = _lookup(names)
    failed_to_load_networks = []
    loaded_networks.clear()
    for i, (network_on_disk, name) in enumerate(zip(networks_on_disk, names, strict=False)):
        if network_on_disk is None:
            failed_to_load_networks.append(name)
            continue
        net = network.Network(name, network_on_disk)
        net.mentioned_name = name
        net.te_multiplier = te_multipliers[i] if te_multipliers else 1.0
        net.unet_multiplier = unet_multipliers[i] if unet_multipliers else 1.0
        net.dyn_dim = dyn_dims[i] if dyn_dims else None
        network_on_disk.read_hash()
        loaded_networks.append(net)
    if failed_to_load_networks:
        lora_not_found_message = f'Lora not found: {", ".join(failed_to_load_networks)}'
        sd_hijack.model_hijack.comments.append(lora_not_found_message)
        if shared.opts.data.get("lora_not_found_warning_console", False):
            print(f"\n{lora_not_found_message}\n")


def process_network_files(names: list[str] | None = None):
    candidates = list(shared.walk_files(shared.cmd_opts.lora_dir, allowed_extensions=[".pt", ".ckpt", ".safetensors"]))
    candidates += list(shared.walk_files(shared.cmd_opts.lyco_dir_backcompat,
                                         allowed_extensions=[".pt", ".ckpt", ".safetensors"]))
    for filename in candidates:
        if os.path.isdir(filename):
            continue
        name = os.path.splitext(os.path.basename(filename))[0]
        if names and name not in names:
            continue
        try:
            entry = network.NetworkOnDisk(name, filename)
        except OSError:
            errors.report(f"Failed to load network {name} from {filename}", exc_info=True)
            continue
        available_networks[name] = entry
        if entry.alias in available_network_aliases:
            forbidden_network_aliases[entry.alias.lower()] = 1
        available_network_aliases[name] = entry
        available_network_aliases[entry.alias] = entry


def update_available_networks_by_names(names: list[str]):
    process_network_files(names)


def list_available_networks():
    available_networks.clear()
    available_network_aliases.clear()
    forbidden_network_aliases.clear()
    available_network_hash_lookup.clear()
    forbidden_network_aliases.update({"none": 1, "Addams": 1})
    os.makedirs(shared.cmd_opts.lora_dir, exist_ok=True)
    process_network_files()


list_available_networks()
