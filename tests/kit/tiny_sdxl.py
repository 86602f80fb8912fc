"""A tiny SDXL with random weights: SDXL's architecture and file layouts, ~10,000x smaller.

What makes a model SDXL, and what this one has of it:

* a UNet whose first level has no attention (DownBlock2D), linear transformer projections, several transformer
  blocks per attention (``transformer_layers_per_block`` [1, 2]), and the "text_time" added conditioning: the pooled
  text embedding of the second encoder plus six size/crop numbers (``add_embedding``, SGM's ``label_emb``);
* two text encoders: CLIP ViT-L style (``CLIPTextModel``, width 32 here) and OpenCLIP bigG style
  (``CLIPTextModelWithProjection``, width 48, GELU), whose penultimate hidden states are concatenated
  (cross-attention width 32 + 48 = 80). The widths differ on purpose, as 768 and 1280 do: diffusers' single-file
  loader tells the two encoders apart by width;
* the second tokenizer pads with "!" (id 0), the first with the end token;
* the SDXL VAE's scaling factor 0.13025.

:func:`write_sgm_single_file` writes the checkpoint layout SDXL files in the WebUI have (Stability's ``sgm``):
``model.diffusion_model.*`` (ldm UNet names, ``label_emb.0.{0,2}`` for the added embedding),
``first_stage_model.*`` (VAE), ``conditioner.embedders.0.transformer.text_model.*`` (the CLIP encoder, HF names)
and ``conditioner.embedders.1.model.*`` (OpenCLIP names: ``transformer.resblocks.{i}.attn.in_proj_weight`` holds
q, k and v stacked; ``ln_1``/``ln_2``, ``mlp.c_fc``/``mlp.c_proj``, ``positional_embedding``, ``token_embedding``,
``ln_final``, ``text_projection`` stored as [width, projection], the transpose of a Linear weight).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .single_file import rename_keys, unet_prefix_map, vae_to_ldm
from .tiny_sd import VAE_CONFIG, _seeded, load_tokenizer

SEEDS = {"unet": 20, "vae": 21, "text_encoder": 22, "text_encoder_2": 23, "controlnet": 24}
TE1_WIDTH, TE2_WIDTH = 32, 48
TIME_EMBED_DIM = 8

UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2],
    "attention_head_dim": [2, 4],
    "norm_num_groups": 32,
    "cross_attention_dim": TE1_WIDTH + TE2_WIDTH,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TIME_EMBED_DIM,
    "projection_class_embeddings_input_dim": TE2_WIDTH + 6 * TIME_EMBED_DIM,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
}

TEXT_ENCODER_CONFIG = {
    "vocab_size": 49408, "hidden_size": TE1_WIDTH, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "max_position_embeddings": 77, "projection_dim": TE1_WIDTH, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}  # fmt: skip
TEXT_ENCODER_2_CONFIG = {
    **TEXT_ENCODER_CONFIG, "hidden_size": TE2_WIDTH, "intermediate_size": 96, "projection_dim": TE2_WIDTH,
    "hidden_act": "gelu",
}  # fmt: skip

SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}  # fmt: skip


def make_unet(seed: int = SEEDS["unet"]):
    from diffusers import UNet2DConditionModel

    _seeded(seed)
    return UNet2DConditionModel(**UNET_CONFIG).eval()


def make_vae(seed: int = SEEDS["vae"]):
    from diffusers import AutoencoderKL

    _seeded(seed)
    return AutoencoderKL(**{**VAE_CONFIG, "scaling_factor": 0.13025, "force_upcast": True}).eval()


def make_text_encoders():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    _seeded(SEEDS["text_encoder"])
    first = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER_CONFIG)).eval()
    _seeded(SEEDS["text_encoder_2"])
    second = CLIPTextModelWithProjection(CLIPTextConfig(**TEXT_ENCODER_2_CONFIG)).eval()
    return first, second


def make_controlnet(unet):
    """An SDXL ControlNet from the tiny UNet (as SDXL ControlNets were made), zero convs redrawn (see tiny_sd)."""
    from diffusers import ControlNetModel

    _seeded(SEEDS["controlnet"])
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 32, 32))
    with torch.no_grad():
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                       controlnet.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0.0, 0.02)
            module.bias.normal_(0.0, 0.02)
    return controlnet.eval()


def save_pipeline(out_dir: Path, tokenizer_dir: Path) -> None:
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline

    first, second = make_text_encoders()
    pipe = StableDiffusionXLPipeline(
        vae=make_vae(), text_encoder=first, text_encoder_2=second, tokenizer=load_tokenizer(tokenizer_dir),
        tokenizer_2=_tokenizer_2(tokenizer_dir), unet=make_unet(), scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
    )
    pipe.save_pretrained(str(out_dir), safe_serialization=True)


def _tokenizer_2(tokenizer_dir: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(tokenizer_dir), pad_token="!")


def save_controlnet(out_dir: Path) -> None:
    make_controlnet(make_unet()).save_pretrained(str(out_dir), safe_serialization=True)


# ---------------------------------------------------------------------------------------------- sgm single file


def sdxl_unet_prefix_map(config) -> dict:
    mapping = unet_prefix_map(config)
    mapping["add_embedding.linear_1."] = ("label_emb.0.0.", {})
    mapping["add_embedding.linear_2."] = ("label_emb.0.2.", {})
    return mapping


def open_clip_state_dict(text_encoder) -> dict[str, torch.Tensor]:
    """CLIPTextModelWithProjection weights in OpenCLIP's names (what SGM checkpoints store under embedders.1.model)."""
    state = text_encoder.state_dict()
    out = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
        "text_projection": state["text_projection.weight"].T.contiguous(),
    }
    renames = {"layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.", "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj.",
               "self_attn.out_proj.": "attn.out_proj."}
    for i in range(text_encoder.config.num_hidden_layers):
        layer = f"text_model.encoder.layers.{i}."
        block = f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{layer}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
        for key, tensor in state.items():
            if key.startswith(layer) and ".self_attn." not in key.replace("self_attn.out_proj.", "out."):
                rest = key[len(layer):]
                name = next((new + rest[len(old):] for old, new in renames.items() if rest.startswith(old)), None)
                if name is None:
                    raise KeyError(f"no OpenCLIP name for {key!r}")
                out[block + name] = tensor
    return out


