"""Typed parameters of each job kind: validated once when the job is submitted, stored in its record as a dict.

    params = job_params.parse("train", {"identity_id": "alice", "config": {...}})  # -> TrainParams
    record = operations.submit(ctx, "train", params)   # a dict is accepted too, and parsed the same way
    train_operation(ctx, params, job)                  # reads params.identity_id, params.config, ...

The job record keeps `params.to_dict()` (plain JSON), so records stay readable by older versions and records
written by them (dict params, never validated again) still load and list. Unknown keys are errors, as in every
ConfigModel: a typo in an API body, a UI value or a CLI option is said at submit, not ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pydantic
from pydantic import Field

from easyphoto.config import (
    PYDANTIC_V2,
    AnyGarmentConfig,
    CompareConfig,
    ConfigModel,
    DesignConfig,
    DigitalModelConfig,
    PortraitConfig,
    TrainConfig,
    TryOnConfig,
    describe_errors,
)
from easyphoto.design.smis.config import DesignTrainConfig
from easyphoto.errors import InvalidRequest
from easyphoto.tryon.dataset import GarmentDatasetConfig


def _strip_config_version(value: Any) -> Any:
    """A nested config as `TrainConfig.to_dict()` writes it carries config_version, which only the top-level
    from_dict removes; version 1 needs no migration, so it is dropped here as there."""
    if isinstance(value, Mapping) and "config_version" in value:
        return {k: v for k, v in value.items() if k != "config_version"}
    return value


def config_field_validator(*fields: str):
    """A before-validator of the config fields (default: `config`) that accepts `XConfig.to_dict()` output
    (pydantic 1 and 2)."""
    fields = fields or ("config",)
    if PYDANTIC_V2:
        return pydantic.field_validator(*fields, mode="before")(classmethod(lambda cls, v: _strip_config_version(v)))
    return pydantic.validator(*fields, pre=True, allow_reuse=True)(lambda cls, v: _strip_config_version(v))


class JobParams(ConfigModel):
    """Base of every job kind's parameters."""

    @classmethod
    def checked(cls, params: Any, kind: str = ""):
        """`params` (a dict, or already this model) validated; InvalidRequest (HTTP 422) naming each bad field."""
        if isinstance(params, cls):
            return params
        if isinstance(params, ConfigModel):
            raise InvalidRequest(f"{kind or cls.__name__} jobs take {cls.__name__}, not {type(params).__name__}.",
                                 phase="job")
        if not isinstance(params, Mapping):
            raise InvalidRequest(f"Job parameters must be a JSON object, not {type(params).__name__}.",
                                 hint="Pass a dict of settings.", phase="job")
        try:
            return cls.from_dict(params)
        except ValueError as exc:  # pydantic's ValidationError on both major versions
            raise InvalidRequest(f"Invalid {kind or cls.__name__} parameters: {describe_errors(exc)}.",
                                 hint="Fix the listed fields; the others keep their defaults.", phase="job") from None


class IdentityStepParams(JobParams):
    """check_photos and prepare_dataset: one identity, the photo selection and dataset settings."""

    identity_id: str = Field(..., description="The identity whose photos are checked / prepared.")
    config: TrainConfig = Field(default_factory=TrainConfig)

    _config_version = config_field_validator()


class CheckPhotosParams(IdentityStepParams):
    pass


class PrepareDatasetParams(IdentityStepParams):
    pass


class FetchModelsParams(JobParams):
    ids: list[str] = Field([], description="Manifest ids of the files to download (empty: the group, or all).")
    group: str | None = Field(None, description="Only this manifest group.")


class TrainParams(JobParams):
    identity_id: str = Field(..., description="The identity to train.")
    config: TrainConfig = Field(default_factory=TrainConfig)
    base: str | None = Field(None, description="Base checkpoint or diffusers folder; empty: the context's default.")
    config_dir: str | None = Field(None, description="Diffusers config folder for a single-file base.")
    resume: bool = Field(False, description="Continue from the identity's last checkpoint.")
    device: str = Field("auto", min_length=1, max_length=40, description="auto, cpu, cuda, cuda:1, mps, ...")

    _config_version = config_field_validator()


class PortraitParams(JobParams):
    identity_ids: list[str] = Field([], description="The identities to render, one per chosen template face.")
    templates: list[str] = Field([], description="Gallery names (user/x.png) or template file paths.")
    face_indices: list[int] | None = Field(None, description="Template face number per identity; empty: largest.")
    config: PortraitConfig = Field(default_factory=PortraitConfig)
    out: str | None = Field(None, description="Folder for the portraits; empty: the outputs folder.")
    base: str | None = Field(None, description="Standalone: the SD 1.5 base model; empty: the context's default.")
    config_dir: str | None = Field(None, description="Diffusers config folder for a single-file base.")

    _config_version = config_field_validator()


