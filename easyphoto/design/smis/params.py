"""The typed parameters of the "design_train" job live in easyphoto.job_params with every job's (so that module
imports no design code but the config); re-exported here for the design package."""

from easyphoto.job_params import DesignTrainParams

__all__ = ["DesignTrainParams"]
