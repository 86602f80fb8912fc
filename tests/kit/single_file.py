"""Write the tiny SD model as a WebUI-style single-file checkpoint (original LDM/CompVis key layout).

Why: the AUTOMATIC1111 WebUI and most users keep SD 1.5 models as one ``.safetensors`` file
in the layout of the original CompVis ``ldm`` code, not as diffusers folders. The code under
test must read such files, so the kit writes one from the tiny diffusers model.

Key layout (written here from the naming rules of ``ldm``'s ``openaimodel.UNetModel``,
``autoencoder.AutoencoderKL`` and ``FrozenCLIPEmbedder``):

* ``model.diffusion_model.*`` - UNet. ``input_blocks.0.0`` is ``conv_in``; each down block ``i``
  contributes ``layers_per_block`` entries ``[ResBlock, SpatialTransformer?]`` and, except the
  last, one ``[Downsample]`` (``.op``); ``middle_block.{0,1,2}`` is resnet/attention/resnet; each
  up block contributes ``layers_per_block + 1`` entries ``[ResBlock, SpatialTransformer?,
  Upsample?]``. ResBlock submodules are ``in_layers.{0,2}``, ``emb_layers.1``, ``out_layers.{0,3}``,
  ``skip_connection``. Transformer internals keep their diffusers names.
* ``first_stage_model.*`` - VAE, with ``encoder.down.{i}.block.{j}``, ``downsample``, ``mid.block_1``,
  ``mid.attn_1`` (``norm``, ``q``, ``k``, ``v``, ``proj_out`` as 1x1 convs), ``mid.block_2``,
  ``norm_out``; the decoder's ``up.{i}`` is numbered from the *lowest* resolution in diffusers but
  from the highest in ldm, so up block ``i`` becomes ``up.{n-1-i}``; ``conv_shortcut`` is
  ``nin_shortcut``.
* ``cond_stage_model.transformer.text_model.*`` - the CLIP text encoder, keys unchanged below the
  prefix, plus ``embeddings.position_ids`` as SD 1.5 files carry it.
* ``control_model.*`` - a ControlNet file of sd-webui-controlnet (:func:`controlnet_to_ldm`): the UNet's
  ``time_embed``/``input_blocks``/``middle_block`` names plus ``zero_convs``, ``middle_block_out`` and
  ``input_hint_block``. ``ControlNetModel.from_single_file(state_dict, config=<folder>)`` reads it back
  bit-exactly, offline.

What worked with diffusers 0.31 (proved by ``tests/test_kit_models.py``, offline):

* ``StableDiffusionPipeline.from_single_file(path, config=<folder>, local_files_only=True)`` and the
  inpaint pipeline likewise load every UNet/VAE/text-encoder tensor bit-exactly. ``config`` must be
  a local diffusers folder; the kit passes a *weight-free* copy so that nothing can be read from
  it but configs and the tokenizer. No ``original_config`` is needed on that path.
* :func:`ldm_yaml` also writes the ldm ``v1-inference``-style yaml for the tiny model (saved next
  to the checkpoint as the WebUI expects). It is accepted by
  ``UNet2DConditionModel.from_single_file(path, original_config=yaml)`` (and ``AutoencoderKL``):
  the same weights and architecture come back. Caveat: on that path diffusers infers the image
  size from the checkpoint type (512 for SD 1.x), so ``sample_size`` differs from the tiny
  folder's (8 / 64) unless ``image_size=64`` is passed; weights are unaffected. Pipeline-level
  ``original_config`` without ``config`` is the deprecated "legacy" path, which fetches the CLIP
  config from the hub and is therefore not usable offline.
* The tiny VAE uses 32 GroupNorm groups because ldm hard-codes 32 and diffusers' yaml path
  does not carry a group count.
"""

from __future__ import annotations

from pathlib import Path

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."

UNET_RESNET_RENAMES = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "time_emb_proj.": "emb_layers.1.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "conv_shortcut.": "skip_connection.",
}
VAE_RESNET_RENAMES = {"conv_shortcut.": "nin_shortcut."}
VAE_ATTENTION_RENAMES = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


