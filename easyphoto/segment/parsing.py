"""Clothes/human parsing with a SegFormer (mattmdjaga/segformer_b2_clothes, MIT): one ATR label per pixel.

    parser = load_parser(paths)            # checks the files and the label set; the model loads on first parse
    parsing = parser.parse(rgb)            # Parsing: (H, W) uint8 indices into ATR_LABELS, at the image's size

The model folder is what `save_pretrained` writes (config.json, model.safetensors) plus the image processor's
preprocessor_config.json; the manifest places the three files under `<models>/easyphoto/segformer_b2_clothes/`.
Preprocessing is ours, from preprocessor_config.json (resize to 512×512 bilinear, rescale to 0-1, ImageNet mean/std),
so it is the same on every transformers version; the logits (1/4 of 512) are upsampled bilinearly to the image size
before the argmax, as the model card does. Only safetensors weights are read (no pickle).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from easyphoto.errors import EasyPhotoError
from easyphoto.segment.checks import check_rgb, require_models, require_package
from easyphoto.segment.types import ATR_LABELS, Parsing
from easyphoto.store import Paths

PARSER_IDS = ("segformer-clothes-config", "segformer-clothes-weights", "segformer-clothes-preprocessor")
MODEL_REPO = "mattmdjaga/segformer_b2_clothes"
# What the model card's processor does, used when preprocessor_config.json leaves a value out.
DEFAULT_SIZE = (512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LabelSetMismatch(EasyPhotoError):
    """The model in the parser folder does not predict the 18 ATR labels in EasyPhoto's order."""

    phase = "segment"
    http_status = 409


def atr_name(label: str) -> str:
    """Our snake_case of a model's label name: "Upper-clothes" → "upper_clothes"."""
    return label.strip().lower().replace("-", "_").replace(" ", "_")


def check_label_set(config_file: Path) -> None:
    """Refuse a model whose id2label is not ATR_LABELS index for index (another parser would paint wrong regions)."""
    try:
        config = json.loads(Path(config_file).read_text(encoding="utf-8"))
        id2label = {int(k): str(v) for k, v in dict(config.get("id2label") or {}).items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise LabelSetMismatch(f"Cannot read the label set in {config_file}: {exc}.",
                               hint=f"Put the config.json of {MODEL_REPO} there.") from None
    names = [atr_name(id2label[i]) if i in id2label else "<missing>" for i in range(max(len(id2label), 1))]
    if tuple(names) == ATR_LABELS:
        return
    if len(names) != len(ATR_LABELS):
        problem = f"it predicts {len(id2label)} labels, EasyPhoto reads the 18 ATR labels"
    else:
        i = next(i for i, (a, b) in enumerate(zip(names, ATR_LABELS, strict=True)) if a != b)
        problem = f"label {i} is {id2label.get(i)!r} where the ATR order has {ATR_LABELS[i]!r}"
    raise LabelSetMismatch(
        f"The clothes parser in {Path(config_file).parent} has a different label set: {problem}.",
        hint=f"Use {MODEL_REPO} (labels {', '.join(ATR_LABELS)}); replace the folder's files with that model's.",
    )


def read_preprocessing(config_file: Path) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """(height, width), mean, std of the SegformerImageProcessor config (defaults for what it leaves out)."""
    try:
        config = json.loads(Path(config_file).read_text(encoding="utf-8"))
        size = config.get("size") or {}
        if isinstance(size, int):
            size = {"height": size, "width": size}
        hw = (int(size.get("height", DEFAULT_SIZE[0])), int(size.get("width", DEFAULT_SIZE[1])))
        mean = np.asarray(config.get("image_mean", IMAGENET_MEAN), np.float32).reshape(3)
        std = np.asarray(config.get("image_std", IMAGENET_STD), np.float32).reshape(3)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise EasyPhotoError(f"Cannot read {config_file}: {exc}.", phase="segment",
                             hint=f"Put the preprocessor_config.json of {MODEL_REPO} there.") from None
    return hw, mean, std


class SegformerParser:
    """A ClothesParser over a SegformerForSemanticSegmentation folder. The label set and preprocessing are read at
    construction (small JSON files); the weights load on the first parse() and stay until unload()."""

    name = "segformer-b2-clothes"

    def __init__(self, folder: Path | str, device: str | None = None):
        self.folder = Path(folder)
        check_label_set(self.folder / "config.json")
        self.input_size, self.mean, self.std = read_preprocessing(self.folder / "preprocessor_config.json")
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self):
        with self._lock:
            if self._model is None:
                self._model = self._load_model()
            return self._model

    def _load_model(self):
        require_package("transformers", "transformers", "Clothes parsing")
        import torch
        from transformers import SegformerForSemanticSegmentation

        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        from safetensors import SafetensorError

        try:  # only the safetensors file is read: a pytorch_model.bin dropped beside it is never unpickled
            model = SegformerForSemanticSegmentation.from_pretrained(str(self.folder), use_safetensors=True)
        except (SafetensorError, OSError) as exc:
            raise EasyPhotoError(
                f"Cannot load the clothes parser from {self.folder}: {str(exc)[:300]}", phase="segment",
                hint="A file is damaged: check with `python -m easyphoto models verify --group tryon`, then delete "
                     "it and fetch it again.") from None
        return model.to(self.device).eval()

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """(1, 3, h, w) float32: resized bilinearly to the model's input size, rescaled, normalised."""
        from PIL import Image

        height, width = self.input_size
        resized = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR), np.float32) / 255.0
        return np.ascontiguousarray(((resized - self.mean) / self.std).transpose(2, 0, 1)[None], np.float32)

    def parse(self, image: np.ndarray) -> Parsing:
        image = check_rgb(image)
        pixels = self.preprocess(image)
        model = self.load()
        import torch

        with torch.inference_mode():
            logits = model(pixel_values=torch.from_numpy(pixels).to(self.device)).logits
            # upsample the logits, not the labels: smooth garment edges at the photo's own resolution
            logits = torch.nn.functional.interpolate(logits, size=image.shape[:2], mode="bilinear",
                                                     align_corners=False)
            labels = logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
        return Parsing(labels)

    def unload(self) -> None:
        """Drop the weights (the next parse loads them again); on CUDA return the freed blocks to the driver."""
        with self._lock:
            if self._model is None:
                return
            self._model = None
        if self.device and self.device.startswith("cuda"):
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()


_parsers: dict[str, SegformerParser] = {}
_parsers_lock = threading.Lock()


def parser_folder(paths: Paths) -> Path:
    """Where the model manager puts the three files (one folder: from_pretrained reads it whole)."""
    files = require_models(PARSER_IDS, paths, "Clothes parsing")
    folders = {f.parent for f in files}
    if len(folders) != 1:
        raise EasyPhotoError(f"The clothes parser's files are in different folders: {sorted(map(str, folders))}.",
                             phase="segment", hint="Keep config.json, model.safetensors and "
                             "preprocessor_config.json together (models.json gives them one subdir).")
    return folders.pop()


def load_parser(paths: Paths) -> SegformerParser:
    """The process's parser for the manifest's SegFormer files: MissingWeights (with where each file goes and how
    to fetch it) when one is absent, LabelSetMismatch for another model. The weights load on the first parse()."""
    folder = parser_folder(paths)
    key = str(folder.resolve())
    with _parsers_lock:
        if key not in _parsers:
            _parsers[key] = SegformerParser(folder)
        return _parsers[key]


def unload_parsers() -> None:
    """Free every cached parser's weights (the parser objects stay, and reload on their next parse)."""
    with _parsers_lock:
        parsers = list(_parsers.values())
    for parser in parsers:
        parser.unload()
