"""Point/box prompted masks with a SAM-class model (MobileSAM, SAM ViT-B) run by ONNX Runtime as two files.

    segmenter = load_segmenter(paths)
    mask = segmenter.segment(rgb, [Point(120, 200), Point(40, 40, positive=False)], boxes=[(10, 20, 300, 400)])

Written from the published ONNX contracts (segment-anything's scripts/export_onnx_model.py and
segment_anything/utils/onnx.py), not from their code:

- Image encoder, one of two layouts, told apart by the session's first input (its name varies between exports):
  * rank 4 (1, 3, S, S), e.g. `x`: the caller resizes the longest side to S (1024), normalises with SAM's pixel
    mean/std and zero-pads bottom/right (segment-anything's own encoder export);
  * rank 3 (H, W, 3), e.g. `input_image`: RGB 0-255 float resized so the longest side is 1024; normalisation and
    padding are inside the graph (ImageEncoderOnnxModel(use_preprocess=True): Acly/MobileSAM's file).
  The first output is the embedding (1, C, 64, 64) (C = 256 for SAM and MobileSAM).
- Prompt decoder (the official export): image_embeddings, point_coords (1, N, 2) in the resized frame, point_labels
  (1, N) with 1 positive, 0 negative, −1 padding, 2/3 box corners, mask_input (1, 1, 256, 256), has_mask_input (1,),
  orig_im_size (2,) = (H, W) → masks (1, K, H, W) logits at the original size (K = 1 for a single-mask export, 4
  otherwise), iou_predictions (1, K), low_res_masks. A mask pixel is "in" where its logit is > 0.
Points without a box get a padding point (label −1), as the official notebook does; each box is its own decoder
run with the points, and the masks of several boxes are merged by union.

The encoder is the slow half (seconds on a CPU); its output is cached per image (key: sha256 of the pixels), so a
browser's second click on the same photo runs only the decoder.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from easyphoto.errors import EasyPhotoError
from easyphoto.segment.checks import SegmentInputError, check_rgb, require_models, require_package
from easyphoto.segment.types import Box, Point
from easyphoto.store import Paths

SEGMENTER_IDS = ("mobilesam-encoder", "mobilesam-decoder")
LONGEST_SIDE = 1024
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_PADDING, LABEL_BOX_START, LABEL_BOX_END = 0.0, 1.0, -1.0, 2.0, 3.0
MASK_THRESHOLD = 0.0  # SAM's: logits, not probabilities
MAX_POINTS = 64
MAX_BOXES = 16


class UnsupportedSamModel(EasyPhotoError):
    """An ONNX file whose inputs/outputs are not one of the SAM layouts this module reads."""

    phase = "segment"
    http_status = 409


@dataclass(frozen=True)
class EmbeddingCacheInfo:
    hits: int
    misses: int
    encoder_runs: int  # times the image encoder actually ran
    size: int
    maxsize: int


@dataclass(frozen=True)
class _Embedding:
    array: np.ndarray  # (1, C, 64, 64)
    resized: tuple[int, int]  # (h, w) of the image the encoder saw, before padding
    original: tuple[int, int]  # (H, W) of the image


def resized_shape(height: int, width: int, longest: int = LONGEST_SIDE) -> tuple[int, int]:
    """SAM's ResizeLongestSide target (h, w): the longest side becomes `longest`, rounded half up."""
    scale = longest / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def pixel_key(image: np.ndarray) -> str:
    """Cache key of an image: its shape and the sha256 of its pixels."""
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes())
    digest.update(repr(image.shape).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- checking prompts


def _finite(*values: float) -> bool:
    return all(isinstance(v, int | float | np.floating | np.integer) and math.isfinite(float(v)) for v in values)


def check_points(points: Sequence[Point], height: int, width: int) -> list[Point]:
    if not isinstance(points, list | tuple):
        raise SegmentInputError(f"points must be a list of Point, not {type(points).__name__}.")
    if len(points) > MAX_POINTS:
        raise SegmentInputError(f"{len(points)} points; at most {MAX_POINTS}.", hint="Use a box for large objects.")
    for i, point in enumerate(points):
        if not isinstance(point, Point) or not _finite(point.x, point.y):
            raise SegmentInputError(f"points[{i}] must be a Point with finite x and y, not {point!r}.")
        if not (0 <= point.x < width and 0 <= point.y < height):
            raise SegmentInputError(f"points[{i}] ({point.x:g}, {point.y:g}) is outside the {width}×{height} image.",
                                    hint="Click inside the photo: x in [0, width), y in [0, height).")
    return list(points)


def check_boxes(boxes: Sequence[Box] | None, height: int, width: int) -> list[tuple[float, float, float, float]]:
    if boxes is None:
        return []
    if not isinstance(boxes, list | tuple):
        raise SegmentInputError(f"boxes must be a list of (x0, y0, x1, y1), not {type(boxes).__name__}.")
    if len(boxes) > MAX_BOXES:
        raise SegmentInputError(f"{len(boxes)} boxes; at most {MAX_BOXES}.")
    checked = []
    for i, box in enumerate(boxes):
        if not isinstance(box, list | tuple | np.ndarray) or len(box) != 4 or not _finite(*box):
            raise SegmentInputError(f"boxes[{i}] must be 4 finite numbers (x0, y0, x1, y1), not {box!r}.")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x0 < x1 and y0 < y1):
            raise SegmentInputError(f"boxes[{i}] {box!r} is empty or inverted: need x0 < x1 and y0 < y1.")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise SegmentInputError(f"boxes[{i}] {box!r} reaches outside the {width}×{height} image.",
                                    hint="Keep boxes within 0 ≤ x ≤ width, 0 ≤ y ≤ height.")
        checked.append((x0, y0, x1, y1))
    return checked