def unet_prefix_map(config) -> dict[str, tuple[str, dict[str, str]]]:
    """diffusers module prefix -> (ldm module prefix, renames of the module's own children)."""
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("per-block layers_per_block is not an SD 1.5 layout")
    down_types, up_types = config["down_block_types"], config["up_block_types"]
    mapping = {
        "conv_in.": ("input_blocks.0.0.", {}),
        "time_embedding.linear_1.": ("time_embed.0.", {}),
        "time_embedding.linear_2.": ("time_embed.2.", {}),
        "conv_norm_out.": ("out.0.", {}),
        "conv_out.": ("out.2.", {}),
        "mid_block.resnets.0.": ("middle_block.0.", UNET_RESNET_RENAMES),
        "mid_block.attentions.0.": ("middle_block.1.", {}),
        "mid_block.resnets.1.": ("middle_block.2.", UNET_RESNET_RENAMES),
    }
    for i, block_type in enumerate(down_types):
        for j in range(layers):
            index = 1 + i * (layers + 1) + j
            mapping[f"down_blocks.{i}.resnets.{j}."] = (f"input_blocks.{index}.0.", UNET_RESNET_RENAMES)
            if block_type.startswith("CrossAttn"):
                mapping[f"down_blocks.{i}.attentions.{j}."] = (f"input_blocks.{index}.1.", {})
        if i < len(down_types) - 1:
            index = 1 + i * (layers + 1) + layers
            mapping[f"down_blocks.{i}.downsamplers.0.conv."] = (f"input_blocks.{index}.0.op.", {})
    for i, block_type in enumerate(up_types):
        has_attention = block_type.startswith("CrossAttn")
        for j in range(layers + 1):
            index = i * (layers + 1) + j
            mapping[f"up_blocks.{i}.resnets.{j}."] = (f"output_blocks.{index}.0.", UNET_RESNET_RENAMES)
            if has_attention:
                mapping[f"up_blocks.{i}.attentions.{j}."] = (f"output_blocks.{index}.1.", {})
        if i < len(up_types) - 1:
            index = i * (layers + 1) + layers
            slot = 2 if has_attention else 1
            mapping[f"up_blocks.{i}.upsamplers.0.conv."] = (f"output_blocks.{index}.{slot}.conv.", {})
    return mapping


