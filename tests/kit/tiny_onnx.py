"""Tiny ONNX stand-ins with the exact I/O signatures of insightface's buffalo_l models.

Why: EasyPhoto loads ``w600k_r50.onnx`` (ArcFace embedding) and ``det_10g.onnx`` (SCRFD face
detector) through onnxruntime / insightface, which dispatch on input names, input shapes and the
number, order and shapes of outputs. The real files come from a model hub the tests cannot
reach, so these graphs reproduce only the signatures, with small deterministic weights:

* ArcFace: ``input.1`` float32 ``[N,3,112,112]`` -> ``683`` float32 ``[N,512]``. Raw network output,
  not L2-normalised; the caller normalises pixels as ``(x-127.5)/127.5`` (insightface's choice for
  graphs whose first nodes are not named ``Sub``/``Mul``, which holds here).
* SCRFD (10g, with key points): ``input.1`` float32 ``[1,3,H,W]`` (H, W dynamic, multiples of 32)
  -> 9 outputs in insightface's order: scores for strides 8/16/32 ``[K_s,1]``, boxes ``[K_s,4]``,
  key points ``[K_s,10]``, where ``K_s = (H/s)*(W/s)*2`` (2 anchors per location, anchor index
  fastest, matching the anchor-centre order insightface builds). Output names follow the real
  file. Box/key-point values are distances in stride units, as in the real model.

The numbers they compute are meaningless (no face knowledge): they prove plumbing, not accuracy.
Scores are sigmoids around 0.4-0.7, so insightface's default 0.5 threshold keeps many boxes.
``insightface.model_zoo.get_model`` routes them to ``SCRFD`` (9 outputs: key points, 2 anchors)
and ``ArcFaceONNX`` (112x112 input; mean/std 127.5) like the real files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OPSET = 13
IR_VERSION = 8  # readable by every onnxruntime >= 1.10
ARCFACE_INPUT, ARCFACE_OUTPUT = "input.1", "683"
ARCFACE_SIZE, EMBEDDING_DIM = 112, 512
SCRFD_INPUT = "input.1"
SCRFD_STRIDES = (8, 16, 32)
SCRFD_ANCHORS = 2
SCRFD_OUTPUT_NAMES = {
    "score": ("448", "471", "494"),
    "bbox": ("451", "474", "497"),
    "kps": ("454", "477", "500"),
}
SCRFD_WIDTHS = {"score": 1, "bbox": 4, "kps": 10}
SEED = 1234


def _weights(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Deterministic float32 weights."""
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _model(graph):
    """Wrap a graph with a fixed opset/IR version and validate it with the ONNX checker."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="easyphoto-kit")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def arcface_graph():
    """Avg-pool 112->8, flatten (3*8*8=192), Gemm to 512: the embedding depends on every input pixel."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    pooled = 8
    features = 3 * pooled * pooled
    stride = ARCFACE_SIZE // pooled
    inits = [
        numpy_helper.from_array(_weights(rng, (features, EMBEDDING_DIM), 1.0 / np.sqrt(features)), "fc.weight"),
        numpy_helper.from_array(_weights(rng, (EMBEDDING_DIM,), 0.01), "fc.bias"),
    ]
    nodes = [
        helper.make_node(
            "AveragePool", ["input.1"], ["pool"], name="AveragePool_0", kernel_shape=[stride] * 2, strides=[stride] * 2
        ),
        helper.make_node("Flatten", ["pool"], ["flat"], name="Flatten_1", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], [ARCFACE_OUTPUT], name="Gemm_2"),
    ]
    inputs = [helper.make_tensor_value_info(ARCFACE_INPUT, TensorProto.FLOAT, [None, 3, ARCFACE_SIZE, ARCFACE_SIZE])]
    outputs = [helper.make_tensor_value_info(ARCFACE_OUTPUT, TensorProto.FLOAT, [None, EMBEDDING_DIM])]
    return helper.make_graph(nodes, "tiny_w600k_r50", inputs, outputs, inits)


def _scrfd_head(rng, stride: int, kind: str, out_name: str):
    """Nodes + initialisers for one head: pool by ``stride``, 1x1 conv, NCHW->NHWC, reshape to rows."""
    from onnx import helper, numpy_helper

    width = SCRFD_WIDTHS[kind]
    channels = SCRFD_ANCHORS * width
    tag = f"{kind}{stride}"
    inits = [
        numpy_helper.from_array(_weights(rng, (channels, 3, 1, 1), 0.5), f"{tag}.weight"),
        numpy_helper.from_array(_weights(rng, (channels,), 0.1), f"{tag}.bias"),
        numpy_helper.from_array(np.array([-1, width], dtype=np.int64), f"{tag}.shape"),
    ]
    raw = f"{tag}_raw"
    activation = "Sigmoid" if kind == "score" else "Softplus"  # probabilities; positive distances
    nodes = [
        helper.make_node(
            "Conv", [f"pool{stride}", f"{tag}.weight", f"{tag}.bias"], [f"{tag}_conv"], name=f"Conv_{tag}"
        ),
        helper.make_node("Transpose", [f"{tag}_conv"], [f"{tag}_nhwc"], name=f"Transpose_{tag}", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [f"{tag}_nhwc", f"{tag}.shape"], [raw], name=f"Reshape_{tag}"),
        helper.make_node(activation, [raw], [out_name], name=f"{activation}_{tag}"),
    ]
    return nodes, inits


def scrfd_graph():
    """Per stride: AveragePool(stride) of the image feeds score/bbox/kps heads; outputs in insightface order."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(SEED + 1)
    nodes, inits = [], []
    for stride in SCRFD_STRIDES:
        pool = helper.make_node(
            "AveragePool",
            [SCRFD_INPUT],
            [f"pool{stride}"],
            name=f"AveragePool_{stride}",
            kernel_shape=[stride] * 2,
            strides=[stride] * 2,
        )
        nodes.append(pool)
    outputs = []
    for kind, names in SCRFD_OUTPUT_NAMES.items():
        for stride, name in zip(SCRFD_STRIDES, names, strict=True):
            head_nodes, head_inits = _scrfd_head(rng, stride, kind, name)
            nodes += head_nodes
            inits += head_inits
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, SCRFD_WIDTHS[kind]]))
    inputs = [helper.make_tensor_value_info(SCRFD_INPUT, TensorProto.FLOAT, [1, 3, None, None])]
    return helper.make_graph(nodes, "tiny_det_10g", inputs, outputs, inits)


def scrfd_rows(height: int, width: int, stride: int) -> int:
    """Rows of each SCRFD output for one stride: locations times anchors."""
    return (height // stride) * (width // stride) * SCRFD_ANCHORS


def write_onnx(graph_fn, out_path: Path) -> Path:
    """Serialise the graph built by ``graph_fn`` to ``out_path`` (byte-identical on every run)."""
    import onnx

    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(_model(graph_fn()), str(out_path))
    return out_path


def build_onnx_models(folder: Path) -> dict[str, Path]:
    """Cached ``{"arcface": w600k_r50.onnx, "scrfd": det_10g.onnx}`` in ``folder``."""
    from .cache import cached_dir

    def build(tmp: Path) -> None:
        write_onnx(arcface_graph, tmp / "w600k_r50.onnx")
        write_onnx(scrfd_graph, tmp / "det_10g.onnx")

    cached_dir(folder, build)
    return {"arcface": folder / "w600k_r50.onnx", "scrfd": folder / "det_10g.onnx"}
