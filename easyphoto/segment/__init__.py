"""Segmentation capabilities for try-on: clothes/human parsing (SegFormer, 18 ATR labels) and point/box prompted
masks (SAM-class ONNX pair). Importing this package loads no model and imports neither torch nor onnxruntime.

    parser = load_parser(paths)          # ClothesParser; MissingWeights says how to fetch the files (group tryon)
    parser.parse(rgb).category_mask("upper")
    segmenter = load_segmenter(paths)    # PointSegmenter; embed()/cache_info() for click-to-mask in a browser
    segmenter.segment(rgb, [Point(120, 200)], boxes=[(10, 20, 300, 400)])
    unload()                             # free both models' weights (e.g. before a diffusion job)
"""

from easyphoto.segment.checks import FETCH_HINT, SegmentInputError, check_rgb
from easyphoto.segment.parsing import (
    PARSER_IDS,
    LabelSetMismatch,
    SegformerParser,
    load_parser,
    unload_parsers,
)
from easyphoto.segment.sam import (
    SEGMENTER_IDS,
    EmbeddingCacheInfo,
    SamOnnxSegmenter,
    UnsupportedSamModel,
    load_segmenter,
    unload_segmenters,
)
from easyphoto.segment.types import (
    ATR_LABELS,
    GARMENT_CATEGORIES,
    LABEL_INDEX,
    PROTECTED_LABELS,
    Box,
    ClothesParser,
    Parsing,
    Point,
    PointSegmenter,
)


def unload() -> None:
    """Free the weights of every cached parser and segmenter (they reload on their next use)."""
    unload_parsers()
    unload_segmenters()


__all__ = [
    "ATR_LABELS", "FETCH_HINT", "GARMENT_CATEGORIES", "LABEL_INDEX", "PARSER_IDS", "PROTECTED_LABELS",
    "SEGMENTER_IDS", "Box", "ClothesParser", "EmbeddingCacheInfo", "LabelSetMismatch", "Parsing", "Point",
    "PointSegmenter", "SamOnnxSegmenter", "SegformerParser", "SegmentInputError", "UnsupportedSamModel",
    "check_rgb", "load_parser", "load_segmenter", "unload", "unload_parsers", "unload_segmenters",
]
