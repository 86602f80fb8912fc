"""What both segmentation models check before any model work: the image, and that their files are in place.

Light on purpose (numpy and the manifest only): the API and the UI validate with these without loading a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from easyphoto import weights
from easyphoto.errors import BackendUnavailable, InvalidRequest, MissingWeights
from easyphoto.store import Paths

FETCH_GROUP = "tryon"
FETCH_HINT = (f"Download it in EasyPhoto → Models (group {FETCH_GROUP}), or run "
              f"`python -m easyphoto models fetch --group {FETCH_GROUP}`; or put the file(s) there by hand.")


class SegmentInputError(InvalidRequest):
    """An image or a prompt a segmentation model cannot take; the message names the argument and the rule."""

    phase = "segment"


def check_rgb(image: object, argument: str = "image") -> np.ndarray:
    """The image as a (H, W, 3) uint8 array, or SegmentInputError saying what it is instead."""
    if not isinstance(image, np.ndarray):
        raise SegmentInputError(f"{argument} must be a numpy array (H, W, 3) of uint8 RGB, not {type(image).__name__}.",
                                hint="Convert a PIL image with np.asarray(image.convert('RGB')).")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SegmentInputError(f"{argument} must be (H, W, 3) uint8 RGB; got shape {image.shape}, {image.dtype}.",
                                hint="Convert it to 8-bit RGB first (drop alpha, expand grey).")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise SegmentInputError(f"{argument} is empty ({image.shape[1]}×{image.shape[0]} pixels).")
    return image


def require_models(entry_ids: Sequence[str], paths: Paths, what: str) -> list:
    """Paths of the manifest files `what` needs, or MissingWeights naming each missing file, where it goes and how
    to fetch it (the Models tab or the CLI). Looks at the disk only: nothing is loaded or downloaded."""
    try:
        return weights.require(list(entry_ids), paths)
    except MissingWeights as exc:
        raise MissingWeights(f"{what} cannot run: {exc.message}", missing=exc.missing, hint=FETCH_HINT) from None


def require_package(module: str, pip_name: str, what: str) -> None:
    """BackendUnavailable when `module` cannot be imported (checked by spec: nothing heavy is imported here)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise BackendUnavailable(f"{what} needs the Python package {pip_name}, which is not installed.",
                                 hint=f"pip install {pip_name}, then restart.")
