"""Typed, versioned configuration: one model per operation, the single source of parameters and defaults.

The UI builds its controls from these models (`field_specs`), the API validates requests with them and the CLI
parses into them. They run on pydantic 1.10 (A1111 1.10.x ships it) and pydantic 2.x (Forge), so only the small
portable subset is used here and the few version-specific calls live in `ConfigModel`.

Defaults follow the reference extension (shared/reference/easyphoto-reference.md §3.4, §3.6) unless a later
measurement says otherwise; each field's description says what it does.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, Field

PYDANTIC_V2 = pydantic.VERSION.startswith("2")
CONFIG_VERSION = 1
DEFAULT_CAPTION = "easyphoto_face, easyphoto, 1person"


def _cross_field_check(name: str, check: Callable[[Mapping[str, Any]], None]):
    """Wrap `check(values)` (raises ValueError) as a whole-model validator for pydantic 1 and 2.

    `name` must be unique per model: pydantic 1 de-duplicates root validators by function name."""
    if PYDANTIC_V2:

        def after(self):
            check(self.__dict__)
            return self

        after.__name__ = after.__qualname__ = name
        return pydantic.model_validator(mode="after")(after)

    def root(cls, values):
        check(values)
        return values

    root.__name__ = root.__qualname__ = name
    return pydantic.root_validator(skip_on_failure=True, allow_reuse=True)(root)


@dataclass(frozen=True)
class FieldSpec:
    """What a UI needs to build one control, derived from the model's JSON schema (same on pydantic 1 and 2)."""

    name: str
    title: str
    kind: str  # "bool" | "int" | "float" | "str" | "choice"
    default: Any
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    optional: bool = False
    step: float | None = None  # multiple_of, when the field has one
    max_length: int | None = None  # of a text
    group: str = ""  # where a UI places the control (`in_group`); "" for models without groups
    advanced: bool = False  # folded away by default in the UI


def in_group(group: str, *, advanced: bool = False) -> dict[str, Any]:
    """Keywords for `Field(...)` that place a field in the UI: its group, and whether it starts folded away.

    They reach the JSON schema as the vendor keys "x-group" and "x-advanced" (no meaning to validation) on both
    pydantic versions: pydantic 2 takes them through `json_schema_extra`, pydantic 1 copies unknown `Field`
    keywords into the schema (pydantic 2 would warn that those are deprecated)."""
    extra = {"x-group": group, "x-advanced": advanced}
    return {"json_schema_extra": extra} if PYDANTIC_V2 else extra


def explicit_fields(config) -> set[str]:
    """The fields a config was given explicitly (the rest are defaults)."""
    return set(getattr(config, "model_fields_set", None) or getattr(config, "__fields_set__", set()))


class ConfigModel(BaseModel):
    """Base for every config: unknown keys are errors (a typo must not be silently ignored)."""

    # allow_inf_nan=False: JSON parsers (Starlette's included) accept NaN/Infinity. Bound checks reject NaN only by
    # accident (pydantic 1: "must be >= 0"), and unbounded floats would take it; `_reject_non_finite` says why.
    if PYDANTIC_V2:
        model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

        @pydantic.field_validator("*", mode="before")
        @classmethod
        def _reject_non_finite(cls, value: Any, info: Any) -> Any:
            return _finite(value, cls.model_fields[info.field_name].annotation)
    else:

        class Config:
            extra = "forbid"
            validate_assignment = True
            allow_inf_nan = False

        @pydantic.validator("*", pre=True, allow_reuse=True)
        def _reject_non_finite(cls, value: Any, field: Any) -> Any:  # noqa: N805 - pydantic 1 passes the class
            return _finite(value, field.outer_type_)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Validate a plain dict (API body, saved JSON, CLI values) into the model; raises ValidationError."""
        data = dict(data)
        data.pop("config_version", None)  # written by to_dict(); version 1 needs no migration
        return cls.model_validate(data) if PYDANTIC_V2 else cls.parse_obj(data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the config version so saved files can be migrated later."""
        data = self.model_dump(mode="json") if PYDANTIC_V2 else json.loads(self.json())
        return {"config_version": CONFIG_VERSION, **data}

    def updated(self, **changes: Any):
        """A validated copy with some fields changed (model_copy/copy skip validation on both versions). The copy
        remembers which fields were given explicitly (this config's, plus the changed ones), so family defaults
        (`with_family_defaults`) still apply only to the rest."""
        copy = type(self).from_dict({**self.to_dict(), **changes})
        given = explicit_fields(self) | set(changes)
        object.__setattr__(copy, "__pydantic_fields_set__" if PYDANTIC_V2 else "__fields_set__", given)
        return copy

    def non_default(self) -> dict[str, Any]:
        """to_dict() without the fields at their default: what a form sends, so that defaults chosen later (an SDXL
        base's) can still apply to the rest."""
        defaults = type(self)().to_dict()
        return {k: v for k, v in self.to_dict().items() if v != defaults.get(k)}

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema() if PYDANTIC_V2 else cls.schema()

    @classmethod
    def field_specs(cls) -> list[FieldSpec]:
        schema = cls.json_schema()
        return [_field_spec(name, prop, schema) for name, prop in schema.get("properties", {}).items()]


def describe_errors(exc: Exception, shown: int = 5) -> str:
    """'config.rank: ensure this value is less than or equal to 1024; base: unknown field' (pydantic 1 and 2)."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if not errors:
        return str(exc)
    parts = []
    for error in errors[:shown]:
        # a whole-model check has no field (pydantic 1 says "__root__"): its message names the fields itself
        where = ".".join(str(part) for part in error.get("loc") or () if part != "__root__")
        text = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") in ("extra_forbidden", "value_error.extra"):
            text = "unknown field"
        parts.append(f"{where}: {text}" if where else text)
    more = f" (and {len(errors) - shown} more)" if len(errors) > shown else ""
    return "; ".join(parts) + more


_NON_FINITE_WORDS = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _finite(value: Any, annotation: Any) -> Any:
    """`value` unchanged unless it is a non-finite number (or its spelling, for a float field): then ValueError.

    Runs before pydantic's own checks so the message says what is wrong (pydantic 1 would report that NaN is
    "not >= 0"), on both pydantic versions."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, not {value!r}")
    if isinstance(value, str) and value.strip().lower() in _NON_FINITE_WORDS and _is_float(annotation):
        raise ValueError(f"must be a finite number, not {value.strip()!r}")
    return value


