"""A tiny Stable Diffusion 1.5 with random weights: same architecture and file layout, ~100x smaller.

Why: real SD 1.5 weights are gigabytes on a hub the tests cannot reach, yet the code under test
(LoRA training, inpaint + ControlNet inference, single-file loading) only cares that the
modules have SD 1.5's *shape of architecture*: the block types, a 4-channel latent with a VAE
scale factor of 8, a CLIP text encoder with the real 49408-token vocabulary, 9-channel inpaint
UNets, ControlNets derived from the UNet. Every model here is built from a config with a fixed
seed, so the same kit version always produces bit-identical weights on a given torch build.

Folders written by :func:`build_tiny_sd` (all loadable with ``from_pretrained``):

* ``txt2img``  - ``StableDiffusionPipeline`` (4-channel UNet)
* ``inpaint``  - ``StableDiffusionInpaintPipeline`` (9-channel UNet: latents + mask + masked latents)
* ``controlnet/<kind>`` - ``ControlNetModel`` made with ``ControlNetModel.from_unet`` of the txt2img
  UNet (ControlNets see only the 4 latent channels, also in the inpaint pipeline), one per kind
  and seed.

Image side: 64x64 pixels -> 8x8 latents; the UNet's ``sample_size`` is 8 accordingly.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

SEEDS = {"unet": 0, "inpaint_unet": 1, "vae": 2, "text_encoder": 3}
# One tiny ControlNet per control kind of easyphoto.generation.CONTROLNET_MODELS. A kind added here is built into
# an existing kit cache on first use (build_tiny_sd checks each folder), so KIT_VERSION need not change.
CONTROLNET_SEEDS = {"canny": 10, "openpose": 11, "color": 12, "tile": 13, "depth": 14, "seg": 15}
IMAGE_SIZE = 64
LATENT_CHANNELS = 4
CROSS_ATTENTION_DIM = 32

UNET_CONFIG = {
    "sample_size": IMAGE_SIZE // 8,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "cross_attention_dim": CROSS_ATTENTION_DIM,
    "attention_head_dim": 4,
    "use_linear_projection": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
}

VAE_CONFIG = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": LATENT_CHANNELS,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [32, 32, 64, 64],  # 4 levels: VAE scale factor 8, like SD's (128, 256, 512, 512)
    "layers_per_block": 1,
    "norm_num_groups": 32,  # ldm hard-codes 32 groups; keeps the generated ldm yaml loadable
    "act_fn": "silu",
    "scaling_factor": 0.18215,
}

TEXT_ENCODER_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": CROSS_ATTENTION_DIM,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 77,
    "projection_dim": CROSS_ATTENTION_DIM,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}

SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

CONTROLNET_EMBEDDING_CHANNELS = (16, 32, 32, 32)


@dataclass(frozen=True)
class TinySDPaths:
    """Where :func:`build_tiny_sd` put each diffusers folder."""

    txt2img: Path
    inpaint: Path
    controlnets: dict[str, Path]


@contextmanager
def torch_threads(count: int = 1):
    """Run a block with ``count`` torch intra-op threads, restoring the previous setting afterwards.

    Why: the tiny models are too small to gain from threads, and on a 2-core machine shared with
    another busy process, torch's 2 OpenMP threads wait on each other: a 4-step tiny inpaint
    measured 0.3 s single-threaded vs 3-8 s (up to 80 s for the test) with 2 threads.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _seeded(seed: int):
    """Fix torch's global RNG so that module construction draws the same weights every time."""
    torch.manual_seed(seed)


def make_unet(in_channels: int = LATENT_CHANNELS, seed: int = SEEDS["unet"]):
    """SD 1.5-style UNet (CrossAttn down/up blocks, cross-attn mid block); 9 input channels = inpaint."""
    from diffusers import UNet2DConditionModel

    _seeded(seed)
    return UNet2DConditionModel(**{**UNET_CONFIG, "in_channels": in_channels}).eval()


def make_vae(seed: int = SEEDS["vae"]):
    """AutoencoderKL with 4 resolution levels, i.e. SD's VAE scale factor of 8."""
    from diffusers import AutoencoderKL

    _seeded(seed)
    return AutoencoderKL(**VAE_CONFIG).eval()


