"""The base model (SD 1.5 or SDXL), for training and standalone inference: a diffusers folder or a WebUI single file.

    load_base(source, config_dir=None, dtype=torch.float32, device="cpu", allow_sdxl=False) -> BaseModel

SDXL (`allow_sdxl`, `BaseModel.family == "sdxl"`) adds the second text encoder (OpenCLIP bigG,
``CLIPTextModelWithProjection``) and its tokenizer; an SDXL single file (Stability's SGM layout) is loaded with
``StableDiffusionXLPipeline.from_single_file`` against the shipped ``easyphoto/sd/sdxl/`` configs, offline.

A single file must be ``.safetensors`` (a ``.ckpt`` is a pickle: loading one can run arbitrary code, so it is
refused with a hint to convert it). Before anything is loaded, the file's safetensors header alone (a few hundred
KB of JSON) is read to tell SD 1.x from SDXL, SD 2.x, inpainting models and LoRA files, so choosing the wrong
checkpoint fails in milliseconds with a message naming the file, instead of minutes later with a shape error.

A diffusers folder is loaded from its ``.safetensors`` weights only (``use_safetensors=True``, after checking that
each component has them): transformers 4.30 (A1111's) would otherwise unpickle a ``pytorch_model.bin``, which can
run arbitrary code, exactly what single-file ``.ckpt`` checkpoints are refused for.

The file is loaded with diffusers' ``StableDiffusionPipeline.from_single_file`` against a *local* config folder:
by default the shipped one in ``easyphoto/sd/sd15/`` (SD 1.5's component configs and CLIP tokenizer, no
weights), so nothing is fetched from the hub. ``model_hash`` is the WebUI's legacy 8-hex hash (sha256 of the
64 KiB at offset 1 MiB), the value the WebUI shows in brackets and writes as ``ss_sd_model_hash``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from easyphoto.errors import EasyPhotoError
from easyphoto.sd.mapped import own_file_backed_tensors
from easyphoto.store import safetensors_header

SHIPPED_CONFIG_DIR = Path(__file__).resolve().parent / "sd15"
SHIPPED_SDXL_CONFIG_DIR = Path(__file__).resolve().parent / "sdxl"
SHIPPED_TOKENIZER_DIR = SHIPPED_CONFIG_DIR / "tokenizer"  # CLIP BPE: SD 1.5's tokenizer and both of SDXL's
_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
_CHANGE_HINT = "Choose an SD 1.5 checkpoint (e.g. v1-5-pruned-emaonly.safetensors or a fine-tune of it) as the base."


class BaseModelError(EasyPhotoError):
    """The base checkpoint cannot be used as an SD 1.5 base (format, architecture or damage).

    Inference (easyphoto.backends.diffusers) re-raises it as a GenerationError; its phase stays "train", where
    it is raised as is."""

    phase = "train"
    http_status = 422


@dataclass
class BaseModel:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any  # DDPMScheduler with the model's training noise schedule
    source: Path
    model_hash: str | None
    family: str = "sd15"  # "sd15" or "sdxl" (easyphoto.generation.MODEL_FAMILIES)
    text_encoder_2: Any = None  # SDXL: OpenCLIP bigG with projection (its pooled output conditions the UNet)
    tokenizer_2: Any = None

    @property
    def text_encoders(self) -> list:
        return [m for m in (self.text_encoder, self.text_encoder_2) if m is not None]


def legacy_hash(path: Path | str) -> str:
    """The WebUI's old short model hash: first 8 hex digits of sha256(64 KiB at offset 1 MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(0x100000)
        digest.update(file.read(0x10000))
    return digest.hexdigest()[:8]