def _is_float(annotation: Any) -> bool:
    """True for float, constrained floats and Optional[float] (annotations are resolved types on both versions)."""
    if isinstance(annotation, type):
        return issubclass(annotation, float)
    return any(_is_float(arg) for arg in typing.get_args(annotation))


def _field_spec(name: str, prop: dict[str, Any], schema: dict[str, Any]) -> FieldSpec:
    # pydantic 1 writes Optional[X] = None as X without a default; a field that is neither required nor has a
    # default can only default to None
    optional = "default" not in prop and name not in schema.get("required", ())
    if "anyOf" in prop:  # pydantic 2 writes Optional[X] as anyOf [X, null]
        non_null = [p for p in prop["anyOf"] if p.get("type") != "null"]
        optional = optional or len(non_null) < len(prop["anyOf"])
        prop = {**non_null[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
    if "$ref" in prop or "allOf" in prop:  # an Enum/Literal placed in definitions
        ref = (prop.get("$ref") or prop["allOf"][0]["$ref"]).rsplit("/", 1)[-1]
        defs = schema.get("$defs") or schema.get("definitions") or {}
        prop = {**defs.get(ref, {}), **{k: v for k, v in prop.items() if k not in ("$ref", "allOf")}}
    if "const" in prop and "enum" not in prop:
        prop = {**prop, "enum": [prop["const"]]}
    kind = "choice" if "enum" in prop else {"boolean": "bool", "integer": "int", "number": "float"}.get(
        prop.get("type", "string"), "str"
    )
    return FieldSpec(
        name=name,
        title=prop.get("title", name.replace("_", " ").capitalize()),
        kind=kind,
        default=prop.get("default"),
        description=prop.get("description", ""),
        minimum=prop.get("minimum", prop.get("exclusiveMinimum")),
        maximum=prop.get("maximum", prop.get("exclusiveMaximum")),
        choices=tuple(prop.get("enum", ())),
        optional=optional,
        step=prop.get("multipleOf"),
        max_length=prop.get("maxLength"),
        group=prop.get("x-group", ""),
        advanced=bool(prop.get("x-advanced", False)),
    )


FaceStack = Literal["auto", "insightface", "dlib", "mediapipe"]
FaceChoice = Literal["largest", "best_match"]
ControlMode = Literal["balanced", "prompt", "control"]
IdentityMode = Literal["lora", "instantid", "faceid", "pulid"]  # easyphoto.identity_modes.IDENTITY_MODES

# UI groups (`in_group`), shown in the order their first field is declared
_PHOTOS, _DATASET, _LORA, _TRAINING = "Photo selection", "Dataset", "LoRA", "Training"
_SPEED, _VALIDATION = "Speed and memory", "Validation"
_IDENTITY, _TEMPLATE, _FUSION = "Identity and prompt", "Template and crop", "Face fusion"
_PASS1, _PASS2, _SAMPLING, _FINISHING, _LIKENESS = "Pass 1", "Pass 2", "Sampling", "Finishing", "Likeness"


class Settings(ConfigModel):
    """Extension-wide settings (WebUI: Settings → EasyPhoto; standalone: <data root>/settings.json)."""

    face_stack: FaceStack = Field(
        "auto",
        title="Face models",
        description="auto = insightface ONNX models when their weights are present, else dlib (offline, CC0).",
    )
    offline: bool = Field(
        False,
        title="Offline mode",
        description="Never download; missing weights are listed with the path to put them at.",
    )
    unload_host_model_for_training: bool = Field(
        True,
        title="Free VRAM for training",
        description="Move the WebUI's loaded checkpoint to the CPU while a LoRA trains, and back afterwards.",
    )
    allow_noncommercial_tryon: bool = Field(
        False,
        title="Allow non-commercial try-on models",
        description="CatVTON and OOTDiffusion weights are CC BY-NC-SA 4.0 (non-commercial use only): EasyPhoto "
                    "downloads and runs them only with this on. Leffa (MIT) needs no opt-in. The same opt-in covers "
                    "the IP-Adapter-FaceID files of the training-free faceid mode (non-commercial research only).",
    )
    max_upload_megapixels: float = Field(
        64.0,
        ge=1.0,
        le=400.0,
        title="Largest accepted photo (megapixels)",
        description="Larger images are refused with a message instead of being decoded (decompression bombs).",
    )
    broker_url: str = Field(
        "",
        max_length=500,
        title="Distributed job queue (Redis URL)",
        description="e.g. redis://host:6379/0: jobs go to EasyPhoto workers on other machines (docs/scale-out.md); "
                    "empty = jobs run here. Read at start: restart after changing it. --broker / EASYPHOTO_BROKER "
                    "win over it.",
    )


class TrainConfig(ConfigModel):
    """Everything that decides how one identity LoRA is prepared and trained (reference §3.1–3.5).

    Each field's group (`in_group`) places it in the Train tab; advanced ones start folded."""

    # --- photo selection (reference §3.1, with thresholds instead of "top 15")
    face_choice: FaceChoice = Field(
        "largest",
        description="Photos with several faces: use the largest face, or the face that best matches the others.",
        **in_group(_PHOTOS),
    )
    min_face_px: int = Field(128, ge=32, le=2048, description="Smallest accepted face (shorter box side, pixels).",
                             **in_group(_PHOTOS, advanced=True))
    min_sharpness: float = Field(25.0, ge=0.0, le=5000.0, description="Blur gate: Laplacian variance of the face.",
                                 **in_group(_PHOTOS, advanced=True))
    max_yaw: float = Field(50.0, ge=0.0, le=90.0, description="Largest accepted head turn (degrees).",
                           **in_group(_PHOTOS, advanced=True))
    max_roll: float = Field(45.0, ge=0.0, le=90.0, description="Largest accepted head tilt (degrees).",
                            **in_group(_PHOTOS, advanced=True))
    min_brightness: float = Field(35.0, ge=0.0, le=255.0, description="Darkest accepted face (mean luminance).",
                                  **in_group(_PHOTOS, advanced=True))
    max_brightness: float = Field(230.0, ge=0.0, le=255.0, description="Brightest accepted face (mean luminance).",
                                  **in_group(_PHOTOS, advanced=True))
    remove_duplicates: bool = Field(True, description="Keep one photo of near-identical pairs (the better one).",
                                    **in_group(_PHOTOS))
    identity_check: bool = Field(True, description="Drop photos whose face is a different person than the rest.",
                                 **in_group(_PHOTOS))
    max_photos: int | None = Field(None, ge=1, le=200, description="Keep at most this many (best first); empty = all.",
                                   **in_group(_PHOTOS))
    # --- dataset preparation (reference §3.2-3.3)
    resolution: int = Field(512, ge=256, le=2048, multiple_of=64, description="Training image size in pixels.",
                            **in_group(_DATASET))
    crop_ratio: float = Field(3.0, ge=1.0, le=6.0, description="Crop around the face: box size × this ratio.",
                              **in_group(_DATASET, advanced=True))
    matting: bool = Field(True, description="Put the person on a plain white background (person matte).",
                          **in_group(_DATASET))
    retouch: bool = Field(False, description="Smooth skin slightly (classical bilateral filter on the skin mask).",
                          **in_group(_DATASET))
    upscale_small: bool = Field(
        True,
        description="Upscale crops smaller than the resolution (Real-ESRGAN when present, else Lanczos + sharpen).",
        **in_group(_DATASET, advanced=True),
    )
    caption: str = Field(DEFAULT_CAPTION, min_length=1, max_length=500, description="Fixed caption of every photo.",
                         **in_group(_DATASET, advanced=True))
    holdout_photos: int = Field(
        2, ge=0, le=10,
        description="Photos kept out of training to score validation against, when at least 8 remain (0 = off).",
        **in_group(_DATASET, advanced=True),
    )
    rank: int = Field(128, ge=1, le=1024, description="LoRA rank.", **in_group(_LORA))
    network_alpha: int = Field(64, ge=1, le=1024, description="LoRA alpha (scale = alpha / rank); ≤ rank.",
                               **in_group(_LORA))
    learning_rate: float = Field(1e-4, gt=0, le=1e-2, description="UNet learning rate.", **in_group(_TRAINING))
    text_encoder_learning_rate: float = Field(5e-5, ge=0, le=1e-2, description="Text encoder learning rate.",
                                              **in_group(_TRAINING, advanced=True))
    train_text_encoder: bool = Field(True, description="Also train LoRA on the text encoder.", **in_group(_LORA))
    batch_size: int = Field(1, ge=1, le=64, description="Images per step.", **in_group(_SPEED))
    gradient_accumulation_steps: int = Field(4, ge=1, le=64, description="Steps accumulated per optimizer update.",
                                             **in_group(_TRAINING, advanced=True))
    steps_per_photo: int = Field(200, ge=1, le=10000, description="Training steps per kept photo.",
                                 **in_group(_TRAINING))
    max_train_steps: int = Field(800, ge=1, le=100000, description="Upper bound on training steps.",
                                 **in_group(_TRAINING))
    validation: bool = Field(True, description="Score checkpoints by face identity and merge the best.",
                             **in_group(_VALIDATION))
    validation_every: int = Field(100, ge=1, le=100000, description="Steps between checkpoints/validations.",
                                  **in_group(_VALIDATION))
    # 2: the two best-scored checkpoints are what one compares with the exported (merged) LoRA, e.g. an earlier,
    # less fitted one when likeness is overdone; each is ~0.3 GB (float32, its optimizer state is never kept), so
    # an identity keeps ~0.6 GB instead of ~0.9 GB per checkpoint (~7 GB at 800 steps).
    keep_checkpoints: int = Field(
        2, ge=0, le=1000,
        description="Checkpoint LoRAs kept after training besides the exported one (best-scored first, else the "
        "latest); 0 = none. During training only what the merge and resume still need is kept in addition.",
        **in_group(_VALIDATION, advanced=True),
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Random seed; empty = random per training.",
                             **in_group(_TRAINING, advanced=True))

    check_alpha_at_most_rank = _cross_field_check(
        "check_alpha_at_most_rank",
        lambda v: _require(v["network_alpha"] <= v["rank"], "network_alpha must be ≤ rank")
    )
    check_brightness_range = _cross_field_check(
        "check_brightness_range",
        lambda v: _require(v["min_brightness"] < v["max_brightness"], "min_brightness must be < max_brightness")
    )

    def train_steps(self, photo_count: int) -> int:
        """Reference rule: min(steps_per_photo × photos, max_train_steps)."""
        return min(self.steps_per_photo * max(photo_count, 1), self.max_train_steps)

    # --- trainer speed levers (easyphoto.train.trainer). The exact ones (same learned weights up to float rounding,
    # tested) are on by default; the ones that change the result say so and stay off, except mixed_precision "fp16",
    # which is the reference's own default on a GPU.
    cache_latents: bool = Field(
        True,
        description="Exact. Encode every photo (and its mirror) with the VAE once, and a frozen text encoder's "
        "caption once, before training.",
        **in_group(_SPEED, advanced=True),
    )
    batch_micro_steps: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Exact. Run the accumulated micro-steps of an optimizer step as one batch (the same gradient). "
        "auto: on a GPU where the batch fits its memory (at 512 px fp16 about 8.6 GiB instead of 4.7: 12 GiB cards "
        "and up; always with gradient_checkpointing, never with low_vram alone), and on a CPU up to 256 px.",
        **in_group(_SPEED, advanced=True),
    )
    shared_text_pass: bool = Field(
        True,
        description="Exact. One text-encoder pass per optimizer step for the caption its micro-steps share, its "
        "gradient summed over them.",
        **in_group(_SPEED, advanced=True),
    )
    shared_cross_attention: bool = Field(
        True,
        description="Exact. When every sample of a batch has the same caption (batched micro-steps), the text is "
        "handed to the UNet once and each cross-attention projects it to keys and values once, not once per sample "
        "(sdpa attention).",
        **in_group(_SPEED, advanced=True),
    )
    small_conv_matmul: bool = Field(
        True,
        description="Exact. On a CPU, the UNet's 3×3 convolutions on feature maps of at most 4×4 pixels (its lowest "
        "levels up to 256 px) as one matrix product, 2-4× faster there than the CPU's convolution; ignored on a GPU "
        "and with compile_unet.",
        **in_group(_SPEED, advanced=True),
    )
    fused_optimizer: bool = Field(
        True,
        description="Exact. Fused AdamW (all LoRA tensors in one kernel) where torch has it, else foreach.",
        **in_group(_SPEED, advanced=True),
    )
    channels_last: bool = Field(
        True,
        description="Exact. Channels-last memory layout for the UNet's convolutions on a GPU (faster tensor-core "
        "convolutions); ignored on a CPU, where it measured slower.",
        **in_group(_SPEED, advanced=True),
    )
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(
        "fp16",
        description="Changes the result slightly. Half-precision autocast, frozen weights in half on a GPU, LoRA in "
        "float32. fp16 on a GPU only; bf16 also on a CPU that has bf16 instructions.",
        **in_group(_SPEED),
    )
    tf32: bool = Field(
        False,
        description="Changes the result slightly. TF32 matrix products on Ampere and newer GPUs (float32 work only).",
        **in_group(_SPEED, advanced=True),
    )
    gradient_checkpointing: bool = Field(
        False, description="Exact. Recompute activations in the backward pass: much less VRAM, about 30% slower.",
        **in_group(_SPEED),
    )
    attention: Literal["sdpa", "classic"] = Field(
        "sdpa", description="sdpa = PyTorch scaled-dot-product attention (fast); classic = diffusers' AttnProcessor.",
        **in_group(_SPEED, advanced=True),
    )
    low_vram: bool = Field(
        False, description="Move the VAE (and a frozen text encoder) off the GPU once latents are cached, and run the "
        "micro-steps one by one (with gradient_checkpointing they stay batched: faster and smaller).",
        **in_group(_SPEED),
    )
    compile_unet: bool = Field(
        False,
        description="Opt-in. torch.compile the UNet's training pass: compiling takes minutes first (the time is "
        "reported), then steps may be faster. Needs torch 2.2 or newer and a C++ compiler.",
        **in_group(_SPEED, advanced=True),
    )
    validation_batch: bool = Field(
        True, description="Exact. Render the validation templates of one size in one batch.",
        **in_group(_SPEED, advanced=True),
    )
    validation_steps: int = Field(
        20, ge=1, le=150,
        description="Sampling steps of each validation render (portraits use 50: validation only needs a face to "
        "score).",
        **in_group(_VALIDATION, advanced=True),
    )


# What an SDXL base changes in TrainConfig's defaults (reference: 1024 px, rank 32 / alpha 16, gradient
# checkpointing), plus a frozen text encoder so that the embeddings of both encoders are cached: an SDXL LoRA then
# fits a 12-16 GB card. Only fields the request did not set are changed (`for_family`).
SDXL_TRAIN_DEFAULTS: dict[str, Any] = {"resolution": 1024, "rank": 32, "network_alpha": 16,
                                       "gradient_checkpointing": True, "train_text_encoder": False,
                                       "cache_latents": True}


def with_family_defaults(config, family: str, sdxl_defaults: dict[str, Any]):
    """`config` with `sdxl_defaults` for the fields it was not given explicitly, when the base model is SDXL."""
    if family != "sdxl":
        return config
    given = explicit_fields(config)
    changes = {k: v for k, v in sdxl_defaults.items() if k not in given}
    if "network_alpha" in changes:  # alpha ≤ rank also for a rank the request chose
        changes["network_alpha"] = min(changes["network_alpha"], changes.get("rank", config.rank))
    return config.updated(**changes) if changes else config


def train_config_for_family(config: TrainConfig, family: str) -> TrainConfig:
    """`config` with the SDXL training defaults for the fields it was not given, when the base model is SDXL."""
    return with_family_defaults(config, family, SDXL_TRAIN_DEFAULTS)


# What an SDXL base changes in PortraitConfig's defaults: the crop is rendered at SDXL's native size (reference
# §3.6: SDXL scales the crop to about 1024² pixels); SD 1.5's 512 makes SDXL draw a blurred, distorted face.
SDXL_PORTRAIT_DEFAULTS: dict[str, Any] = {"short_side": 1024}


class PortraitConfig(ConfigModel):
    """Parameters of the two-pass portrait pipeline (reference §3.6; defaults are the reference's SD 1.5 ones).

    Pixel sizes (dilations, blurs) are given for a 512 px crop and scale with `short_side`. Each field's group
    (`in_group`) places it in the Portrait tab; advanced ones start folded."""

    # --- identity and prompt
    identity_mode: IdentityMode = Field(
        "lora", description="lora: the trained identity LoRA; instantid (SDXL), faceid (SD 1.5/SDXL), pulid (SDXL, "
                            "A1111 only): training-free, from the reference face through the WebUI's ControlNet "
                            "(face models for non-commercial research only).", **in_group(_IDENTITY))
    identity_weight: float = Field(0.8, ge=0.0, le=2.0, description="Weight of the training-free identity unit(s).",
                                   **in_group(_IDENTITY, advanced=True))
    lora_weight: float = Field(0.9, ge=0.0, le=2.0, description="Weight of the identity LoRA.",
                               **in_group(_IDENTITY))
    additional_prompt: str = Field("masterpiece, beauty", max_length=2000, description="Appended to the positive prompt.",
                                   **in_group(_IDENTITY))
    additional_negative_prompt: str = Field("", max_length=2000, description="Appended to the negative prompt.",
                                            **in_group(_IDENTITY))
    # --- template analysis and crop
    crop_face: bool = Field(True, description="Work on a crop around each face (box × crop ratio), not the whole photo.",
                            **in_group(_TEMPLATE))
    crop_ratio: float = Field(3.0, ge=1.5, le=6.0, description="Template crop around the face: box × this ratio.",
                              **in_group(_TEMPLATE, advanced=True))
    short_side: int = Field(512, ge=256, le=2048, multiple_of=32, description="Short side of the processed crop.",
                            **in_group(_TEMPLATE, advanced=True))
    min_face_px: int = Field(48, ge=16, le=1024, description="Smallest template face that can be rendered (box side).",
                             **in_group(_TEMPLATE, advanced=True))
    # --- face fusion
    fusion_before: bool = Field(True, description="Blend the reference face into the template before pass 1.",
                                **in_group(_FUSION))
    face_fusion_before: float = Field(0.6, ge=0.0, le=1.0, description="Fusion blend ratio before pass 1.",
                                      **in_group(_FUSION))
    fusion_after: bool = Field(True, description="Blend the reference face in again after pass 1.",
                               **in_group(_FUSION))
    face_fusion_after: float = Field(0.6, ge=0.0, le=1.0, description="Fusion blend ratio after pass 1.",
                                     **in_group(_FUSION))
    # --- pass 1: inpaint the face with the identity LoRA
    first_steps: int = Field(50, ge=1, le=150, description="Sampling steps of pass 1.", **in_group(_PASS1))
    first_denoising_strength: float = Field(0.45, ge=0.0, le=1.0, description="Denoising strength of pass 1.",
                                            **in_group(_PASS1))
    canny_weight: float = Field(0.5, ge=0.0, le=2.0, description="Pass 1 canny-edge control weight.",
                                **in_group(_PASS1, advanced=True))
    openpose_weight: float = Field(0.5, ge=0.0, le=2.0, description="Pass 1 pose control weight.",
                                   **in_group(_PASS1, advanced=True))
    color_weight: float = Field(0.85, ge=0.0, le=2.0, description="Pass 1 colour control weight.",
                                **in_group(_PASS1, advanced=True))
    # --- pass 2: refine the ring around the face
    second_pass: bool = Field(True, description="Refine the face border and features in a second pass.",
                              **in_group(_PASS2))
    second_steps: int = Field(20, ge=1, le=150, description="Sampling steps of pass 2.", **in_group(_PASS2))
    second_denoising_strength: float = Field(0.30, ge=0.0, le=1.0, description="Denoising strength of pass 2.",
                                             **in_group(_PASS2))
    second_canny_weight: float = Field(1.0, ge=0.0, le=2.0, description="Pass 2 canny-edge control weight.",
                                       **in_group(_PASS2, advanced=True))
    tile_weight: float = Field(1.0, ge=0.0, le=2.0, description="Pass 2 tile control weight.",
                               **in_group(_PASS2, advanced=True))
    # --- sampling, shared by both passes
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 = random (the seed used is saved with the image).",
                      **in_group(_SAMPLING))
    batch_size: int = Field(1, ge=1, le=16, description="Portraits per template (seed, seed+1, ...).",
                            **in_group(_SAMPLING))
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0, description="Classifier-free guidance scale.",
                             **in_group(_SAMPLING))
    sampler: str = Field("DPM++ 2M SDE", min_length=1, max_length=80, description="Sampler name as the WebUI names it.",
                         **in_group(_SAMPLING, advanced=True))
    scheduler: str = Field("Karras", min_length=1, max_length=80, description="Noise schedule label (WebUI ≥1.9).",
                           **in_group(_SAMPLING, advanced=True))
    control_mode: ControlMode = Field("prompt", description="ControlNet balance: balanced, prompt or control.",
                                      **in_group(_SAMPLING, advanced=True))
    mask_blur: int = Field(8, ge=0, le=64, description="Blur of the inpaint mask (px).",
                           **in_group(_SAMPLING, advanced=True))
    # --- colour and finishing
    color_shift_middle: bool = Field(True, description="LAB colour transfer toward the template after pass 1.",
                                     **in_group(_FINISHING, advanced=True))
    color_shift_last: bool = Field(True, description="LAB colour transfer toward the template after pass 2.",
                                   **in_group(_FINISHING, advanced=True))
    super_resolution: bool = Field(False, description="Sharpen the face crop with the upscaler (Real-ESRGAN if present).",
                                   **in_group(_FINISHING))
    super_resolution_ratio: float = Field(0.5, ge=0.0, le=1.0, description="Blend of the upscaled face crop.",
                                          **in_group(_FINISHING, advanced=True))
    skin_retouch: bool = Field(False, description="Smooth the skin slightly (bilateral filter on the skin mask).",
                               **in_group(_FINISHING))
    # --- likeness
    likeness_gate: bool = Field(False, description="Regenerate with a new seed while the likeness is below the threshold.",
                                **in_group(_LIKENESS))
    likeness_threshold: float = Field(0.6, ge=0.0, le=1.0, description="Lowest accepted FaceID similarity (gate).",
                                      **in_group(_LIKENESS))
    max_attempts: int = Field(3, ge=1, le=10, description="Generations per portrait at most, with the gate on.",
                              **in_group(_LIKENESS, advanced=True))

    check_first_pass_steps = _cross_field_check(
        "check_first_pass_steps", lambda v: _check_denoising_steps(v, "first", "Pass 1"))
    check_second_pass_steps = _cross_field_check(
        "check_second_pass_steps", lambda v: v["second_pass"] and _check_denoising_steps(v, "second", "Pass 2"))