def check_prompts(points, boxes, height: int, width: int):
    """(points, boxes) checked against the image size; SegmentInputError names the bad one."""
    points, boxes = check_points(points, height, width), check_boxes(boxes, height, width)
    if not boxes and not any(p.positive for p in points):
        what = "only negative points" if points else "no prompt"
        raise SegmentInputError(f"Nothing to segment: {what}.",
                                hint="Give at least one positive point (a click on the object) or a box.")
    return points, boxes


# ---------------------------------------------------------------------------------------------- the ONNX pair


def _session(model_file: Path):
    """An ONNX Runtime session (CUDA when this onnxruntime has it); a file it cannot read is UnsupportedSamModel."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf, NoSuchFile

    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(str(model_file), sess_options=options, providers=providers)
    except (Fail, InvalidGraph, InvalidProtobuf, NoSuchFile) as exc:
        raise UnsupportedSamModel(
            f"ONNX Runtime cannot open {model_file}: {type(exc).__name__}: {str(exc)[:300]}",
            hint="The file is damaged or not ONNX: check it with `python -m easyphoto models verify --group tryon`, "
                 "then delete it and fetch it again.") from None


def encoder_layout(session, name: str) -> str:
    """"nchw" (caller normalises and pads) or "hwc" (the graph does), from the first input's shape."""
    shape = list(session.get_inputs()[0].shape)
    if len(shape) == 4 and shape[1] == 3:
        if isinstance(shape[2], int) and shape[2] != LONGEST_SIDE:
            raise UnsupportedSamModel(f"{name}: encoder input {shape}; SAM encoders take 1×3×{LONGEST_SIDE}².")
        return "nchw"
    if len(shape) == 3 and shape[2] == 3:
        return "hwc"
    raise UnsupportedSamModel(
        f"{name}: encoder input {session.get_inputs()[0].name!r} has shape {shape}; expected (1, 3, 1024, 1024) "
        "normalised pixels or (H, W, 3) RGB 0-255.", hint="Use a SAM/MobileSAM image encoder ONNX export.")


