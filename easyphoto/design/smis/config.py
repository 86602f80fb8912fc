"""The native garment generator's training settings: one typed config (the UI builds its form from it, the API and
the CLI validate into it). Defaults are the seed recipe's: 256×256 layouts, batch 4, SPADE's two time-scale update
rule (G 1e-4, D 4e-4, Adam β = (0, 0.9)) and loss weights (feature matching 10, VGG 10, KL 0.05)."""

from __future__ import annotations

from pydantic import Field

from easyphoto.config import ConfigModel, _cross_field_check, _require, in_group

_DATA, _TRAINING, _LOSSES, _NETWORK, _OUTPUT = "Data", "Training", "Losses", "Network", "Samples and checkpoints"

# Fields a resumed training may change: they do not alter the networks or the path a step takes.
RESUME_MAY_CHANGE = frozenset({"steps", "sample_every", "checkpoint_every", "keep_checkpoints"})


class DesignTrainConfig(ConfigModel):
    """Training of the native (SMIS/SPADE-family) garment generator on a dataset in the FGVC6 layout."""

    image_size: int = Field(256, ge=64, le=1024, description="Side of the square training images and layouts "
                            "(photos are letterboxed onto white once, into the cache).", **in_group(_DATA))
    batch_size: int = Field(4, ge=1, le=64, description="Layouts per step.", **in_group(_TRAINING))
    steps: int = Field(20_000, ge=1, le=10_000_000, description="Training steps (one generator and one "
                       "discriminator update each).", **in_group(_TRAINING))
    lr_g: float = Field(1e-4, gt=0, le=1e-2, description="Generator (and encoder) learning rate.",
                        **in_group(_TRAINING))
    lr_d: float = Field(4e-4, gt=0, le=1e-2, description="Discriminator learning rate (TTUR: 4× the "
                        "generator's).", **in_group(_TRAINING))
    beta1: float = Field(0.0, ge=0, lt=1, description="Adam β1 (SPADE: 0).", **in_group(_TRAINING, advanced=True))
    beta2: float = Field(0.9, ge=0, lt=1, description="Adam β2 (SPADE: 0.9).", **in_group(_TRAINING, advanced=True))
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the weights, the data order and the noise: the "
                      "same seed gives the same training, resumed or not.", **in_group(_TRAINING, advanced=True))
    lambda_feat: float = Field(10.0, ge=0, le=1000, description="Discriminator feature matching, inside the "
                               "garment mask only.", **in_group(_LOSSES))
    lambda_vgg: float = Field(10.0, ge=0, le=1000, description="VGG19 perceptual loss.", **in_group(_LOSSES))
    lambda_style: float = Field(10.0, ge=0, le=100_000, description="Gram-matrix style loss on the VGG19 "
                                "features.", **in_group(_LOSSES))
    lambda_kld: float = Field(0.05, ge=0, le=100, description="KL divergence of the style encoder's latent.",
                              **in_group(_LOSSES))
    lambda_layout_fake: float = Field(1.0, ge=0, le=100, description="Discriminator task: the layout's colour "
                                      "visualisation is fake (pushes real textures instead of flat colours).",
                                      **in_group(_LOSSES, advanced=True))
    width: int = Field(64, ge=1, le=256, description="Generator channel width (SPADE's nf: the first block has 16×).",
                       **in_group(_NETWORK, advanced=True))
    levels: int = Field(5, ge=2, le=7, description="Up-sampling blocks: the latent is image_size / 2^levels.",
                        **in_group(_NETWORK, advanced=True))
    encoder_width: int = Field(4, ge=1, le=32, description="Style encoder channels per garment class (one "
                               "group per class).", **in_group(_NETWORK, advanced=True))
    latent_channels: int = Field(4, ge=1, le=32, description="Latent channels per garment class.",
                                 **in_group(_NETWORK, advanced=True))
    disc_width: int = Field(64, ge=1, le=256, description="Discriminator channel width.",
                            **in_group(_NETWORK, advanced=True))
    discriminators: int = Field(2, ge=1, le=4, description="Discriminator heads, each at half the previous "
                                "scale.", **in_group(_NETWORK, advanced=True))
    disc_layers: int = Field(4, ge=1, le=6, description="Strided layers per discriminator head.",
                             **in_group(_NETWORK, advanced=True))
    sample_every: int = Field(500, ge=1, le=1_000_000, description="Steps between sample grids (layout | "
                              "generated | real).", **in_group(_OUTPUT))
    checkpoint_every: int = Field(1000, ge=1, le=1_000_000, description="Steps between resumable checkpoints.",
                                  **in_group(_OUTPUT))
    keep_checkpoints: int = Field(3, ge=1, le=100, description="Checkpoints kept (older ones are deleted).",
                                  **in_group(_OUTPUT, advanced=True))

    check_latent_size = _cross_field_check(
        "check_latent_size",
        lambda v: _require(v["image_size"] % 2 ** v["levels"] == 0 and v["image_size"] // 2 ** v["levels"] >= 2,
                           "image_size must be a multiple of 2^levels, with a latent of at least 2×2"),
    )

    @property
    def latent_size(self) -> int:
        return self.image_size // 2**self.levels

    def architecture(self) -> dict:
        """The fields that shape the networks and the training path (all but RESUME_MAY_CHANGE)."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUME_MAY_CHANGE and k != "config_version"}
