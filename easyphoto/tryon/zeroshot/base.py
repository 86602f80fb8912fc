"""The one interface every zero-shot try-on backend implements, and what each backend is (licence, size, defaults).

    backend = load_backend("leffa", paths, device="cuda")      # reads the published checkpoint layout
    image = backend.run(TryOnInputs(person, garment, mask, "upper", keypoints, parsing), steps=30, guidance=2.5,
                        seed=42, progress=..., should_stop=...)   # RGB uint8 at backend.info.size
    backend.evals.counts                                          # {"unet": 60, "reference unet": 60}

Inputs arrive already framed at the backend's trained size (framing.py): person photo, garment photo (on white),
the agnostic mask (255 = repaint), the category, and the person's pose and clothes parsing at that size. Every
backend keeps the person's pixels outside the mask itself (it only generates inside it; the caller pastes the mask
region back into the original photo, so outside the mask the photo is kept exactly whatever a backend does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from easyphoto.generation import Progress, ShouldStop, never_stop, no_progress
from easyphoto.tryon.zeroshot.registry import BackendInfo
from easyphoto.tryon.zeroshot.sampling import EvalCount


@dataclass
class TryOnInputs:
    person: np.ndarray  # RGB uint8 (H, W, 3), H × W = the backend's size
    garment: np.ndarray  # RGB uint8 (H, W, 3): the garment on white
    mask: np.ndarray  # uint8 0/255 (H, W): 255 = repaint
    category: str  # upper / lower / dress
    keypoints: np.ndarray | None = None  # COCO-18 (18, 3) in these pixels
    parsing: np.ndarray | None = None  # ATR labels (H, W) uint8, in these pixels

    def __post_init__(self):
        height, width = self.person.shape[:2]
        for name in ("garment", "mask"):
            if getattr(self, name).shape[:2] != (height, width):
                raise ValueError(f"The {name} is {getattr(self, name).shape[:2]}, the person {(height, width)}.")


class ZeroShotBackend(Protocol):
    info: BackendInfo
    evals: EvalCount
    variant: str
    size: tuple[int, int]  # (width, height) of this variant's training: the pipeline frames photos at it

    def run(self, inputs: TryOnInputs, *, steps: int, guidance: float, seed: int, progress: Progress = no_progress,
            should_stop: ShouldStop = never_stop) -> np.ndarray: ...

    def unload(self) -> None: ...




def keep_outside(person: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The generated pixels inside the mask, the person's own everywhere else (exactly)."""
    return np.where((np.asarray(mask) > 127)[..., None], generated, person).astype(np.uint8)


def release(*modules) -> None:
    """Drop a backend's modules and give their GPU memory back."""
    import gc

    import torch

    del modules
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = ["BackendInfo", "TryOnInputs", "ZeroShotBackend", "keep_outside", "release"]