def read_safetensors_header(path: Path | str) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names → dtype/shape/offsets, plus ``__metadata__``)."""
    path = Path(path)
    try:
        return safetensors_header(path)
    except ValueError as exc:
        raise BaseModelError(
            f"{path.name} is not a readable .safetensors file ({exc}).",
            hint="The download may be incomplete or damaged; download the checkpoint again.",
        ) from exc


def detect_architecture(header: dict[str, Any]) -> str:
    """"sd1", "sd1-inpaint", "sdxl", "sd2", "lora" or "unknown", from the tensor names (and one shape)."""
    keys = [k for k in header if k != "__metadata__"]
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "sdxl"
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_")) for k in keys):
        return "lora"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        shape = header.get(_UNET_IN, {}).get("shape") or [0, 4]
        return "sd1" if len(shape) > 1 and shape[1] == 4 else "sd1-inpaint"
    return "unknown"


_REFUSALS = {
    "sdxl": ("is an SDXL checkpoint; the SD 1.5 trainer was chosen", _CHANGE_HINT),
    "sd2": ("is an SD 2.x checkpoint (OpenCLIP text encoder); only SD 1.5 bases are supported", _CHANGE_HINT),
    "sd1-inpaint": ("is an inpainting checkpoint (9-channel UNet); train on the matching non-inpainting model",
                    _CHANGE_HINT),
    "lora": ("is a LoRA, not a base checkpoint", "Choose a full model from models/Stable-diffusion as the base."),
    "unknown": ("is not a Stable Diffusion 1.x checkpoint in the WebUI (LDM) layout", _CHANGE_HINT),
}


def check_single_file(path: Path, *, allow_sdxl: bool = False) -> str:
    """Refuse anything that cannot be loaded, from the file name and header alone; returns "sd1" or "sdxl"."""
    suffix = path.suffix.lower()
    if suffix in (".ckpt", ".pt", ".pth", ".bin"):
        raise BaseModelError(
            f"The base checkpoint {path.name}: pickle checkpoints are not loaded; convert to .safetensors.",
            hint="Loading a pickle can run arbitrary code. Convert it once (e.g. the WebUI's Checkpoint Merger with "
            "safetensors output) or download the .safetensors release of the model.",
        )
    if suffix != ".safetensors":
        raise BaseModelError(f"The base checkpoint {path.name} is not a .safetensors file.", hint=_CHANGE_HINT)
    kind = detect_architecture(read_safetensors_header(path))
    if kind == "sdxl" and allow_sdxl:
        return kind
    if kind != "sd1":
        message, hint = _REFUSALS[kind]
        raise BaseModelError(f"The base checkpoint {path.name} {message}.", hint=hint)
    return kind


def load_base(
    source: Path | str,
    *,
    config_dir: Path | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    allow_inpaint: bool = False,
    allow_sdxl: bool = False,
) -> BaseModel:
    """Load UNet, VAE, text encoder, tokenizer and training scheduler from a diffusers folder or a single file.

    Nothing is downloaded (``local_files_only``); every weight is frozen (requires_grad False) and in eval mode.
    ``allow_inpaint`` also accepts a diffusers folder with a 9-channel inpainting UNet (inference can use one,
    training cannot); single-file inpainting checkpoints stay refused (the shipped config is the 4-channel one).
    ``allow_sdxl`` accepts SDXL checkpoints (folder or single file); without it they are refused by name.
    """
    source = Path(source)
    if not source.exists():
        raise BaseModelError(f"The base checkpoint {source} does not exist.", hint=_CHANGE_HINT)
    if source.is_dir():
        if allow_sdxl and _folder_is_sdxl(source):
            parts = _load_sdxl_folder(source, dtype)
        else:
            parts = {**_load_folder(source, dtype, allow_inpaint=allow_inpaint), "family": "sd15"}
        model_hash = _folder_hash(source)
    else:
        if check_single_file(source, allow_sdxl=allow_sdxl) == "sdxl":
            parts = _load_sdxl_single_file(source, Path(config_dir) if config_dir else SHIPPED_SDXL_CONFIG_DIR, dtype)
        else:
            parts = {**_load_single_file(source, Path(config_dir) if config_dir else SHIPPED_CONFIG_DIR, dtype),
                     "family": "sd15"}
        model_hash = legacy_hash(source)
    from diffusers import DDPMScheduler

    models = [m for m in (parts["unet"], parts["vae"], parts["text_encoder"], parts.get("text_encoder_2")) if m]
    own_file_backed_tensors(*models)  # else the weight files stay mapped and resident
    for model in models:
        model.requires_grad_(False)
        model.eval()
        model.to(device)
    return BaseModel(
        unet=parts["unet"],
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        noise_scheduler=DDPMScheduler.from_config(parts["scheduler"].config),
        source=source,
        model_hash=model_hash,
        family=parts["family"],
        text_encoder_2=parts.get("text_encoder_2"),
        tokenizer_2=parts.get("tokenizer_2"),
    )


def _folder_is_sdxl(folder: Path) -> bool:
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        return False
    return "XL" in str(json.loads(index_file.read_text(encoding="utf-8")).get("_class_name", ""))


def _load_sdxl_folder(folder: Path, dtype: torch.dtype) -> dict:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    if "Img2Img" in str(index.get("_class_name", "")) or not index.get("text_encoder"):
        raise BaseModelError(f"The diffusers folder {folder.name} is an SDXL refiner ({index.get('_class_name')}), "
                             "not a base model.", hint="Choose the SDXL base model (or a fine-tune of it).")
    missing = [p for p in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
               if not (folder / p).is_dir()]
    if missing:
        raise BaseModelError(f"The SDXL diffusers folder {folder} lacks {', '.join(missing)}.",
                             hint="Download the model again (diffusers layout, safetensors).")
    for component, stem in {**FOLDER_WEIGHTS, "text_encoder_2": "model"}.items():
        require_safetensors(folder / component, stem, what=f"the base model {folder.name}")
    options = {"local_files_only": True, "use_safetensors": True}
    return {
        "family": "sdxl",
        "unet": UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet", torch_dtype=dtype, **options),
        "vae": AutoencoderKL.from_pretrained(str(folder), subfolder="vae", torch_dtype=dtype, **options),
        "text_encoder": CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder", torch_dtype=dtype,
                                                      **options),
        "text_encoder_2": CLIPTextModelWithProjection.from_pretrained(str(folder), subfolder="text_encoder_2",
                                                                      torch_dtype=dtype, **options),
        "tokenizer": CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer", local_files_only=True),
        "tokenizer_2": CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer_2", local_files_only=True),
        "scheduler": DDPMScheduler.from_pretrained(str(folder), subfolder="scheduler", local_files_only=True),
    }


def sdxl_tokenizers(config_dir: Path) -> tuple[Any, Any]:
    """SDXL's two tokenizers: the config folder's own (a diffusers SDXL folder has both), else the shipped CLIP
    BPE twice, the second padding with "!" as SDXL's second tokenizer does."""
    from transformers import CLIPTokenizer

    if (config_dir / "tokenizer" / "vocab.json").is_file() and (config_dir / "tokenizer_2" / "vocab.json").is_file():
        return (CLIPTokenizer.from_pretrained(str(config_dir / "tokenizer"), local_files_only=True),
                CLIPTokenizer.from_pretrained(str(config_dir / "tokenizer_2"), local_files_only=True))
    return (CLIPTokenizer.from_pretrained(str(SHIPPED_TOKENIZER_DIR), local_files_only=True),
            CLIPTokenizer.from_pretrained(str(SHIPPED_TOKENIZER_DIR), local_files_only=True, pad_token="!"))