def pipeline_to_sgm(pipe) -> dict[str, torch.Tensor]:
    positions = pipe.text_encoder.config.max_position_embeddings
    merged = {
        **rename_keys(pipe.unet.state_dict(), sdxl_unet_prefix_map(pipe.unet.config),
                      out_prefix="model.diffusion_model."),
        **vae_to_ldm(pipe.vae),
        **{f"conditioner.embedders.0.transformer.{k}": v for k, v in pipe.text_encoder.state_dict().items()},
        "conditioner.embedders.0.transformer.text_model.embeddings.position_ids": torch.arange(positions)[None],
        **{f"conditioner.embedders.1.model.{k}": v for k, v in open_clip_state_dict(pipe.text_encoder_2).items()},
    }
    return {key: tensor.detach().contiguous() for key, tensor in merged.items()}


def write_sgm_single_file(pipeline_dir: Path, out_path: Path) -> Path:
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    pipe = StableDiffusionXLPipeline.from_pretrained(str(pipeline_dir), local_files_only=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(pipeline_to_sgm(pipe), str(out_path), metadata={"format": "pt"})
    return out_path


def build_tiny_sdxl(out_root: Path, tokenizer_dir: Path) -> dict[str, Path]:
    """Cached tiny SDXL artefacts: {"pipeline": folder, "config": its weight-free copy, "controlnet": folder,
    "single_file": .safetensors}."""
    from .cache import cached_dir
    from .tiny_sd import build_config_only

    pipeline = cached_dir(out_root / "sdxl", lambda tmp: save_pipeline(tmp, tokenizer_dir))
    config = build_config_only(pipeline, out_root / "sdxl-config")
    controlnet = cached_dir(out_root / "sdxl-controlnet-canny", save_controlnet)
    name = "tiny-sdxl.safetensors"
    folder = cached_dir(out_root / "tiny-sdxl", lambda tmp: write_sgm_single_file(pipeline, tmp / name))
    return {"pipeline": pipeline, "config": config, "controlnet": controlnet, "single_file": folder / name}
