"""One training step of the native generator, as the seed recipe has it:

    generator step   real → class-wise encoder → z = μ + σ·ε → G(z, layout) → white outside the mask
                     loss = hinge(D(fake)) + λ_feat·masked feature matching + λ_vgg·VGG + λ_style·Gram
                            + λ_kld·KL(μ, σ)
    discriminator    hinge on (layout, real) as real, (layout, fake) as fake, and (layout, visualise(layout)) as
                     fake too (weight λ_layout_fake): flat palette colours are not a garment, so the generator is
                     pushed to real textures

The two Adam optimisers follow SPADE's TTUR (G 1e-4, D 4e-4, β = (0, 0.9)); the learning rates stay constant, so
where a training stops never changes its path. All randomness of step s comes from (seed, s): a resumed run repeats
an uninterrupted one exactly (on the CPU; CUDA kernels may differ in the last bits).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from easyphoto.design.layout import NUM_CLASSES, visualise
from easyphoto.design.smis import losses
from easyphoto.design.smis.cache import LayoutCache, batch_indices, flips
from easyphoto.design.smis.checkpoint import load_module, load_optimizer, module_tensors, optimizer_tensors
from easyphoto.design.smis.config import DesignTrainConfig
from easyphoto.design.smis.discriminator import MultiScaleDiscriminator
from easyphoto.design.smis.generator import ClassEncoder, GarmentGenerator, composite_white, one_hot, reparameterise
from easyphoto.design.smis.vgg import VGGFeatures, perceptual_and_style
from easyphoto.errors import EasyPhotoError

LOSS_TERMS = ("g_gan", "g_feat", "g_vgg", "g_style", "g_kld", "g_total", "d_real", "d_fake", "d_layout", "d_total")


class TrainingDiverged(EasyPhotoError):
    """A loss became NaN or infinite: the weights would be garbage from here on."""

    phase = "design"
    http_status = 500


def build_generator(config: DesignTrainConfig) -> GarmentGenerator:
    return GarmentGenerator(NUM_CLASSES, config.width, config.latent_channels, config.levels)


def to_images(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class SMISTrainer:
    def __init__(self, config: DesignTrainConfig, device: torch.device, vgg: VGGFeatures | None):
        torch.manual_seed(config.seed)  # the initial weights: the only draw from the global generator
        self.config, self.device, self.vgg = config, device, vgg
        self.generator = build_generator(config).to(device)
        self.encoder = ClassEncoder(NUM_CLASSES, config.encoder_width, config.latent_channels, config.levels).to(device)
        self.discriminator = MultiScaleDiscriminator(NUM_CLASSES, config.disc_width, config.disc_layers,
                                                     config.discriminators).to(device)
        betas = (config.beta1, config.beta2)
        g_params = list(self.generator.parameters()) + list(self.encoder.parameters())
        self.opt_g = torch.optim.Adam(g_params, lr=config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_d, betas=betas)

    # ------------------------------------------------------------------ state
    def tensors(self) -> dict[str, torch.Tensor]:
        return {**module_tensors("generator", self.generator), **module_tensors("encoder", self.encoder),
                **module_tensors("discriminator", self.discriminator),
                **optimizer_tensors("opt_g", self.opt_g), **optimizer_tensors("opt_d", self.opt_d)}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        for prefix, module in (("generator", self.generator), ("encoder", self.encoder),
                               ("discriminator", self.discriminator)):
            load_module(prefix, module, tensors)
        load_optimizer("opt_g", self.opt_g, tensors)
        load_optimizer("opt_d", self.opt_d, tensors)

    # ------------------------------------------------------------------ one step
    def batch(self, cache: LayoutCache, step: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(real images, labels, numpy labels) of step `step`, mirrored where flips() says, white outside masks."""
        cfg = self.config
        rows = batch_indices(len(cache), cfg.batch_size, step, cfg.seed)
        pixels, labels = np.asarray(cache.images[rows]), np.asarray(cache.labels[rows])  # copies, not views
        mirror = flips(cfg.batch_size, step, cfg.seed)
        pixels[mirror], labels[mirror] = pixels[mirror, :, ::-1], labels[mirror, :, ::-1]
        label_tensor = torch.from_numpy(np.ascontiguousarray(labels)).to(self.device).long()
        return composite_white(to_images(pixels, self.device), label_tensor), label_tensor, labels

    def train_step(self, cache: LayoutCache, step: int) -> dict[str, float]:
        real, labels, numpy_labels = self.batch(cache, step)
        layout = one_hot(labels)
        noise = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        fake, g_losses = self._generator_step(real, labels, layout, noise)
        visual = to_images(np.stack([visualise(item) for item in numpy_labels]), self.device)
        d_losses = self._discriminator_step(real, fake.detach(), visual, layout)
        values = {k: float(v) for k, v in {**g_losses, **d_losses}.items()}
        bad = sorted(k for k, v in values.items() if not math.isfinite(v))
        if bad:
            raise TrainingDiverged(f"Step {step + 1}: the loss(es) {', '.join(bad)} are not finite.",
                                   hint="Resume from the last checkpoint with lower learning rates (lr_g, lr_d).")
        return values

    def _generator_step(self, real, labels, layout, noise) -> tuple[torch.Tensor, dict]:
        cfg = self.config
        self.discriminator.requires_grad_(False)
        mu, logvar = self.encoder(real, layout)
        fake = composite_white(self.generator(reparameterise(mu, logvar, noise), layout), labels)
        fake_judged = self.discriminator(layout, fake)
        with torch.no_grad():
            real_judged = self.discriminator(layout, real)
        mask = (labels < NUM_CLASSES).unsqueeze(1).float()
        terms = {"g_gan": losses.g_hinge(fake_judged),
                 "g_feat": losses.masked_feature_matching(fake_judged, real_judged, mask),
                 "g_kld": losses.kl_divergence(mu, logvar)}
        if self.vgg is not None:
            terms["g_vgg"], terms["g_style"] = perceptual_and_style(self.vgg, fake, real)
        else:  # both weights are 0: no VGG needed
            terms["g_vgg"] = terms["g_style"] = fake.new_zeros(())
        total = (terms["g_gan"] + cfg.lambda_feat * terms["g_feat"] + cfg.lambda_vgg * terms["g_vgg"]
                 + cfg.lambda_style * terms["g_style"] + cfg.lambda_kld * terms["g_kld"])
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.discriminator.requires_grad_(True)
        return fake, {**{k: v.detach() for k, v in terms.items()}, "g_total": total.detach()}

    def _discriminator_step(self, real, fake, visual, layout) -> dict:
        terms = {"d_real": losses.d_hinge(self.discriminator(layout, real), real=True),
                 "d_fake": losses.d_hinge(self.discriminator(layout, fake), real=False),
                 "d_layout": losses.d_hinge(self.discriminator(layout, visual), real=False)}
        total = terms["d_real"] + terms["d_fake"] + self.config.lambda_layout_fake * terms["d_layout"]
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()
        return {**{k: v.detach() for k, v in terms.items()}, "d_total": total.detach()}