def make_text_encoder(seed: int = SEEDS["text_encoder"]):
    """CLIPTextModel with the real CLIP vocabulary size and 77 positions, but width 32 and 2 layers."""
    from transformers import CLIPTextConfig, CLIPTextModel

    _seeded(seed)
    return CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER_CONFIG)).eval()


def make_scheduler():
    """DDIM with SD 1.5's training noise schedule (DDIM: deterministic, fine with 4 steps)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


def make_controlnet(unet, seed: int):
    """ControlNet initialised from ``unet`` (as real SD 1.5 ControlNets were); ``seed`` varies its zero-convs.

    ``from_unet`` copies the UNet encoder and zero-initialises the output convs, which would make
    every ControlNet a no-op; the zero convs and the conditioning embedding are therefore redrawn
    from ``seed`` so that two ControlNets really differ and really change the result.
    """
    from diffusers import ControlNetModel

    _seeded(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONTROLNET_EMBEDDING_CHANNELS)
    with torch.no_grad():
        zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
        for module in [*zero_convs, controlnet.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0.0, 0.02)
            module.bias.normal_(0.0, 0.02)
    return controlnet.eval()


def load_tokenizer(tokenizer_dir: Path):
    """The real CLIP tokenizer built by :mod:`tests.kit.clip_tokenizer`."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(tokenizer_dir))


def save_pipeline(out_dir: Path, tokenizer_dir: Path, *, inpaint: bool) -> None:
    """Save a txt2img or inpaint pipeline folder (no safety checker, no feature extractor)."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    pipeline_cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    unet = make_unet(in_channels=9, seed=SEEDS["inpaint_unet"]) if inpaint else make_unet()
    pipe = pipeline_cls(
        vae=make_vae(),
        text_encoder=make_text_encoder(),
        tokenizer=load_tokenizer(tokenizer_dir),
        unet=unet,
        scheduler=make_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out_dir), safe_serialization=True)


def save_controlnet(out_dir: Path, seed: int) -> None:
    """Save one tiny ControlNet folder derived from the (seeded, hence identical) txt2img UNet."""
    make_controlnet(make_unet(), seed).save_pretrained(str(out_dir), safe_serialization=True)


def copy_configs_only(src: Path, out_dir: Path) -> None:
    """Copy a pipeline folder without any weight file.

    Why: ``from_single_file(config=...)`` must take *all* weights from the checkpoint. With a
    weight-free config folder any component it fails to find in the checkpoint cannot silently
    come from ``from_pretrained`` instead - loading then fails loudly.
    """
    weight_suffixes = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack")
    for path in sorted(src.rglob("*")):
        if path.is_file() and not path.name.endswith(weight_suffixes):
            dest = out_dir / path.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())


def read_model_index(pipeline_dir: Path) -> dict:
    """The pipeline's ``model_index.json`` as a dict (used by tests and by the host fixtures)."""
    return json.loads((pipeline_dir / "model_index.json").read_text())


def build_tiny_sd(out_root: Path, tokenizer_dir: Path) -> TinySDPaths:
    """Build (or reuse) every tiny SD folder under ``out_root``; see the module docstring for the layout."""
    from .cache import cached_dir

    txt2img = cached_dir(out_root / "txt2img", lambda tmp: save_pipeline(tmp, tokenizer_dir, inpaint=False))
    inpaint = cached_dir(out_root / "inpaint", lambda tmp: save_pipeline(tmp, tokenizer_dir, inpaint=True))
    controlnets = {
        kind: cached_dir(out_root / "controlnet" / kind, lambda tmp, seed=seed: save_controlnet(tmp, seed))
        for kind, seed in CONTROLNET_SEEDS.items()
    }
    return TinySDPaths(txt2img=txt2img, inpaint=inpaint, controlnets=controlnets)


def build_config_only(pipeline_dir: Path, target: Path) -> Path:
    """Cached weight-free copy of ``pipeline_dir`` (see :func:`copy_configs_only`)."""
    from .cache import cached_dir

    return cached_dir(target, lambda tmp: copy_configs_only(pipeline_dir, tmp))
