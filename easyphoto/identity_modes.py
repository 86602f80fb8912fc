"""Training-free identity: a portrait's face from the identity's reference photo alone, through the host's ControlNet.

Three published methods condition the UNet on a face embedding instead of an identity LoRA. Each needs its own
adapter models in the ControlNet folder (file stems below, as sd-webui-controlnet 1.1.455 and Forge recognise them)
and, for IP-Adapter-FaceID, a companion LoRA in the Lora folder. Which preprocessor computes the embedding is the
host's business (easyphoto.backends.webui.controlnet); the face embedders those preprocessors run (insightface
buffalo_l / antelopev2) are downloaded by the host's ControlNet itself and are licensed for non-commercial research
only, which is why every portrait rendered this way carries the licence text below (easyphoto.portrait.outputs).

Torch-free on purpose, like easyphoto.generation.
"""

from __future__ import annotations

from dataclasses import dataclass

from easyphoto.generation import GenerationError

IDENTITY_MODES = ("lora", "instantid", "faceid", "pulid")  # "lora" = the trained identity LoRA (no face units)
TRAINING_FREE = IDENTITY_MODES[1:]


@dataclass(frozen=True)
class IdentityModels:
    """The models one method needs for one base family."""

    units: tuple[str, ...]  # ControlNet-folder model stems, in unit order (the IP-Adapter before its ControlNet)
    lora: str | None = None  # a LoRA the method is trained with (IP-Adapter-FaceID), applied with the units


# sd-webui-controlnet's IP-Adapter presets (scripts/ipadapter/presets.py) and InstantID's release note (its PR #2580)
# name these stems; InstantID files must be renamed to them to be recognised ("instant_id" in the file name).
IDENTITY_MODELS: dict[str, dict[str, IdentityModels]] = {
    "instantid": {"sdxl": IdentityModels(("ip-adapter_instant_id_sdxl", "control_instant_id_sdxl"))},
    "faceid": {
        "sd15": IdentityModels(("ip-adapter-faceid-plusv2_sd15",), "ip-adapter-faceid-plusv2_sd15_lora"),
        "sdxl": IdentityModels(("ip-adapter-faceid-plusv2_sdxl",), "ip-adapter-faceid-plusv2_sdxl_lora"),
    },
    "pulid": {"sdxl": IdentityModels(("ip-adapter_pulid_sdxl_fp16",))},
}

METHOD_NAMES = {"instantid": "InstantID", "faceid": "IP-Adapter-FaceID Plus v2", "pulid": "PuLID"}

INSIGHTFACE_LICENCE = ("insightface face models (buffalo_l / antelopev2, downloaded by the WebUI's ControlNet): "
                       "non-commercial research use only")
IDENTITY_LICENCES: dict[str, str] = {
    "instantid": f"InstantID weights (InstantX/InstantID): Apache-2.0; {INSIGHTFACE_LICENCE}",
    "faceid": ("IP-Adapter-FaceID weights (h94/IP-Adapter-FaceID): released for non-commercial research only "
               f"(they are trained on insightface embeddings); {INSIGHTFACE_LICENCE}"),
    "pulid": ("PuLID weights (guozinan/PuLID, IP-Adapter form huchenlei/ipadapter_pulid): Apache-2.0; EVA-CLIP: MIT; "
              f"{INSIGHTFACE_LICENCE}"),
}

DEFAULT_WEIGHTS = {"instantid": 0.8, "faceid": 0.8, "pulid": 0.8}


def is_training_free(mode: str) -> bool:
    return mode in TRAINING_FREE


def identity_models(method: str, family: str) -> IdentityModels:
    """The models `method` needs on a `family` base; GenerationError (before anything runs) where none exist."""
    if method not in IDENTITY_MODELS:
        raise GenerationError(f"Unknown training-free identity method {method!r}.", hint=f"Use one of {TRAINING_FREE}.")
    by_family = IDENTITY_MODELS[method]
    if family not in by_family:
        label = {"sd15": "SD 1.5", "sdxl": "SDXL"}
        fits = " or ".join(label[f] for f in by_family)
        others = ", ".join(m for m, f in IDENTITY_MODELS.items() if family in f)
        raise GenerationError(
            f"{METHOD_NAMES[method]} has no models for {label.get(family, family)} checkpoints; it needs {fits}.",
            hint=f"Select an {fits} checkpoint in the WebUI, or choose another identity mode (lora"
                 f"{', ' + others if others else ''} work on this one).")
    return by_family[family]