def needs_vgg(config: DesignTrainConfig) -> bool:
    return config.lambda_vgg > 0 or config.lambda_style > 0


def pick_device(name: str | None) -> torch.device:
    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def render(generator: GarmentGenerator, labels: np.ndarray, seed: int, latent_size: int,
           device: torch.device) -> np.ndarray:
    """(B, H, W) labels → (B, H, W, 3) uint8 images from the prior's latent drawn with `seed`, white outside each
    layout's mask (by construction: composite_white)."""
    label_tensor = torch.from_numpy(np.array(labels, dtype=np.int64)).to(device)  # a copy: the cache is read-only
    latent = generator.random_latent(len(labels), latent_size, torch.Generator().manual_seed(seed), device)
    with torch.no_grad():
        image = composite_white(generator(latent, one_hot(label_tensor)), label_tensor)
    pixels = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def sample_grid(generator: GarmentGenerator, cache: LayoutCache, config: DesignTrainConfig, device: torch.device,
                path: Path, rows: int = 4) -> Path:
    """A PNG of up to `rows` training layouts: colour visualisation | generated (fixed seed) | real photo."""
    from PIL import Image

    from easyphoto.store import atomic_path

    count = min(rows, len(cache))
    labels = np.asarray(cache.labels[:count])
    generated = render(generator, labels, config.seed, config.latent_size, device)
    lines = [np.concatenate([visualise(labels[i]), generated[i], np.asarray(cache.images[i])], axis=1)
             for i in range(count)]
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(lines, axis=0)).save(tmp, format="PNG")
    return path