class CompareConfig(ConfigModel):
    """The portrait "compare" action (issue 17): one template rendered twice with the same seed and PortraitConfig,
    once with the identity's LoRA and once training-free, so the two likeness scores (same face stack, same gate)
    can be read side by side."""

    training_free_mode: Literal["instantid", "faceid", "pulid"] = Field(
        "faceid", description="The training-free method compared with the LoRA: faceid (SD 1.5/SDXL), instantid "
                              "(SDXL) or pulid (SDXL, A1111 only).", **in_group(_IDENTITY))
    identity_weight: float = Field(0.8, ge=0.0, le=2.0, description="Weight of the training-free identity unit(s).",
                                   **in_group(_IDENTITY, advanced=True))


# Try-on groups (`in_group`)
_GARMENT, _MASK = "Garment and prompt", "Mask"
# The keys of easyphoto.segment.types.GARMENT_CATEGORIES, spelled out: config is the bottom layer and imports no
# capability (the segment package imports weights, which imports config); tests/test_tryon_pipeline.py checks both
# lists are the same.
TryOnCategory = Literal["upper", "lower", "dress", "pants", "skirt", "scarf", "hat", "bag", "belt"]
MaskSource = Literal["parsing", "points", "mask"]


class TryOnConfig(ConfigModel):
    """Parameters of the garment try-on (issue 13): a garment LoRA repaints one garment region of a person photo.

    Defaults follow the reference's try-on (shared/reference/easyphoto-reference.md, feature table "Virtual
    Try-On"; tryon-peers.md "Garment LoRA practice"; aigc-apps/sd-webui-EasyPhoto scripts/easyphoto_tryon_infer.py):
    LoRA weight 0.8; pass 1 inpaints the garment mask at 50 steps × denoise 0.70 under canny 1.0 + depth 1.0 +
    colour 0.5; pass 2 refines the mask's inner boundary at 30 steps × 0.7 under canny + depth. Openpose is ours
    (the reference had none): it keeps arms and shoulders where they are when the garment covers them."""

    # --- garment and prompt
    category: TryOnCategory = Field("upper", description="Garment category: which parsing labels are repainted.",
                                    **in_group(_GARMENT))
    lora_weight: float = Field(0.8, ge=0.0, le=2.0, description="Weight of the garment LoRA.", **in_group(_GARMENT))
    additional_prompt: str = Field("", max_length=2000, description="Appended to the positive prompt.",
                                   **in_group(_GARMENT))
    additional_negative_prompt: str = Field("", max_length=2000, description="Appended to the negative prompt.",
                                            **in_group(_GARMENT))
    paste_garment: bool = Field(
        False, description="Paste the garment reference into the mask first (rotated and scaled to fit), as the "
        "reference did; off = the LoRA draws the garment from the person photo alone.", **in_group(_GARMENT))
    # --- mask
    mask_source: MaskSource = Field("parsing", description="parsing = the category's labels from clothes parsing; "
                                    "points / mask = a mask from clicks (SAM) or drawn.", **in_group(_MASK))
    mask_dilation: int = Field(8, ge=0, le=256, description="Grow the garment mask by this many photo pixels.",
                               **in_group(_MASK))
    protect_face: bool = Field(True, description="Keep face, hair and sunglasses out of the mask (parsing labels).",
                               **in_group(_MASK))
    protect_hands: bool = Field(True, description="Keep the hands out of the mask (found from pose key points).",
                                **in_group(_MASK))
    short_side: int = Field(512, ge=256, le=2048, multiple_of=32, description="Short side of the processed crop.",
                            **in_group(_MASK, advanced=True))
    crop_margin: float = Field(0.15, ge=0.0, le=1.0, description="Context around the mask's box, as a fraction of "
                               "its size on each side.", **in_group(_MASK, advanced=True))
    # --- pass 1: inpaint the garment region with the garment LoRA
    first_steps: int = Field(50, ge=1, le=150, description="Sampling steps of pass 1.", **in_group(_PASS1))
    first_denoising_strength: float = Field(0.70, ge=0.0, le=1.0, description="Denoising strength of pass 1.",
                                            **in_group(_PASS1))
    openpose_weight: float = Field(0.5, ge=0.0, le=2.0, description="Pose control weight (0 = off).",
                                   **in_group(_PASS1, advanced=True))
    canny_weight: float = Field(1.0, ge=0.0, le=2.0, description="Canny-edge control weight, both passes (0 = off).",
                                **in_group(_PASS1, advanced=True))
    depth_weight: float = Field(1.0, ge=0.0, le=2.0, description="Depth control weight, both passes; used when a "
                                "depth estimator and the depth ControlNet are present (0 = off).",
                                **in_group(_PASS1, advanced=True))
    # 0 by default: a WebUI runs 3 ControlNet units unless told otherwise, and openpose + canny + depth fill them.
    # The reference's colour 0.5 kept the colours of its pasted garment: with paste_garment on, set it to 0.5 and
    # openpose to 0 for the reference's exact canny + depth + colour set.
    color_weight: float = Field(0.0, ge=0.0, le=2.0, description="Pass 1 colour control weight (0 = off); useful "
                                "with paste_garment (the reference used 0.5).", **in_group(_PASS1, advanced=True))
    # --- pass 2: refine the inner boundary of the mask
    second_pass: bool = Field(True, description="Refine the band along the inside of the mask's edge.",
                              **in_group(_PASS2))
    second_steps: int = Field(30, ge=1, le=150, description="Sampling steps of pass 2.", **in_group(_PASS2))
    second_denoising_strength: float = Field(0.70, ge=0.0, le=1.0, description="Denoising strength of pass 2.",
                                             **in_group(_PASS2))
    boundary_width: int = Field(16, ge=1, le=128, description="Width of the refined band (px at a 512 px crop).",
                                **in_group(_PASS2, advanced=True))
    # --- sampling, shared by both passes
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 = random (the seed used is saved with the image).",
                      **in_group(_SAMPLING))
    batch_size: int = Field(1, ge=1, le=16, description="Images per person photo (seed, seed+1, ...).",
                            **in_group(_SAMPLING))
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0, description="Classifier-free guidance scale.",
                             **in_group(_SAMPLING))
    sampler: str = Field("DPM++ 2M SDE", min_length=1, max_length=80, description="Sampler name as the WebUI names it.",
                         **in_group(_SAMPLING, advanced=True))
    scheduler: str = Field("Karras", min_length=1, max_length=80, description="Noise schedule label (WebUI ≥1.9).",
                           **in_group(_SAMPLING, advanced=True))
    control_mode: ControlMode = Field("balanced", description="ControlNet balance: balanced, prompt or control.",
                                      **in_group(_SAMPLING, advanced=True))
    mask_blur: int = Field(8, ge=0, le=64, description="Blur of the inpaint mask (px).",
                           **in_group(_SAMPLING, advanced=True))

    check_first_pass_steps = _cross_field_check(
        "check_first_pass_steps", lambda v: _check_denoising_steps(v, "first", "Pass 1"))
    check_second_pass_steps = _cross_field_check(
        "check_second_pass_steps", lambda v: v["second_pass"] and _check_denoising_steps(v, "second", "Pass 2"))
    check_some_control = _cross_field_check(
        "check_some_control",
        lambda v: _require(v["canny_weight"] > 0 or v["openpose_weight"] > 0 or v["depth_weight"] > 0,
                           "A try-on needs at least one of canny_weight, openpose_weight or depth_weight above 0: "
                           "without a structural control the garment loses the person's shape."))