class ComparePortraitParams(JobParams):
    """portrait_compare: one identity on one template, rendered with its LoRA and training-free, scores side by side."""

    identity_id: str = Field(..., description="The identity to render (trained, for its LoRA).")
    template: str = Field(..., description="A gallery name (user/x.png) or a template file path.")
    face_index: int | None = Field(None, description="Template face number; empty: the largest.")
    config: PortraitConfig = Field(default_factory=PortraitConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    out: str | None = Field(None, description="Folder for both portraits; empty: the outputs folder.")
    base: str | None = Field(None, description="Standalone: the base model; empty: the context's default.")
    config_dir: str | None = Field(None, description="Diffusers config folder for a single-file base.")

    _config_version = config_field_validator("config", "compare")


class GarmentDatasetParams(JobParams):
    """garment_dataset: cut a garment's photos out and caption them."""

    garment_id: str = Field(..., description="The garment whose photos become its dataset.")
    dataset: GarmentDatasetConfig = Field(default_factory=GarmentDatasetConfig)

    _config_version = config_field_validator("dataset")


class GarmentTrainParams(JobParams):
    """garment_train: the dataset (rebuilt when out of date), then the garment LoRA."""

    garment_id: str = Field(..., description="The garment to train.")
    dataset: GarmentDatasetConfig = Field(default_factory=GarmentDatasetConfig)
    config: TrainConfig = Field(default_factory=TrainConfig)
    base: str | None = Field(None, description="Base checkpoint or diffusers folder; empty: the context's default.")
    config_dir: str | None = Field(None, description="Diffusers config folder for a single-file base.")
    resume: bool = Field(False, description="Continue from the garment's last checkpoint.")
    device: str = Field("auto", min_length=1, max_length=40, description="auto, cpu, cuda, cuda:1, mps, ...")

    _config_version = config_field_validator("config", "dataset")


class TryOnParams(JobParams):
    """tryon: a trained garment on one person photo."""

    garment_id: str = Field(..., description="The trained garment to put on the person.")
    person: str = Field(..., min_length=1, description="The person (model) photo: a file path.")
    mask: str | None = Field(None, description="A mask image file (white = the garment region), for mask_source "
                             "'mask'.")
    points: list[tuple[float, float, bool]] = Field([], description="Clicks [x, y, positive] in photo "
                                                   "pixels, for mask_source 'points'.")
    boxes: list[tuple[float, float, float, float]] = Field([], description="Boxes [x0, y0, x1, y1], "
                                                           "for mask_source 'points'.")
    config: TryOnConfig = Field(default_factory=TryOnConfig)
    out: str | None = Field(None, description="Folder for the images; empty: the outputs folder.")
    base: str | None = Field(None, description="Standalone: the SD 1.5 base model; empty: the context's default.")
    config_dir: str | None = Field(None, description="Diffusers config folder for a single-file base.")

    _config_version = config_field_validator()


class AnyGarmentParams(JobParams):
    """tryon_any: any garment photo on one person photo, without training (a zero-shot backend)."""

    person: str = Field(..., min_length=1, description="The person (model) photo: a file path.")
    garment_image: str | None = Field(None, description="The garment photo (flat lay, product shot or worn): a file "
                                      "path. Empty: garment_id's photo.")
    garment_id: str | None = Field(None, description="A stored garment (trained or not) whose first photo, cut out, "
                                   "is the garment; used when garment_image is empty.")
    mask: str | None = Field(None, description="A mask image file (white = repaint), for mask_source 'mask'.")
    points: list[tuple[float, float, bool]] = Field([], description="Clicks [x, y, positive] in photo pixels, for "
                                                   "mask_source 'points'.")
    boxes: list[tuple[float, float, float, float]] = Field([], description="Boxes [x0, y0, x1, y1], for "
                                                           "mask_source 'points'.")
    config: AnyGarmentConfig = Field(default_factory=AnyGarmentConfig)
    out: str | None = Field(None, description="Folder for the images; empty: the outputs folder.")
    device: str | None = Field(None, max_length=20, description="torch device; empty: CUDA when there is one, else "
                               "the CPU.")

    _config_version = config_field_validator()


class DesignParams(JobParams):
    """design: a garment image from a semantic layout (route diffusion or smis)."""

    layout: str = Field(..., min_length=1, description="The layout PNG: a label PNG (0–45 = FGVC6 classes, 255 = "
                        "background) or the editor's palette PNG; a file path.")
    garment_id: str | None = Field(None, description="Route diffusion: a trained garment's LoRA to draw with.")
    config: DesignConfig = Field(default_factory=DesignConfig)
    out: str | None = Field(None, description="Folder for the images; empty: the outputs folder.")
    base: str | None = Field(None, description="Standalone, route diffusion: the SD 1.5 base model.")
    config_dir: str | None = Field(None, description="Diffusers config folder for a single-file base.")

    _config_version = config_field_validator()


class DesignTrainParams(JobParams):
    """design_train: train (or resume) a native garment generator on a dataset in the FGVC6 layout."""

    model_name: str = Field(..., min_length=1, max_length=64, description="The design model: a folder under "
                            "designs/ (lowercase letters, digits, '_' or '-').")
    dataset: str = Field(..., min_length=1, description="The training set folder: images/ plus train.csv (FGVC6 "
                         "RLE rows) or masks/<image name>.png (label PNGs).")
    config: DesignTrainConfig | None = Field(None, description="Training settings; empty: the defaults for a new "
                                             "model, the model's own for a resumed one.")
    resume: bool = Field(False, description="Continue from the model's last checkpoint (only steps, sample_every, "
                         "checkpoint_every and keep_checkpoints may change).")
    overwrite: bool = Field(False, description="Start the model again: its checkpoints, samples and losses are "
                            "deleted first.")
    device: str = Field("auto", min_length=1, max_length=40, description="auto, cpu, cuda, cuda:1, mps, ...")

    _config_version = config_field_validator()


class DigitalModelParams(JobParams):
    """digital_model: a garment kept exactly while the model, outfit, scene or pose around it is regenerated."""

    person: str | None = Field(None, description="The photo (mannequin, half-body or a model wearing the garment): a "
                               "file path; pose mode may go without one.")
    garment_id: str | None = Field(None, description="The garment's trained LoRA: optional, except for a pose swap.")
    outfit_id: str | None = Field(None, description="Outfit swap: the trained garment put on outfit_category.")
    outfit_image: str | None = Field(None, description="Outfit swap with a zero-shot backend (config.outfit_backend): "
                                     "the other garment's photo, a file path.")
    identity_id: str | None = Field(None, description="A trained identity as the model (its LoRA and face).")
    mask: str | None = Field(None, description="The kept garment as a mask image file (white), for mask_source 'mask'.")
    points: list[tuple[float, float, bool]] = Field([], description="Clicks [x, y, positive] on the kept garment, "
                                                   "for mask_source 'points'.")
    boxes: list[tuple[float, float, float, float]] = Field([], description="Boxes [x0, y0, x1, y1], for "
                                                           "mask_source 'points'.")
    skeleton: str | None = Field(None, max_length=100_000, description="OpenPose JSON (canvas_width, canvas_height, "
                                 "people[0].pose_keypoints_2d): the model's pose (model mode) or the new pose (pose "
                                 "mode); empty: found in the photo.")
    pose_photo: str | None = Field(None, description="Pose swap: a photo whose pose the model takes (a file path).")
    config: DigitalModelConfig = Field(default_factory=DigitalModelConfig)
    out: str | None = Field(None, description="Folder for the images; empty: the outputs folder.")
    base: str | None = Field(None, description="Standalone: the SD 1.5 base model; empty: the context's default.")
    config_dir: str | None = Field(None, description="Diffusers config folder for a single-file base.")

    _config_version = config_field_validator()


class GenerateParams(JobParams):
    """generate: plain txt2img, or img2img / inpaint with init_image (standalone /sdapi/v1 parity)."""

    prompt: str = Field("", max_length=20_000, description="The prompt; <lora:name:weight> tags apply LoRAs.")
    negative_prompt: str = Field("", max_length=20_000)
    steps: int = Field(20, ge=1, le=150)
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0)
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 = random.")
    sampler_name: str = Field("DPM++ 2M", min_length=1, max_length=80)
    scheduler: str = Field("Karras", min_length=1, max_length=80)
    width: int = Field(512, ge=64, le=2048, multiple_of=8)
    height: int = Field(512, ge=64, le=2048, multiple_of=8)
    batch_size: int = Field(1, ge=1, le=8)
    n_iter: int = Field(1, ge=1, le=16)
    init_image: str | None = Field(None, description="img2img: the image file to start from.")
    mask: str | None = Field(None, description="inpaint: the mask file (white = repaint).")
    denoising_strength: float = Field(0.75, gt=0.0, le=1.0)
    mask_blur: int = Field(4, ge=0, le=64)
    inpainting_fill: Literal["fill", "original", "latent noise", "latent nothing"] = "original"
    save_images: bool = Field(False, description="Also save into the outputs folder.")
    base: str | None = Field(None, description="The SD 1.5 base model; empty: the standalone default.")
    config_dir: str | None = Field(None, description="Diffusers config folder for a single-file base.")


MODELS: dict[str, type[JobParams]] = {
    "check_photos": CheckPhotosParams,
    "prepare_dataset": PrepareDatasetParams,
    "fetch_models": FetchModelsParams,
    "train": TrainParams,
    "portrait": PortraitParams,
    "portrait_compare": ComparePortraitParams,
    "garment_dataset": GarmentDatasetParams,
    "garment_train": GarmentTrainParams,
    "tryon": TryOnParams,
    "tryon_any": AnyGarmentParams,
    "design": DesignParams,
    "design_train": DesignTrainParams,
    "digital_model": DigitalModelParams,
    "generate": GenerateParams,
}


def parse(kind: str, params: Any) -> Any:
    """The typed parameters of a `kind` job (InvalidRequest when they do not validate); `params` unchanged for a
    kind without a model (one registered by a test or a later part of EasyPhoto)."""
    model = MODELS.get(kind)
    return params if model is None else model.checked(params, kind)


def parser(kind: str):
    """What JobQueue.register(params=...) takes: dict or model in, the kind's model out."""
    model = MODELS[kind]
    return lambda params: model.checked(params, kind)
