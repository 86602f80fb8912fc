"""Double of AUTOMATIC1111/stable-diffusion-webui:extensions-builtin/Lora/networks.py (host-api.md 3.7).

Scans ``--lora-dir`` and ``--lyco-dir-backcompat`` for .pt/.ckpt/.safetensors; unknown names are looked up
again on disk at generation time (files written after startup are found); names still missing add the comment
"Lora not found: a, b" (via sd_hijack.model_hijack.comments, copied into p.comments by processing).

Key mapping (A1111 1.10.1), for ``load_network(name, network_on_disk)``:

* the loaded model's layers are named by their module path with "." -> "_" (``assign_network_names_to_compvis_
  modules``): the UNet ``diffusion_model_…``; SD 1.5's CLIP ``transformer_text_model_…``; SDXL's embedders
  ``0_transformer_text_model_…`` (CLIP ViT-L) and ``1_model_transformer_resblocks_{i}_attn`` (OpenCLIP bigG, a
  torch MultiheadAttention with in_proj_weight = q, k, v stacked, and its out_proj Linear), ``…_mlp_c_fc``/``c_proj``.
  The double loads no weights: it builds each layer (``HostLayer``: type and weight shapes) from the key names and
  shapes in the checkpoint's safetensors header.
* a kohya name is matched by, in order: ``convert_diffusers_name_to_compvis`` (diffusers UNet paths -> SGM block
  numbers, ``lora_te_`` -> SD 1.5 / SD 2 names, ``lora_te2_`` -> ``1_model_transformer_resblocks_…`` with
  self_attn -> attn, mlp_fc1/fc2 -> mlp_c_fc/c_proj); a ``…_[qkv]_proj`` name whose layer is missing attaches to
  its parent (the MultiheadAttention); "lora_unet" -> "diffusion_model" (SDXL files with SGM names);
  "lora_te1_text_model" -> "0_transformer_text_model" (then "transformer_text_model", SD 1.5 files so named).
* keys that match no layer are left out and logged at DEBUG: "Network <file> didn't match keys: {...}".
* ``network_apply_weights(layer)`` computes what the real forward-time patch adds to a layer (kept in
  ``layer.network_updates``); a MultiheadAttention gets its q/k/v LoRAs stacked onto in_proj_weight only when q, k,
  v and out_proj LoRAs are all there; a shape that does not fit counts an error for the network
  (``extra_network_lora.errors``), as the real RuntimeError does.

Not modelled: ``load_networks`` still only resolves names and multipliers (it does not call ``load_network``:
the double stays torch-free on the generation path); bundled embeddings; LyCORIS module types other than LoRA.
"""

import json
import logging
import os
import re

import network
import network_lora
from modules import errors, sd_hijack, shared

available_networks = {}
available_network_aliases = {}
loaded_networks = []
networks_in_memory = {}
available_network_hash_lookup = {}
forbidden_network_aliases = {}
extra_network_lora = None
module_types = [network_lora.ModuleTypeLora()]

re_digits = re.compile(r"\d+")
re_x_proj = re.compile(r"(.*)_([qkv]_proj)$")
# diffusers resnet part -> ldm ResBlock part
_RESNET_PARTS = {"conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0", "norm2": "out_layers_0",
                 "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection"}
# SD 2 / SDXL-te2 OpenCLIP names for CLIP-style layer parts
_OPEN_CLIP_PARTS = (("mlp_fc1", "mlp_c_fc"), ("mlp_fc2", "mlp_c_proj"), ("self_attn", "attn"))


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


# ---------------------------------------------------------------------------------------------- key mapping


def _open_clip_part(part):
    """CLIP (transformers) layer part -> OpenCLIP: the first of mlp_fc1, mlp_fc2, self_attn that occurs."""
    for old, new in _OPEN_CLIP_PARTS:
        if old in part:
            return part.replace(old, new)
    return part


def _unet_block(kind, block, layer, part):
    """diffusers down/mid/up block numbering -> ldm input_blocks/middle_block/output_blocks (two layers per block)."""
    part = _RESNET_PARTS.get(part, part) if kind == "resnets" else part
    if block == "mid":
        return f"diffusion_model_middle_block_{1 if kind == 'attentions' else layer * 2}_{part}"
    sub = 1 if kind == "attentions" else 0
    if block[0] == "down":
        return f"diffusion_model_input_blocks_{1 + block[1] * 3 + layer}_{sub}_{part}"
    return f"diffusion_model_output_blocks_{block[1] * 3 + layer}_{sub}_{part}"