# Zero-shot try-on groups (`in_group`)
_BACKEND, _ANY_MASK, _ANY_SAMPLING = "Backend", "Mask", "Sampling"
AnyGarmentBackend = Literal["leffa", "catvton", "ootd"]
AnyGarmentCategory = Literal["upper", "lower", "dress", "pants", "skirt"]


class AnyGarmentConfig(ConfigModel):
    """Try-on of any garment photo without training (issue 15): a garment-conditioned diffusion backend (Leffa,
    CatVTON, OOTDiffusion; easyphoto.tryon.zeroshot) repaints the agnostic mask of the garment's category.

    Defaults are each backend's published app defaults (steps, guidance: empty = the backend's own); the mask is
    the agnostic silhouette of the category (easyphoto/tryon/zeroshot/agnostic.py), or a mask from clicks or the
    browser editor."""

    backend: AnyGarmentBackend = Field("leffa", description="leffa (MIT, commercial use allowed), catvton or ootd "
                                       "(CC BY-NC-SA: non-commercial only, need the opt-in setting).",
                                       **in_group(_BACKEND))
    variant: str = Field("", max_length=40, description="The backend's model variant (leffa: viton_hd, dress_code; "
                         "catvton: mix, vitonhd, dresscode; ootd: hd, dc); empty = the one trained on the category.",
                         **in_group(_BACKEND, advanced=True))
    category: AnyGarmentCategory = Field("upper", description="The garment's category: which body region is "
                                         "repainted (pants and skirt count as lower).", **in_group(_BACKEND))
    mask_source: MaskSource = Field("parsing", description="parsing = the category's automatic silhouette from "
                                    "clothes parsing + pose; points / mask = clicks (SAM) or a drawn / editor mask.",
                                    **in_group(_ANY_MASK))
    mask_dilation: int = Field(12, ge=0, le=256, description="Grow the automatic silhouette by this many photo "
                               "pixels.", **in_group(_ANY_MASK))
    protect_face: bool = Field(True, description="Keep face, hair and sunglasses out of the mask.",
                               **in_group(_ANY_MASK))
    protect_hands: bool = Field(True, description="Keep the hands out of the mask (from the pose's wrists).",
                                **in_group(_ANY_MASK))
    frame_margin: float = Field(0.1, ge=0.0, le=1.0, description="Context around the person in the frame the "
                                "backend sees, as a fraction of its size on each side.",
                                **in_group(_ANY_MASK, advanced=True))
    feather: float = Field(2.0, ge=0.0, le=32.0, description="Feathering of the paste-back, inward from the mask's "
                           "edge (px at the backend's size).", **in_group(_ANY_MASK, advanced=True))
    steps: int | None = Field(None, ge=1, le=150, description="Sampling steps; empty = the backend's default "
                              "(Leffa 30, CatVTON 50, OOTDiffusion 20).", **in_group(_ANY_SAMPLING))
    guidance: float | None = Field(None, ge=0.0, le=10.0, description="Garment guidance scale; empty = the "
                                   "backend's default (Leffa 2.5, CatVTON 2.5, OOTDiffusion 2.0).",
                                   **in_group(_ANY_SAMPLING))
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 = random (the seed used is saved with the image).",
                      **in_group(_ANY_SAMPLING))
    batch_size: int = Field(1, ge=1, le=16, description="Images per person photo (seed, seed+1, ...).",
                            **in_group(_ANY_SAMPLING))
    work_size: int | None = Field(None, ge=64, le=2048, multiple_of=8, description="Run at this height instead of "
                                  "the backend's trained one (1024 or 512): faster previews, lower quality; empty = "
                                  "the trained size.", **in_group(_ANY_SAMPLING, advanced=True))
    reuse_reference: bool = Field(False, description="Leffa only: run the garment's reference UNet once instead of "
                                  "every step (about a third faster; slightly different images).",
                                  **in_group(_ANY_SAMPLING, advanced=True))


