"""A tiny DPT-hybrid depth estimator and a tiny depth ControlNet with random weights, for the try-on tests.

Why: easyphoto.tryon.depth loads Intel/dpt-hybrid-midas (`DPTForDepthEstimation` with a BiT backbone, ~490 MB) from
a local folder, and the try-on's depth control needs control_v11f1p_sd15_depth; neither can be downloaded here.
:func:`save_tiny_dpt` writes the same architecture (hybrid DPT: BiT stages for the first two neck levels, ViT layers
for the last two; the same config keys and weight names) at ~115k parameters, as config.json + model.safetensors,
the layout the real folder has. Its `image_size` is 64 (the real one 384): the hybrid model needs exactly that
square input, which the estimator resizes to. The depth ControlNet is the kit's usual tiny ControlNet (derived from
the tiny UNet, seed 14), kept in its own folder until tests/kit/tiny_sd.py builds one per CONTROLNET_MODELS kind.
"""

from __future__ import annotations

from pathlib import Path

DEPTH_CONTROLNET_SEED = 14
DPT_SEED = 21
DPT_CONFIG = {
    "is_hybrid": True,
    "backbone_config": {"global_padding": "same", "layer_type": "bottleneck", "depths": [1, 1, 1],
                        "hidden_sizes": [16, 32, 64], "embedding_size": 16, "num_groups": 8,
                        "out_features": ["stage1", "stage2", "stage3"]},
    "backbone_featmap_shape": [1, 64, 4, 4],  # stage3 at 1/16 of the 64 px input
    "image_size": 64,
    "patch_size": 16,
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "backbone_out_indices": [0, 1, 2, 3],
    "neck_hidden_sizes": [16, 32, 32, 32],
    "fusion_hidden_size": 16,
    "reassemble_factors": [1, 1, 1, 0.5],
    "head_in_index": -1,
}


def save_tiny_dpt(out_dir: Path) -> None:
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(DPT_SEED)
    model = DPTForDepthEstimation(DPTConfig(**DPT_CONFIG)).eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)


def tiny_dpt_dir(root: Path) -> Path:
    """Cached folder with the tiny DPT's config.json + model.safetensors."""
    from .cache import cached_dir

    return cached_dir(Path(root) / "tryon" / "dpt-hybrid-midas", save_tiny_dpt)


def tiny_depth_controlnet_dir(root: Path) -> Path:
    """Cached diffusers folder of a tiny depth ControlNet (the kit's tiny ControlNet recipe, its own seed)."""
    from .cache import cached_dir
    from .tiny_sd import save_controlnet

    return cached_dir(Path(root) / "tryon" / "controlnet-depth", lambda tmp: save_controlnet(tmp, DEPTH_CONTROLNET_SEED))