def convert_diffusers_name_to_compvis(key, is_sd2):
    """A kohya name in diffusers terms -> the loaded model's layer name; other names come back unchanged."""
    m = re.match(r"lora_unet_conv_in(.*)", key)
    if m:
        return f"diffusion_model_input_blocks_0_0{m.group(1)}"
    m = re.match(r"lora_unet_conv_out(.*)", key)
    if m:
        return f"diffusion_model_out_2{m.group(1)}"
    m = re.match(r"lora_unet_time_embedding_linear_(\d+)(.*)", key)
    if m:
        return f"diffusion_model_time_embed_{int(m.group(1)) * 2 - 2}{m.group(2)}"
    m = re.match(r"lora_unet_(down|up)_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", key)
    if m:
        return _unet_block(m.group(3), (m.group(1), int(m.group(2))), int(m.group(4)), m.group(5))
    m = re.match(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)", key)
    if m:
        return _unet_block(m.group(1), "mid", int(m.group(2)), m.group(3))
    m = re.match(r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv", key)
    if m:
        return f"diffusion_model_input_blocks_{3 + int(m.group(1)) * 3}_0_op"
    m = re.match(r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv", key)
    if m:
        block = int(m.group(1))
        return f"diffusion_model_output_blocks_{2 + block * 3}_{2 if block > 0 else 1}_conv"
    m = re.match(r"lora_te_text_model_encoder_layers_(\d+)_(.+)", key)
    if m:
        if is_sd2:
            return f"model_transformer_resblocks_{m.group(1)}_{_open_clip_part(m.group(2))}"
        return f"transformer_text_model_encoder_layers_{m.group(1)}_{m.group(2)}"
    m = re.match(r"lora_te2_text_model_encoder_layers_(\d+)_(.+)", key)
    if m:
        return f"1_model_transformer_resblocks_{m.group(1)}_{_open_clip_part(m.group(2))}"
    return key


class HostLayer:
    """Stands for one torch module of the loaded model (the double loads no weights): the real module's type name
    ("Linear", "Conv2d", "MultiheadAttention", "LayerNorm", "GroupNorm", "Embedding", "Module") and the shapes of
    its weights ({"weight": …} or, for a MultiheadAttention, {"in_proj_weight": …, "out_proj.weight": …})."""

    def __init__(self, name, type_name="Module"):
        self.network_layer_name = name
        self.type_name = type_name
        self.shapes = {}
        self.sources = {}  # double-only: parameter -> the checkpoint key it was read from
        self.network_updates = {}
        self.runs_forward = True  # False for a MultiheadAttention's out_proj: torch's MHA uses its weight directly

    def __repr__(self):
        return f"HostLayer({self.network_layer_name!r}, {self.type_name}, {self.shapes})"


def _checkpoint_tensor_shapes(filename):
    """{tensor key: shape} from a .safetensors header (no tensor is read)."""
    with open(filename, "rb") as file:
        size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(size))
    return {key: tuple(value["shape"]) for key, value in header.items() if key != "__metadata__"}


# checkpoint key prefix -> layer-name prefix, as the model's named_modules() names them
_SD1_COMPONENTS = (("model.", ""), ("cond_stage_model.", ""))
_CHECKPOINT_REPLACEMENTS = (  # modules/sd_models.py checkpoint_dict_replacements_sd1 (old CLIP key layout)
    ("cond_stage_model.transformer.embeddings.", "cond_stage_model.transformer.text_model.embeddings."),
    ("cond_stage_model.transformer.encoder.", "cond_stage_model.transformer.text_model.encoder."),
    ("cond_stage_model.transformer.final_layer_norm.", "cond_stage_model.transformer.text_model.final_layer_norm."),
)


def _layer_path(key, is_sdxl):
    """Checkpoint key -> the dotted module path (with its component prefix) of the parameter, or None."""
    if not is_sdxl:
        for old, new in _CHECKPOINT_REPLACEMENTS:
            if key.startswith(old):
                key = new + key[len(old):]
        for prefix, replacement in _SD1_COMPONENTS:
            if key.startswith(prefix):
                return replacement + key[len(prefix):]
        return None
    if key.startswith("model."):
        return key[len("model."):]
    m = re.match(r"conditioner\.embedders\.(\d+)\.(.+)", key)
    return f"{m.group(1)}_{m.group(2)}" if m else None


def _layer_type(name, shape):
    if len(shape) == 4:
        return "Conv2d"
    if len(shape) == 2:
        return "Embedding" if name.endswith("embedding") else "Linear"
    if name.startswith("diffusion_model") and "transformer_blocks" not in name:
        return "GroupNorm"
    return "LayerNorm"


def _add_layer(mapping, path):
    """The layer for a dotted module path, and its parents (containers), created on first sight."""
    parts = path.split(".")
    for i in range(1, len(parts)):
        mapping.setdefault("_".join(parts[:i]), HostLayer("_".join(parts[:i])))
    name = "_".join(parts)
    return mapping.setdefault(name, HostLayer(name))


def _layers_from_checkpoint(filename, is_sdxl):
    mapping = {}
    for key, shape in _checkpoint_tensor_shapes(filename).items():
        path = _layer_path(key, is_sdxl)
        if path is None:
            continue
        module, _, param = path.rpartition(".")
        if param == "in_proj_weight":
            layer = _add_layer(mapping, module)
            layer.type_name = "MultiheadAttention"
            layer.shapes["in_proj_weight"] = shape
            layer.sources["in_proj_weight"] = key
        elif param == "weight":
            layer = _add_layer(mapping, module)
            layer.shapes["weight"] = shape
            layer.sources["weight"] = key
            if layer.type_name == "Module":
                layer.type_name = _layer_type(layer.network_layer_name, shape)
        elif module:
            _add_layer(mapping, module)
    for name, layer in mapping.items():  # a MultiheadAttention's out_proj is a Linear child
        if layer.type_name == "MultiheadAttention" and name + "_out_proj" in mapping:
            out_proj = mapping[name + "_out_proj"]
            out_proj.type_name = "NonDynamicallyQuantizableLinear"
            out_proj.runs_forward = False
            layer.shapes["out_proj.weight"] = out_proj.shapes.get("weight")
            layer.sources["out_proj.weight"] = out_proj.sources.get("weight")
    return mapping


def assign_network_names_to_compvis_modules(sd_model):
    """``sd_model.network_layer_mapping``: layer name -> HostLayer, built from the loaded checkpoint's header."""
    info = getattr(sd_model, "sd_checkpoint_info", None)
    filename = getattr(info, "filename", None)
    mapping = {}
    if filename and str(filename).lower().endswith(".safetensors") and os.path.exists(filename):
        mapping = _layers_from_checkpoint(filename, bool(getattr(sd_model, "is_sdxl", False)))
    sd_model.network_layer_mapping = mapping


def _match_layer(mapping, key_network_without_network_parts, is_sd2):
    """(layer name, layer or None) for a kohya name, in the real host's order of attempts."""
    base = key_network_without_network_parts
    key = convert_diffusers_name_to_compvis(base, is_sd2)
    sd_module = mapping.get(key)
    if sd_module is None:
        m = re_x_proj.match(key)
        if m:  # q/k/v LoRAs of a MultiheadAttention: the key keeps its _q_proj suffix, the layer is the MHA
            sd_module = mapping.get(m.group(1))
    if sd_module is None and "lora_unet" in base:
        key = base.replace("lora_unet", "diffusion_model")
        sd_module = mapping.get(key)
    elif sd_module is None and "lora_te1_text_model" in base:
        key = base.replace("lora_te1_text_model", "0_transformer_text_model")
        sd_module = mapping.get(key)
        if sd_module is None:
            key = base.replace("lora_te1_text_model", "transformer_text_model")
            sd_module = mapping.get(key)
    return key, sd_module


def _read_state_dict(filename):
    """The network's tensors (modules/sd_models.read_state_dict; the double reads .safetensors only)."""
    if not str(filename).lower().endswith(".safetensors"):
        raise NotImplementedError("the host double reads .safetensors networks only")
    import safetensors.torch

    return safetensors.torch.load_file(filename, device="cpu")


def load_network(name, network_on_disk):
    """Read the network file and match its modules to the loaded model's layers (net.modules[layer name])."""
    net = network.Network(name, network_on_disk)
    net.mtime = os.path.getmtime(network_on_disk.filename)
    sd = _read_state_dict(network_on_disk.filename)
    if not hasattr(shared.sd_model, "network_layer_mapping"):
        assign_network_names_to_compvis_modules(shared.sd_model)
    mapping = shared.sd_model.network_layer_mapping
    is_sd2 = "model_transformer_resblocks" in mapping
    keys_failed_to_match = {}
    matched_networks = {}
    for key_network, weight in sd.items():
        key_network_without_network_parts, _, network_part = key_network.partition(".")
        key, sd_module = _match_layer(mapping, key_network_without_network_parts, is_sd2)
        if sd_module is None:
            keys_failed_to_match[key_network] = key
            continue
        if key not in matched_networks:
            matched_networks[key] = network.NetworkWeights(network_key=key_network, sd_key=key, w={},
                                                           sd_module=sd_module)
        matched_networks[key].w[network_part] = weight
    for key, weights in matched_networks.items():
        net_module = next((m for m in (t.create_module(net, weights) for t in module_types) if m is not None), None)
        if net_module is None:
            raise AssertionError(f"Could not find a module type (out of "
                                 f"{', '.join(type(t).__name__ for t in module_types)}) that would accept those "
                                 f"keys: {', '.join(weights.w)}")
        net.modules[key] = net_module
    if keys_failed_to_match:
        logging.debug(f"Network {network_on_disk.filename} didn't match keys: {keys_failed_to_match}")
    return net


def _count_error(net, network_layer_name, error):
    logging.debug(f"Network {net.name} layer {network_layer_name}: {error}")
    if extra_network_lora is not None:
        extra_network_lora.errors[net.name] = extra_network_lora.errors.get(net.name, 0) + 1


def _added(shape, updown):
    """What ``weight.copy_(weight + updown)`` adds to a weight of `shape` (RuntimeError when it does not fit)."""
    import torch

    weight = torch.zeros(shape)
    weight.copy_(weight + updown)
    return weight


def network_apply_weights(self):
    """What the forward-time patch adds to layer `self` for the loaded networks: ``self.network_updates`` maps
    "weight" (or "in_proj_weight" and "out_proj.weight" for a MultiheadAttention) to the summed update."""
    import torch

    network_layer_name = getattr(self, "network_layer_name", None)
    if network_layer_name is None:
        return
    self.network_updates = {}
    for net in loaded_networks:
        module = net.modules.get(network_layer_name, None)
        if module is not None and "weight" in self.shapes:
            try:
                weight = torch.zeros(self.shapes["weight"])
                updown, _ = module.calc_updown(weight)
                if len(weight.shape) == 4 and weight.shape[1] == 9:  # inpainting UNet: 4 -> 9 input channels
                    updown = torch.nn.functional.pad(updown, (0, 0, 0, 0, 0, 5))
                update = _added(weight.shape, updown)
                self.network_updates["weight"] = self.network_updates.get("weight", 0) + update
            except RuntimeError as e:
                _count_error(net, network_layer_name, e)
            continue
        parts = [net.modules.get(f"{network_layer_name}_{p}", None) for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
        if self.type_name == "MultiheadAttention" and all(parts):
            try:
                qw, kw, vw = torch.zeros(self.shapes["in_proj_weight"]).chunk(3, 0)
                updown_qkv = torch.vstack([m.calc_updown(w)[0] for m, w in zip(parts[:3], (qw, kw, vw), strict=True)])
                updown_out, _ = parts[3].calc_updown(torch.zeros(self.shapes["out_proj.weight"]))
                for param, updown in (("in_proj_weight", updown_qkv), ("out_proj.weight", updown_out)):
                    update = _added(self.shapes[param], updown)
                    self.network_updates[param] = self.network_updates.get(param, 0) + update
            except RuntimeError as e:
                _count_error(net, network_layer_name, e)
            continue
        if module is None:
            continue
        _count_error(net, network_layer_name, "couldn't find supported operation")


def apply_to_all_layers(sd_model):
    """Double-only: one forward pass's worth of network_apply_weights, over every layer that runs its own forward.
    Returns {layer name: network_updates} for the layers that got an update."""
    updates = {}
    for name, layer in sd_model.network_layer_mapping.items():
        if layer.runs_forward and layer.type_name != "Module":
            network_apply_weights(layer)
            if layer.network_updates:
                updates[name] = layer.network_updates
    return updates


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