def check_decoder(session, name: str) -> None:
    inputs = {i.name for i in session.get_inputs()}
    missing = [n for n in DECODER_INPUTS if n not in inputs]
    outputs = [o.name for o in session.get_outputs()]
    if missing or "masks" not in outputs:
        raise UnsupportedSamModel(
            f"{name}: not the SAM prompt decoder export (missing inputs {missing or 'none'}; outputs {outputs}).",
            hint="Use segment-anything's scripts/export_onnx_model.py decoder (or Acly/MobileSAM's file).")


def check_pair(encoder, decoder, names: tuple[str, str]) -> None:
    """The encoder's embedding must be what the decoder takes (a ViT-B decoder with a MobileSAM encoder is not)."""
    produced = list(encoder.get_outputs()[0].shape)
    expected = next(list(i.shape) for i in decoder.get_inputs() if i.name == "image_embeddings")
    fixed = [(a, b) for a, b in zip(produced, expected, strict=False) if isinstance(a, int) and isinstance(b, int)]
    if len(produced) != len(expected) or any(a != b for a, b in fixed):
        raise UnsupportedSamModel(
            f"{names[0]} produces embeddings {produced} but {names[1]} takes {expected}: not one model's pair.",
            hint="Use the encoder and decoder files of the same SAM/MobileSAM export.")


