"""The typed parameters of the "design_train" job (the native generator's training)."""

from __future__ import annotations

from pydantic import Field

from easyphoto.design.smis.config import DesignTrainConfig
from easyphoto.job_params import JobParams, config_field_validator


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