def vae_prefix_map(config) -> dict[str, tuple[str, dict[str, str]]]:
    """diffusers AutoencoderKL module prefix -> (ldm prefix, child renames)."""
    levels = len(config["block_out_channels"])
    mapping = {}
    for part in ("encoder", "decoder"):
        mapping.update(
            {
                f"{part}.conv_in.": (f"{part}.conv_in.", {}),
                f"{part}.conv_out.": (f"{part}.conv_out.", {}),
                f"{part}.conv_norm_out.": (f"{part}.norm_out.", {}),
                f"{part}.mid_block.resnets.0.": (f"{part}.mid.block_1.", VAE_RESNET_RENAMES),
                f"{part}.mid_block.resnets.1.": (f"{part}.mid.block_2.", VAE_RESNET_RENAMES),
                f"{part}.mid_block.attentions.0.": (f"{part}.mid.attn_1.", VAE_ATTENTION_RENAMES),
            }
        )
    mapping["quant_conv."] = ("quant_conv.", {})
    mapping["post_quant_conv."] = ("post_quant_conv.", {})
    layers = config["layers_per_block"]
    for i in range(levels):
        for j in range(layers):
            mapping[f"encoder.down_blocks.{i}.resnets.{j}."] = (f"encoder.down.{i}.block.{j}.", VAE_RESNET_RENAMES)
        mapping[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = (f"encoder.down.{i}.downsample.conv.", {})
        ldm_level = levels - 1 - i
        for j in range(layers + 1):
            mapping[f"decoder.up_blocks.{i}.resnets.{j}."] = (f"decoder.up.{ldm_level}.block.{j}.", VAE_RESNET_RENAMES)
        mapping[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = (f"decoder.up.{ldm_level}.upsample.conv.", {})
    return mapping


def rename_keys(state_dict, prefix_map, *, out_prefix: str) -> dict[str, torch.Tensor]:
    """Apply a prefix map to every key; a key that no rule covers is an error, never dropped."""
    prefixes = sorted(prefix_map, key=len, reverse=True)
    converted = {}
    for key, tensor in state_dict.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"no LDM name for diffusers key {key!r}")
        ldm_prefix, child_renames = prefix_map[prefix]
        rest = key[len(prefix) :]
        child = next((c for c in child_renames if rest.startswith(c)), None)
        if child is not None:
            rest = child_renames[child] + rest[len(child) :]
        converted[out_prefix + ldm_prefix + rest] = tensor
    return converted


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel weights under ``model.diffusion_model.`` in ldm naming."""
    return rename_keys(unet.state_dict(), unet_prefix_map(unet.config), out_prefix=UNET_PREFIX)


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    """AutoencoderKL weights under ``first_stage_model.``; attention projections become 1x1 convs."""
    converted = rename_keys(vae.state_dict(), vae_prefix_map(vae.config), out_prefix=VAE_PREFIX)
    attention_weights = (".mid.attn_1.q.weight", ".mid.attn_1.k.weight", ".mid.attn_1.v.weight")
    for key, tensor in converted.items():
        if key.endswith((*attention_weights, ".mid.attn_1.proj_out.weight")) and tensor.ndim == 2:
            converted[key] = tensor[:, :, None, None]
    return converted


def text_encoder_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    """CLIPTextModel weights under ``cond_stage_model.transformer.`` (with position_ids, as SD 1.5 has)."""
    converted = {TEXT_PREFIX + key: tensor for key, tensor in text_encoder.state_dict().items()}
    positions = text_encoder.config.max_position_embeddings
    converted[TEXT_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    return converted


def controlnet_prefix_map(config) -> dict[str, tuple[str, dict[str, str]]]:
    """diffusers ControlNetModel prefix -> ldm ``cldm`` prefix: the UNet encoder half plus the ControlNet parts.

    ``zero_convs.{i}.0`` are the per-resolution output convs, ``middle_block_out.0`` the mid one, and
    ``input_hint_block`` the condition encoder: convs at even indices (SiLU in between), ``conv_in`` first.
    """
    mapping = unet_prefix_map({**config, "up_block_types": []})
    blocks = 2 * (len(config["conditioning_embedding_out_channels"]) - 1)
    mapping["controlnet_cond_embedding.conv_in."] = ("input_hint_block.0.", {})
    for k in range(blocks):
        mapping[f"controlnet_cond_embedding.blocks.{k}."] = (f"input_hint_block.{2 * (k + 1)}.", {})
    mapping["controlnet_cond_embedding.conv_out."] = (f"input_hint_block.{2 * (blocks + 1)}.", {})
    inputs = 1 + len(config["down_block_types"]) * (config["layers_per_block"] + 1) - 1
    for i in range(inputs):
        mapping[f"controlnet_down_blocks.{i}."] = (f"zero_convs.{i}.0.", {})
    mapping["controlnet_mid_block."] = ("middle_block_out.0.", {})
    return mapping


def controlnet_to_ldm(controlnet) -> dict[str, torch.Tensor]:
    """ControlNetModel weights as a WebUI ControlNet file has them (``control_model.*``, ldm names)."""
    converted = rename_keys(controlnet.state_dict(), controlnet_prefix_map(controlnet.config),
                            out_prefix="control_model.")
    return {key: tensor.detach().contiguous() for key, tensor in converted.items()}


def pipeline_to_ldm(pipe) -> dict[str, torch.Tensor]:
    """All three models of a diffusers SD pipeline as one ldm state dict (contiguous, detached)."""
    merged = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **text_encoder_to_ldm(pipe.text_encoder)}
    return {key: tensor.detach().contiguous() for key, tensor in merged.items()}


def ldm_yaml(unet_config, vae_config, text_config, *, inpaint: bool) -> str:
    """An ldm ``v1-inference.yaml``-style config describing the tiny model (what WebUI reads next to a file)."""
    down_types = unet_config["down_block_types"]
    attention_resolutions = [2**i for i, kind in enumerate(down_types) if kind.startswith("CrossAttn")]
    base = unet_config["block_out_channels"][0]
    channel_mult = [c // base for c in unet_config["block_out_channels"]]
    vae_base = vae_config["block_out_channels"][0]
    vae_mult = [c // vae_base for c in vae_config["block_out_channels"]]
    target = (
        "ldm.models.diffusion.ddpm.LatentInpaintDiffusion" if inpaint else "ldm.models.diffusion.ddpm.LatentDiffusion"
    )
    lines = [
        "model:",
        "  base_learning_rate: 1.0e-04",
        f"  target: {target}",
        "  params:",
        "    linear_start: 0.00085",
        "    linear_end: 0.0120",
        "    num_timesteps_cond: 1",
        "    log_every_t: 200",
        "    timesteps: 1000",
        "    first_stage_key: jpg",
        "    cond_stage_key: txt",
        f"    image_size: {unet_config['sample_size']}",
        f"    channels: {unet_config['out_channels']}",
        "    cond_stage_trainable: false",
        f"    conditioning_key: {'hybrid' if inpaint else 'crossattn'}",
        "    monitor: val/loss_simple_ema",
        f"    scale_factor: {vae_config['scaling_factor']}",
        "    use_ema: false",
        "    unet_config:",
        "      target: ldm.modules.diffusionmodules.openaimodel.UNetModel",
        "      params:",
        f"        image_size: {unet_config['sample_size']}",
        f"        in_channels: {unet_config['in_channels']}",
        f"        out_channels: {unet_config['out_channels']}",
        f"        model_channels: {base}",
        f"        attention_resolutions: {attention_resolutions}",
        f"        num_res_blocks: {unet_config['layers_per_block']}",
        f"        channel_mult: {channel_mult}",
        f"        num_heads: {unet_config['attention_head_dim']}",
        "        use_spatial_transformer: true",
        "        transformer_depth: 1",
        f"        context_dim: {unet_config['cross_attention_dim']}",
        "        use_checkpoint: true",
        "        legacy: false",
        "    first_stage_config:",
        "      target: ldm.models.autoencoder.AutoencoderKL",
        "      params:",
        f"        embed_dim: {vae_config['latent_channels']}",
        "        monitor: val/rec_loss",
        "        ddconfig:",
        "          double_z: true",
        f"          z_channels: {vae_config['latent_channels']}",
        f"          resolution: {vae_config['sample_size']}",
        f"          in_channels: {vae_config['in_channels']}",
        f"          out_ch: {vae_config['out_channels']}",
        f"          ch: {vae_base}",
        f"          ch_mult: {vae_mult}",
        f"          num_res_blocks: {vae_config['layers_per_block']}",
        "          attn_resolutions: []",
        "          dropout: 0.0",
        "        lossconfig:",
        "          target: torch.nn.Identity",
        "    cond_stage_config:",
        "      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder",
        "      params:",
        f"        max_length: {text_config.max_position_embeddings}",
    ]
    return "\n".join(lines) + "\n"


def write_single_file(pipeline_dir: Path, out_path: Path, *, inpaint: bool) -> Path:
    """Load a tiny diffusers pipeline folder and write ``out_path`` (.safetensors) plus ``<stem>.yaml``."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from safetensors.torch import save_file

    pipeline_cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = pipeline_cls.from_pretrained(str(pipeline_dir), local_files_only=True, safety_checker=None)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(pipeline_to_ldm(pipe), str(out_path), metadata={"format": "pt"})
    yaml_text = ldm_yaml(pipe.unet.config, pipe.vae.config, pipe.text_encoder.config, inpaint=inpaint)
    out_path.with_suffix(".yaml").write_text(yaml_text)
    return out_path


def build_single_file(pipeline_dir: Path, folder: Path, *, inpaint: bool) -> Path:
    """Cached ``<folder>/<folder.name>.safetensors`` (with its ``.yaml``) written from ``pipeline_dir``."""
    from .cache import cached_dir

    name = f"{folder.name}.safetensors"
    cached_dir(folder, lambda tmp: write_single_file(pipeline_dir, tmp / name, inpaint=inpaint))
    return folder / name