# Design groups (`in_group`)
_ROUTE, _DESIGN_PROMPT, _DESIGN_SAMPLING = "Route", "Prompt", "Sampling"
DesignCategory = Literal["top", "shirt", "outerwear", "dress", "skirt", "pants", "any"]


class DesignConfig(ConfigModel):
    """Garment design from a semantic layout (issue 16): the layout's 46 FGVC6 classes become a garment image on a
    clean background. Route "diffusion" (default): the layout, colour-coded, drives a segmentation ControlNet
    (control_v11p_sd15_seg) on the base model, with the category's prompt preset and an optional garment LoRA;
    route "smis": a native SMIS/SPADE generator trained in EasyPhoto (Design → Train) draws it."""

    route: Literal["diffusion", "smis"] = Field("diffusion", description="diffusion = segmentation ControlNet on the "
                                                "base model; smis = a generator trained on your own layouts.",
                                                **in_group(_ROUTE))
    smis_model: str = Field("", max_length=64, description="Route smis: the trained design model's name.",
                            **in_group(_ROUTE))
    category: DesignCategory = Field("top", description="The prompt preset: what kind of garment the layout is.",
                                     **in_group(_DESIGN_PROMPT))
    prompt: str = Field("", max_length=2000, description="Added to the preset: colour, fabric, pattern, style.",
                        **in_group(_DESIGN_PROMPT))
    negative_prompt: str = Field("", max_length=2000, description="Added to the preset's negative prompt.",
                                 **in_group(_DESIGN_PROMPT, advanced=True))
    lora_weight: float = Field(0.8, ge=0.0, le=2.0, description="Weight of the garment LoRA, when one is chosen.",
                               **in_group(_DESIGN_PROMPT))
    seg_weight: float = Field(1.0, ge=0.0, le=2.0, description="Weight of the segmentation control.",
                              **in_group(_DESIGN_SAMPLING, advanced=True))
    steps: int = Field(30, ge=1, le=150, description="Sampling steps (route diffusion).", **in_group(_DESIGN_SAMPLING))
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0, description="Classifier-free guidance scale (route diffusion).",
                             **in_group(_DESIGN_SAMPLING))
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 = random (the seed used is saved with the image).",
                      **in_group(_DESIGN_SAMPLING))
    batch_size: int = Field(1, ge=1, le=16, description="Images per layout (seed, seed+1, ...).",
                            **in_group(_DESIGN_SAMPLING))
    sampler: str = Field("DPM++ 2M", min_length=1, max_length=80, description="Sampler name as the WebUI names it.",
                         **in_group(_DESIGN_SAMPLING, advanced=True))
    scheduler: str = Field("Karras", min_length=1, max_length=80, description="Noise schedule label (WebUI ≥1.9).",
                           **in_group(_DESIGN_SAMPLING, advanced=True))