class SamOnnxSegmenter:
    """A PointSegmenter over an encoder/decoder ONNX pair. Sessions open on first use; embeddings are kept for the
    `cache_size` most recently used images."""

    name = "sam-onnx"

    def __init__(self, encoder_file: Path | str, decoder_file: Path | str, cache_size: int = 4):
        self.encoder_file, self.decoder_file = Path(encoder_file), Path(decoder_file)
        self.cache_size = max(1, int(cache_size))
        self._encoder = self._decoder = None
        self._layout = ""
        self._cache: OrderedDict[str, _Embedding] = OrderedDict()
        self._hits = self._misses = self._runs = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ sessions

    def _sessions(self):
        with self._lock:
            if self._encoder is None:
                require_package("onnxruntime", "onnxruntime", "Point/box masks")
                encoder, decoder = _session(self.encoder_file), _session(self.decoder_file)
                layout = encoder_layout(encoder, self.encoder_file.name)
                check_decoder(decoder, self.decoder_file.name)
                check_pair(encoder, decoder, (self.encoder_file.name, self.decoder_file.name))
                self._encoder, self._decoder, self._layout = encoder, decoder, layout
            return self._encoder, self._decoder

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def unload(self) -> None:
        """Close both sessions and forget the cached embeddings."""
        with self._lock:
            self._encoder = self._decoder = None
            self._cache.clear()

    # ------------------------------------------------------------------ encoder

    def encoder_input(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """The encoder's input for an RGB image, and the resized (h, w) before padding."""
        from PIL import Image

        h, w = resized_shape(*image.shape[:2])
        resized = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR), np.float32)
        if self._layout == "hwc":
            return np.ascontiguousarray(resized), (h, w)
        canvas = np.zeros((LONGEST_SIDE, LONGEST_SIDE, 3), np.float32)  # zero after normalising: SAM pads so
        canvas[:h, :w] = (resized - PIXEL_MEAN) / PIXEL_STD
        return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]), (h, w)

    def embed(self, image: np.ndarray) -> np.ndarray:
        """The image embedding (1, C, 64, 64), from the cache when this exact image was embedded recently."""
        return self._embedding(check_rgb(image)).array

    def embedding_with_sizes(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """(the embedding, the resized (h, w) the encoder saw, the original (H, W)): what a decoder elsewhere (the
        browser's) needs to scale its prompt points as this one does."""
        embedding = self._embedding(check_rgb(image))
        return embedding.array, embedding.resized, embedding.original

    def _embedding(self, image: np.ndarray) -> _Embedding:
        key = pixel_key(image)
        with self._lock:
            if key in self._cache:
                self._hits += 1
                self._cache.move_to_end(key)
                return self._cache[key]
            self._misses += 1
            encoder, _ = self._sessions()
            blob, resized = self.encoder_input(image)
            array = encoder.run(None, {encoder.get_inputs()[0].name: blob})[0]
            self._runs += 1
            embedding = _Embedding(np.ascontiguousarray(array, np.float32), resized, image.shape[:2])
            self._cache[key] = embedding
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return embedding

    def cache_info(self) -> EmbeddingCacheInfo:
        with self._lock:
            return EmbeddingCacheInfo(self._hits, self._misses, self._runs, len(self._cache), self.cache_size)

    # ------------------------------------------------------------------ decoder

    def segment(self, image: np.ndarray, points: list[Point], boxes: list[Box] | None = None) -> np.ndarray:
        """uint8 0/255 (H, W) mask of what the prompts select. Prompts are checked before any model runs."""
        image = check_rgb(image)
        points, boxes = check_prompts(points, boxes, *image.shape[:2])
        embedding = self._embedding(image)
        runs = [self._decode(embedding, points, box) for box in boxes] if boxes else [
            self._decode(embedding, points, None)]
        return (np.logical_or.reduce(runs) * 255).astype(np.uint8)

    def prompt_arrays(self, embedding: _Embedding, points: list[Point], box) -> tuple[np.ndarray, np.ndarray]:
        """point_coords (1, N, 2) in the encoder's resized frame and point_labels (1, N)."""
        coords = [(p.x, p.y) for p in points]
        labels = [LABEL_POSITIVE if p.positive else LABEL_NEGATIVE for p in points]
        if box is None:
            coords.append((0.0, 0.0))  # the official padding point: tells the decoder no box follows
            labels.append(LABEL_PADDING)
        else:
            coords += [(box[0], box[1]), (box[2], box[3])]
            labels += [LABEL_BOX_START, LABEL_BOX_END]
        (height, width), (new_h, new_w) = embedding.original, embedding.resized
        scale = np.array([new_w / width, new_h / height], np.float32)
        return (np.asarray(coords, np.float32) * scale)[None], np.asarray(labels, np.float32)[None]

    def _decode(self, embedding: _Embedding, points: list[Point], box) -> np.ndarray:
        _, decoder = self._sessions()
        coords, labels = self.prompt_arrays(embedding, points, box)
        feeds = {
            "image_embeddings": embedding.array, "point_coords": coords, "point_labels": labels,
            "mask_input": np.zeros((1, 1, *(4 * s for s in embedding.array.shape[-2:])), np.float32),
            "has_mask_input": np.zeros(1, np.float32), "orig_im_size": np.asarray(embedding.original, np.float32),
        }
        with self._lock:
            masks, scores = decoder.run(["masks", "iou_predictions"], feeds)
        return choose_mask(masks, scores, coords.shape[1]) > MASK_THRESHOLD


def choose_mask(masks: np.ndarray, scores: np.ndarray, num_points: int) -> np.ndarray:
    """(H, W) logits of the mask to use. A multi-mask export gives 4: like the single-mask export's own choice,
    the first (single-object) mask for more than 2 prompt points, else the best predicted IoU among the others."""
    if masks.shape[1] == 1:
        return masks[0, 0]
    if num_points > 2:
        return masks[0, 0]
    return masks[0, 1 + int(np.argmax(scores[0, 1:]))]


_segmenters: dict[tuple[str, str], SamOnnxSegmenter] = {}
_segmenters_lock = threading.Lock()


def load_segmenter(paths: Paths) -> SamOnnxSegmenter:
    """The process's segmenter for the manifest's encoder/decoder pair: MissingWeights (where each file goes and how
    to fetch it) when one is absent. The ONNX sessions open on the first segment()/embed()."""
    encoder, decoder = require_models(SEGMENTER_IDS, paths, "Point/box masks")
    key = (str(encoder.resolve()), str(decoder.resolve()))
    with _segmenters_lock:
        if key not in _segmenters:
            _segmenters[key] = SamOnnxSegmenter(encoder, decoder)
        return _segmenters[key]


def unload_segmenters() -> None:
    with _segmenters_lock:
        segmenters = list(_segmenters.values())
    for segmenter in segmenters:
        segmenter.unload()
