"""What the training process is told: `TrainSpec`, written as spec.json by the runner, read by the child.

    spec = TrainSpec(identity_id="alice", identity_dir=..., lora_file=..., config=config, steps=800, base=...)
    write_spec(work / "spec.json", spec)          # easyphoto.train.runner (atomic)
    spec = read_spec(work / "spec.json")          # easyphoto.train.child: InvalidTrainSpec when it does not validate

The runner writes the file, so a spec that does not validate is a bug of EasyPhoto (the child reports it as one).
Light: pydantic and our config only, so the child can read it before torch is imported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from easyphoto.config import ConfigModel, FaceStack, TrainConfig, describe_errors
from easyphoto.job_params import config_field_validator
from easyphoto.store import IdentityLayout, Paths, atomic_write_json


class InvalidTrainSpec(ValueError):
    """spec.json is not a TrainSpec: the runner wrote something the child does not understand (a bug)."""


class TrainSpec(ConfigModel):
    identity_id: str = Field(..., min_length=1, description="The identity's id, or the garment's (subject garment).")
    identity_dir: Path
    # What the LoRA learns: a person (face-ID validation, identity.json) or a garment (garment-fidelity validation on
    # its own photos, garment.json; its dataset is built by easyphoto.tryon.dataset before the child starts).
    subject: Literal["identity", "garment"] = "identity"
    category: str | None = Field(None, description="Garment category (subject garment).")
    lora_file: Path
    config: TrainConfig
    steps: int = Field(..., ge=1, description="Training steps (the reference rule on the dataset's photo count).")
    base: Path | None = Field(None, description="The base checkpoint or diffusers folder; training needs one.")
    config_dir: Path | None = Field(None, description="Diffusers config folder for a single-file base.")
    resume: bool = False
    device: str = Field("auto", min_length=1, description="auto (resolved by the child), cpu, cuda, cuda:1, ...")
    face_stack: FaceStack = "auto"
    max_upload_megapixels: float = Field(64.0, ge=1.0, le=400.0)
    paths: dict[str, Path] | None = Field(None, description="Paths.to_dict() of the parent's context.")
    models_root: Path | None = Field(None, description="Without `paths`: our weights folder.")
    # The identity's own folders unless given (a test may point them elsewhere).
    dataset_dir: Path | None = None
    checkpoints_dir: Path | None = None
    validation_dir: Path | None = None

    _config_version = config_field_validator()

    @property
    def layout(self) -> IdentityLayout:
        return IdentityLayout(self.identity_id, self.identity_dir, self.lora_file)

    @property
    def dataset(self) -> Path:
        return self.dataset_dir or self.layout.dataset

    @property
    def checkpoints(self) -> Path:
        return self.checkpoints_dir or self.layout.checkpoints

    @property
    def validation(self) -> Path:
        return self.validation_dir or self.layout.validation

    def base_path(self) -> Path:
        if self.base is None:
            raise InvalidTrainSpec("the training spec names no base model (base)")
        return self.base

    def store_paths(self) -> Paths:
        """The parent's folders; from models_root (and the identity's place) when the spec has no `paths`."""
        if self.paths is not None:
            return Paths(**self.paths)
        if self.models_root is None:
            raise InvalidTrainSpec("the training spec has neither paths nor models_root")
        models = self.models_root
        return Paths(self.identity_dir.parents[1], models, self.lora_file.parent, models, models)


def as_spec(spec: TrainSpec | Mapping[str, Any]) -> TrainSpec:
    """`spec` itself, or the dict validated into a TrainSpec (InvalidTrainSpec naming the bad fields)."""
    if isinstance(spec, TrainSpec):
        return spec
    try:
        return TrainSpec.from_dict(spec)
    except ValueError as exc:  # pydantic's ValidationError on both major versions
        raise InvalidTrainSpec(f"the training spec is not valid: {describe_errors(exc)}") from None


def read_spec(path: Path) -> TrainSpec:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidTrainSpec(f"the training spec {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidTrainSpec(f"the training spec {path} is not a JSON object")
    return as_spec(data)


def write_spec(path: Path, spec: TrainSpec) -> Path:
    return atomic_write_json(path, spec.to_dict())


def resolve_device(device: str | None) -> str:
    """"auto"/None: CUDA when available, else CPU; anything else is passed through."""
    if device and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