# Digital model groups (`in_group`)
_MODE, _MODEL, _POSE = "Mode", "Model", "Pose"
DigitalModelMode = Literal["model", "outfit", "scene", "pose"]


class DigitalModelConfig(ConfigModel):
    """The digital model (issue 14): a garment kept exactly while the model, outfit, scene or pose around it is
    regenerated by masked inpainting under openpose (+ canny / depth of the kept garment).

    Modes: "model" turns a mannequin or half-body shot into a model wearing the garment (head, neck, arms, legs,
    hands and, when asked, the background are regenerated; the pose is completed first and the canvas extended where
    the completed body leaves the frame); "outfit" puts another trained garment on the `outfit_category` region;
    "scene" regenerates the background around the person; "pose" draws the model anew in another pose with the
    garment's LoRA (the garment's pixels cannot be kept when the body moves: its fidelity is reported)."""

    mode: DigitalModelMode = Field("model", description="model = mannequin/half-body to model; outfit, scene, pose = "
                                   "swaps on a photo of a model wearing the garment.", **in_group(_MODE))
    category: TryOnCategory = Field("upper", description="The garment kept exactly: which parsing labels it is.",
                                    **in_group(_MODE))
    mask_source: MaskSource = Field("parsing", description="Where the kept garment's mask comes from: parsing, "
                                    "points (clicks) or mask (drawn / sent).", **in_group(_MODE))
    outfit_category: TryOnCategory = Field("lower", description="Outfit swap: the region the other garment goes on.",
                                           **in_group(_MODE))
    outfit_backend: Literal["lora", "leffa", "catvton", "ootd"] = Field(
        "lora", description="Outfit swap: lora = the outfit garment's trained LoRA (outfit_id); leffa, catvton, ootd = "
        "any garment photo (outfit_image) through a zero-shot try-on backend, no training.", **in_group(_MODE))
    outfit_steps: int | None = Field(None, ge=1, le=150, description="Zero-shot outfit swap: sampling steps; empty = "
                                     "the backend's default.", **in_group(_MODE, advanced=True))
    outfit_work_size: int | None = Field(None, ge=64, le=2048, multiple_of=8, description="Zero-shot outfit swap: run "
                                         "at this height instead of the backend's trained one (faster previews).",
                                         **in_group(_MODE, advanced=True))
    # --- the model
    gender: Literal["woman", "man", "person"] = Field("woman", description="The model's gender.",
                                                      **in_group(_MODEL))
    age: Literal["young adult", "adult", "middle-aged", "senior"] = Field("young adult", description="The model's age.",
                                                                          **in_group(_MODEL))
    ethnicity: Literal["any", "African", "East Asian", "South Asian", "Southeast Asian", "European", "Hispanic",
                       "Middle Eastern"] = Field("any", description="The model's ethnicity (any = not said).",
                                                 **in_group(_MODEL))
    body_type: Literal["slim", "average", "athletic", "curvy", "plus-size"] = Field(
        "slim", description="The model's body type.", **in_group(_MODEL))
    regenerate_background: bool = Field(False, description="Model mode: regenerate the background too (off = only "
                                        "the body around the garment).", **in_group(_MODEL))
    scene_prompt: str = Field("a bright photo studio, plain light grey backdrop, soft light", max_length=2000,
                              description="The background, for scene mode and a regenerated background.",
                              **in_group(_MODEL))
    additional_prompt: str = Field("", max_length=2000, description="Appended to the positive prompt.",
                                   **in_group(_MODEL))
    additional_negative_prompt: str = Field("", max_length=2000, description="Appended to the negative prompt.",
                                            **in_group(_MODEL))
    garment_lora_weight: float = Field(0.8, ge=0.0, le=2.0, description="Weight of the garment's LoRA (when the "
                                       "garment is a trained one; the pose swap needs it).", **in_group(_MODEL))
    identity_lora_weight: float = Field(0.8, ge=0.0, le=2.0, description="Weight of the identity LoRA when a trained "
                                        "identity is the model.", **in_group(_MODEL))
    face_pass: bool = Field(True, description="With an identity: repaint the face with the portrait's two passes "
                            "and face fusion.", **in_group(_MODEL))
    identity_mode: IdentityMode = Field(
        "lora", description="How the identity's face is made: lora (its trained LoRA), or training-free from its "
                            "reference face: instantid (SDXL), faceid, pulid (SDXL, A1111 only); the body then runs "
                            "without an identity LoRA.", **in_group(_MODEL))
    # --- pose
    complete_pose: bool = Field(True, description="Place missing head, neck and limbs from body proportions (visible "
                                "joints are never moved).", **in_group(_POSE))
    outpaint: bool = Field(True, description="Extend the canvas where the completed body leaves the frame.",
                           **in_group(_POSE))
    pose_name: str = Field("", max_length=80, description="Pose swap: a pose of the gallery (empty: a skeleton or a "
                           "pose photo is given).", **in_group(_POSE))
    openpose_weight: float = Field(1.0, ge=0.0, le=2.0, description="Pose control weight (0 = off).",
                                   **in_group(_POSE, advanced=True))
    canny_weight: float = Field(0.6, ge=0.0, le=2.0, description="Canny control of the kept garment's edges.",
                                **in_group(_POSE, advanced=True))
    depth_weight: float = Field(0.5, ge=0.0, le=2.0, description="Depth control of the kept garment, when a depth "
                                "estimator and the depth ControlNet are present.", **in_group(_POSE, advanced=True))
    # --- sampling
    steps: int = Field(30, ge=1, le=150, description="Sampling steps.", **in_group(_SAMPLING))
    denoising_strength: float = Field(1.0, ge=0.0, le=1.0, description="Denoising of the regenerated region.",
                                      **in_group(_SAMPLING))
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 = random (the seed used is saved with the image).",
                      **in_group(_SAMPLING))
    batch_size: int = Field(1, ge=1, le=16, description="Images (seed, seed+1, ...).", **in_group(_SAMPLING))
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0, description="Classifier-free guidance scale.", **in_group(_SAMPLING))
    sampler: str = Field("DPM++ 2M SDE", min_length=1, max_length=80, description="Sampler name as the WebUI names it.",
                         **in_group(_SAMPLING, advanced=True))
    scheduler: str = Field("Karras", min_length=1, max_length=80, description="Noise schedule label (WebUI ≥1.9).",
                           **in_group(_SAMPLING, advanced=True))
    control_mode: ControlMode = Field("balanced", description="ControlNet balance: balanced, prompt or control.",
                                      **in_group(_SAMPLING, advanced=True))
    mask_blur: int = Field(4, ge=0, le=64, description="Blur of the inpaint mask (px).",
                           **in_group(_SAMPLING, advanced=True))
    short_side: int = Field(512, ge=256, le=2048, multiple_of=32, description="Short side the image is generated at.",
                            **in_group(_SAMPLING, advanced=True))

    check_steps = _cross_field_check("check_steps", lambda v: _check_denoising_steps(v, "", "The generation"))
    check_outfit_region = _cross_field_check(
        "check_outfit_region",
        lambda v: _require(v["mode"] != "outfit" or v["outfit_category"] != v["category"],
                           f"An outfit swap puts the other garment on outfit_category, which is the kept garment's "
                           f"category {v['category']!r}: choose another outfit_category (e.g. 'lower')."))


def _check_denoising_steps(values: Mapping[str, Any], prefix: str, label: str) -> None:
    """An img2img pass denoises int(steps × strength) steps (diffusers; the WebUI runs one more). At 0 it does
    nothing on diffusers and leaves the WebUI a one-step schedule, on which DPM++ 2M SDE crashes in k-diffusion."""
    steps_key, strength_key = f"{prefix}_steps".lstrip("_"), f"{prefix}_denoising_strength".lstrip("_")
    steps, strength = values[steps_key], values[strength_key]
    denoised = int(steps * min(strength, 0.999))
    _require(denoised >= 1, f"{label} would denoise in no sampling step: {steps_key} {steps} × "
                            f"{strength_key} {strength:g} < 1. Raise {steps_key} or "
                            f"{strength_key} so that their product is at least 1.")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