def _load_sdxl_single_file(path: Path, config_dir: Path, dtype: torch.dtype) -> dict:
    from diffusers import StableDiffusionXLPipeline

    if not (config_dir / "model_index.json").is_file():
        raise BaseModelError(f"The SDXL config folder {config_dir} has no model_index.json.",
                             hint="Reinstall EasyPhoto: easyphoto/sd/sdxl/ ships with it.")
    tokenizer, tokenizer_2 = sdxl_tokenizers(config_dir)
    try:
        pipe = StableDiffusionXLPipeline.from_single_file(
            str(path), config=str(config_dir), local_files_only=True, torch_dtype=dtype,
            tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise BaseModelError(
            f"The SDXL checkpoint {path.name} could not be loaded: {type(exc).__name__}: {exc}",
            hint="The file may be damaged, or an SDXL variant EasyPhoto does not know (refiner, Pony/Illustrious "
            "fine-tunes load like the base; SD3/Flux do not).",
        ) from exc
    return {"family": "sdxl", "unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder,
            "text_encoder_2": pipe.text_encoder_2, "tokenizer": pipe.tokenizer, "tokenizer_2": pipe.tokenizer_2,
            "scheduler": pipe.scheduler}


def _load_folder(folder: Path, dtype: torch.dtype, *, allow_inpaint: bool = False):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text(encoding="utf-8")) if index_file.is_file() else {}
    pipeline = str(index.get("_class_name", ""))
    if "XL" in pipeline:
        raise BaseModelError(f"The base model {folder.name} is SDXL ({pipeline}); the SD 1.5 trainer was chosen.",
                             hint=_CHANGE_HINT)
    missing = [p for p in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if not (folder / p).is_dir()]
    if missing:
        raise BaseModelError(f"The diffusers folder {folder} lacks {', '.join(missing)}.", hint=_CHANGE_HINT)
    unet_config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    cross = unet_config.get("cross_attention_dim") or 0
    channels_ok = unet_config.get("in_channels", 4) in ((4, 9) if allow_inpaint else (4,))
    if not channels_ok or (isinstance(cross, int) and cross >= 1024) or isinstance(cross, list):
        raise BaseModelError(
            f"The diffusers folder {folder.name} is not an SD 1.5 txt2img model (UNet in_channels "
            f"{unet_config.get('in_channels')}, cross_attention_dim {unet_config.get('cross_attention_dim')}).",
            hint=_CHANGE_HINT,
        )
    for component, stem in FOLDER_WEIGHTS.items():
        require_safetensors(folder / component, stem, what=f"the base model {folder.name}")
    options = {"local_files_only": True, "use_safetensors": True}
    unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet", torch_dtype=dtype, **options)
    vae = AutoencoderKL.from_pretrained(str(folder), subfolder="vae", torch_dtype=dtype, **options)
    text_encoder = CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder", torch_dtype=dtype, **options)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer", local_files_only=True)
    scheduler = DDPMScheduler.from_pretrained(str(folder), subfolder="scheduler", local_files_only=True)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}


