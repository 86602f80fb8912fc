"""The zero-shot try-on backends, torch-free: what each is, its licence, its files, and the licence gate.

    info = backend_info("catvton")
    info.describe_licence()              # "CatVTON: CC BY-NC-SA 4.0 (...) (NON-COMMERCIAL use only)"
    check_licence(info, settings)        # NonCommercialNotAllowed unless Settings.allow_noncommercial_tryon
    weight_ids("ootd", "dc")             # the models.json ids this backend + variant reads

The UI, the API and the CLI read this module to list the backends and show each licence before anything is
downloaded; the backends themselves (leffa.py, catvton.py, ootd.py) import torch and diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from easyphoto.errors import EasyPhotoError

DEFAULT_BACKEND = "leffa"  # MIT: the default for anyone who may use results commercially
LICENCE_SETTING = "allow_noncommercial_tryon"


@dataclass(frozen=True)
class BackendInfo:
    name: str  # "leffa", "catvton", "ootd"
    title: str
    licence: str  # of the weights, as published
    commercial: bool  # False: non-commercial only; needs Settings.allow_noncommercial_tryon
    size: tuple[int, int]  # (width, height) of its default variant
    steps: int  # its app's default number of steps
    guidance: float  # its default classifier-free guidance scale
    scheduler: str  # sampling.SCHEDULERS
    paper: str  # where the defaults come from
    weights: tuple[str, ...]  # models.json ids every variant reads
    default_variant: str
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)  # variant → its own weight ids
    variant_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)  # variant → categories it was trained on
    note: str = ""

    def describe_licence(self) -> str:
        use = "commercial use allowed" if self.commercial else "NON-COMMERCIAL use only"
        return f"{self.title}: {self.licence} ({use})"

    def size_of(self, variant: str) -> tuple[int, int]:
        return self.variant_sizes.get(variant, self.size)

    def variant_for(self, category: str, variant: str | None) -> str:
        """The requested variant, or the first one trained on `category` (the default when it is)."""
        if variant:
            if variant not in self.variants:
                raise UnknownBackend(f"{self.title} has no variant {variant!r}.",
                                     hint=f"Use one of {', '.join(self.variants)}.")
            trained = self.categories.get(variant, (category,))
            if category not in trained:
                raise UnknownBackend(f"{self.title}'s {variant!r} model was trained on {'/'.join(trained)} garments "
                                     f"only, not {category!r}.",
                                     hint="Leave the variant empty: the one trained on the category is chosen.")
            return variant
        if category in self.categories.get(self.default_variant, (category,)):
            return self.default_variant
        return next((v for v, cats in self.categories.items() if category in cats), self.default_variant)


class UnknownBackend(EasyPhotoError):
    phase = "tryon"
    http_status = 422


class NonCommercialNotAllowed(EasyPhotoError):
    """A non-commercial backend was asked for without the explicit opt-in setting."""

    phase = "tryon"
    http_status = 403


LEFFA = BackendInfo(
    name="leffa", title="Leffa", licence="MIT (code and weights, franciszzj/Leffa)", commercial=True,
    size=(768, 1024), steps=30, guidance=2.5, scheduler="ddpm",
    paper="Leffa app defaults (30 steps, guidance 2.5, DDPM; its pipeline's own default is 50 steps)",
    weights=("leffa-unet-config", "leffa-vae-config", "leffa-scheduler-config"),
    default_variant="viton_hd",
    variants={"viton_hd": ("leffa-viton-hd",), "dress_code": ("leffa-dress-code",)},
    categories={"viton_hd": ("upper", "lower", "dress"), "dress_code": ("upper", "lower", "dress")},
    note="Fine-tuned from SD 1.5-inpainting (CreativeML OpenRAIL-M) on VITON-HD / DressCode (research datasets). "
         "Its DensePose input is approximated from the clothes parsing and the pose (DensePose needs detectron2).",
)
CATVTON = BackendInfo(
    name="catvton", title="CatVTON", licence="CC BY-NC-SA 4.0 (Zheng-Chong/CatVTON: code, weights and demo)",
    commercial=False, size=(768, 1024), steps=50, guidance=2.5, scheduler="ddim",
    paper="CatVTON app defaults (50 steps, guidance 2.5, DDIM η 1.0)",
    weights=("catvton-unet-config", "catvton-unet-weights", "catvton-scheduler-config", "catvton-vae-config",
             "catvton-vae-weights"),
    default_variant="mix",
    variants={"mix": ("catvton-attention-mix",), "vitonhd": ("catvton-attention-vitonhd",),
              "dresscode": ("catvton-attention-dresscode",)},
    variant_sizes={"mix": (768, 1024), "vitonhd": (384, 512), "dresscode": (384, 512)},
    categories={"mix": ("upper", "lower", "dress"), "vitonhd": ("upper",), "dresscode": ("upper", "lower", "dress")},
    note="Base: SD 1.5-inpainting (CreativeML OpenRAIL-M); VAE: stabilityai/sd-vae-ft-mse.",
)
OOTD = BackendInfo(
    name="ootd", title="OOTDiffusion", licence="CC BY-NC-SA 4.0 (levihsu/OOTDiffusion: code and weights)",
    commercial=False, size=(768, 1024), steps=20, guidance=2.0, scheduler="unipc",
    paper="OOTDiffusion app defaults (UniPC 20 steps, image guidance 2.0)",
    weights=("ootd-vae-config", "ootd-vae-weights", "ootd-text-config", "ootd-text-weights", "ootd-tokenizer-vocab",
             "ootd-tokenizer-merges", "ootd-tokenizer-config", "ootd-tokenizer-special", "ootd-scheduler-config",
             "clip-vit-large-config", "clip-vit-large-weights", "clip-vit-large-preprocessor"),
    default_variant="hd",
    variants={"hd": ("ootd-hd-garm-config", "ootd-hd-garm-weights", "ootd-hd-vton-config", "ootd-hd-vton-weights"),
              "dc": ("ootd-dc-garm-config", "ootd-dc-garm-weights", "ootd-dc-vton-config", "ootd-dc-vton-weights")},
    categories={"hd": ("upper",), "dc": ("upper", "lower", "dress")},
    note="Fine-tuned from SD 1.5 (CreativeML OpenRAIL-M); garment embedding by CLIP ViT-L/14 (MIT).",
)
BACKENDS: dict[str, BackendInfo] = {info.name: info for info in (LEFFA, CATVTON, OOTD)}
GROUPS = {"leffa": "tryon-leffa", "catvton": "tryon-catvton", "ootd": "tryon-ootd"}  # models.json groups


def backend_info(name: str) -> BackendInfo:
    if name not in BACKENDS:
        raise UnknownBackend(f"Unknown try-on backend {name!r}.",
                             hint=f"Use one of {', '.join(BACKENDS)} (or 'lora' for a trained garment).")
    return BACKENDS[name]


def weight_ids(name: str, variant: str) -> list[str]:
    info = backend_info(name)
    return [*info.weights, *info.variants[variant]]


def check_licence(info: BackendInfo, settings) -> None:
    """Refuse a non-commercial backend unless the user opted in (Settings.allow_noncommercial_tryon)."""
    if info.commercial or getattr(settings, LICENCE_SETTING, False):
        return
    raise NonCommercialNotAllowed(
        f"{info.describe_licence()}. Its weights may not be used for commercial work, so EasyPhoto runs and downloads "
        "it only when you opt in.",
        hint="If your use is non-commercial, turn on \"Allow non-commercial try-on models\" (Settings → EasyPhoto; "
             "standalone: settings.json \"allow_noncommercial_tryon\": true). Otherwise use Leffa (MIT).")


def licence_record(info: BackendInfo, variant: str) -> dict:
    """What every output of a backend stores about where it came from."""
    return {"backend": info.name, "variant": variant, "licence": info.licence, "commercial_use": info.commercial,
            "note": info.note}


__all__ = ["BACKENDS", "BackendInfo", "DEFAULT_BACKEND", "GROUPS", "NonCommercialNotAllowed", "UnknownBackend",
           "backend_info", "check_licence", "licence_record", "weight_ids"]