# Component folder → the weight file stem from_pretrained looks for (diffusers models / transformers models).
FOLDER_WEIGHTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def require_safetensors(component: Path, stem: str, *, what: str) -> Path:
    """The ``<stem>.safetensors`` (or sharded index) of a diffusers/transformers component folder; BaseModelError
    naming the pickle file when the folder only has pickled weights (never loaded: unpickling can run code)."""
    for name in (f"{stem}.safetensors", f"{stem}.safetensors.index.json"):
        if (component / name).is_file():
            return component / name
    pickles = sorted(p for p in component.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file())
    if pickles:
        raise BaseModelError(
            f"{what}: {pickles[0]} is a pickle file ({pickles[0].suffix}); folder models are loaded from "
            f"{stem}.safetensors only, because unpickling a file can run arbitrary code.",
            hint="Convert the folder once in an environment you trust, e.g. python -c \"from diffusers import "
            "DiffusionPipeline as P; P.from_pretrained('IN').save_pretrained('OUT', safe_serialization=True)\", or "
            "download the model's .safetensors release.",
        )
    raise BaseModelError(f"{what}: {component} has no {stem}.safetensors.",
                         hint="The folder is incomplete: download the model again (diffusers layout, safetensors).")


def _load_single_file(path: Path, config_dir: Path, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline

    if not (config_dir / "model_index.json").is_file():
        raise BaseModelError(f"The SD 1.5 config folder {config_dir} has no model_index.json.",
                             hint="Reinstall EasyPhoto: easyphoto/sd/sd15/ ships with it.")
    try:
        pipe = StableDiffusionPipeline.from_single_file(
            str(path), config=str(config_dir), local_files_only=True, torch_dtype=dtype,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise BaseModelError(
            f"The base checkpoint {path.name} could not be loaded as SD 1.5: {type(exc).__name__}: {exc}",
            hint="The file may be damaged, or a model type the SD 1.5 trainer does not know. " + _CHANGE_HINT,
        ) from exc
    return {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder, "tokenizer": pipe.tokenizer,
            "scheduler": pipe.scheduler}


def _folder_hash(folder: Path) -> str | None:
    """Legacy hash of the folder's UNet weights (what identifies a diffusers model best), if it has a file."""
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        candidate = folder / "unet" / name
        if candidate.is_file():
            return legacy_hash(candidate)
    return None
