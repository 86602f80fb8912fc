"""Tiny segmentation models with the real architectures and file layouts: a clothes-parsing SegFormer and a SAM
exported to ONNX as the two files EasyPhoto loads.

Why: ``easyphoto.segment`` loads ``mattmdjaga/segformer_b2_clothes`` (a ``SegformerForSemanticSegmentation``
folder: config.json + model.safetensors + preprocessor_config.json) and a SAM-class model as two ONNX files (image
encoder + the official prompt decoder export). None can be downloaded here, so the kit builds them:

* SegFormer: transformers' ``SegformerForSemanticSegmentation`` at tiny hidden sizes, 18 labels named like the real
  model's ``id2label``, random weights (seeded), saved with ``save_pretrained(safe_serialization=True)`` plus a
  ``preprocessor_config.json`` (512×512, ImageNet mean/std). A "rigged" copy (:func:`rig_by_colour`) has weights
  set by hand so that its label follows each pixel's colour (red-dominant → "Upper-clothes", blue-dominant →
  "Pants", else "Background"; :func:`colour_rule`): behaviour tests check label order, orientation and the
  resize back to the image size against something computed from the image itself.
* SAM: transformers' ``SamModel`` at tiny sizes (image 1024, patch 16 → 64×64 embeddings, 32 channels), random
  weights (seeded). Exported with ``torch.onnx.export(dynamo=False)`` (the TorchScript exporter: torch 2.13's
  default dynamo exporter needs onnxscript, which the venvs lack) as
  - ``sam_encoder_nchw.onnx``: ``x`` float32 (1,3,1024,1024), normalised and padded by the caller →
    ``image_embeddings`` (1,32,64,64): the I/O of segment-anything's ``scripts/export_onnx_model.py`` encoder;
  - ``mobile_sam_image_encoder.onnx``: ``input_image`` float32 (H,W,3) RGB 0-255, longest side 1024, normalised and
    zero-padded inside the graph (segment-anything's ``ImageEncoderOnnxModel(use_preprocess=True)``, the layout of
    Acly/MobileSAM's file) → ``image_embeddings``; the same weights as the NCHW file;
  - ``sam_mask_decoder_single.onnx``: the official prompt decoder I/O (``image_embeddings``, ``point_coords``
    (1,N,2), ``point_labels`` (1,N), ``mask_input`` (1,1,256,256), ``has_mask_input`` (1,), ``orig_im_size`` (2,) →
    ``masks`` (1,1,H,W) logits at the original size, ``iou_predictions`` (1,1), ``low_res_masks`` (1,1,256,256)),
    written from the published contract of segment-anything's ``SamOnnxModel(return_single_mask=True)``: point
    coordinates +0.5 then /1024, label −1 = padding (the not-a-point embedding, no position), 0..3 = negative,
    positive, box corners; masks upsampled to 1024, cropped to the resized image, upsampled to ``orig_im_size``.
Random weights: the masks mean nothing, but they depend on every prompt, which is what the tests check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SEED = 1234
# Bump when a builder below changes: artefacts live under <root>/v<this>/, so stale builds are never reused.
SEGMENT_KIT_VERSION = "2"
ATR_NAMES = (
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt", "Left-shoe",
    "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
)
RIGGED_LABEL = 4  # "Upper-clothes": where red dominates
PANTS_LABEL = 6  # "Pants": where blue dominates
SAM_IMAGE_SIZE = 1024
SAM_CHANNELS = 32
OPSET = 17
PREPROCESSOR = {
    "do_normalize": True, "do_reduce_labels": False, "do_rescale": True, "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    "image_processor_type": "SegformerImageProcessor", "resample": 2, "rescale_factor": 1 / 255,
    "size": {"height": 512, "width": 512},
}
SEGFORMER_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


@dataclass(frozen=True)
class TinySegmentPaths:
    segformer: Path  # random weights
    segformer_rigged: Path  # RIGGED_LABEL everywhere
    sam_encoder_nchw: Path
    sam_encoder_hwc: Path
    sam_decoder: Path


# ------------------------------------------------------------------------------------------------------ SegFormer


def _segformer_model(seed: int):
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(seed)
    config = SegformerConfig(
        num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1], hidden_sizes=[8, 16, 24, 32],
        num_attention_heads=[1, 1, 1, 2], mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=16, num_labels=18,
        id2label=dict(enumerate(ATR_NAMES)),
        label2id={name: i for i, name in enumerate(ATR_NAMES)},
    )
    return SegformerForSemanticSegmentation(config).eval()


def _save_segformer(model, folder: Path) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2))
    missing = [name for name in SEGFORMER_FILES if not (folder / name).is_file()]
    if missing:  # an old transformers writing pytorch_model.bin would not match the manifest's files
        raise RuntimeError(f"save_pretrained did not write {missing} in {folder}")


def rig_by_colour(model) -> None:
    """Make the label follow each pixel's colour, through every layer of the real architecture:
    "Upper-clothes" where the normalised red exceeds the normalised blue, "Pants" where blue exceeds red,
    "Background" where they are equal (see :func:`colour_rule`).

    Stage 1's patch embedding reads only the centre tap of its 7×7 window: channel 0 = red − blue, channel 1 = its
    negation, whose LayerNorm turns into ±2 (the sign survives, the size does not). Every transformer block is made
    the identity (attention and Mix-FFN output projections zeroed: the residual passes through), later stages and
    their decoder MLPs contribute zero, and the decode head routes stage 1's two channels through linear_fuse and
    ReLU to the classifier rows of labels 4 and 6; label 0 has a small bias that wins where both are (nearly) zero."""
    import torch

    encoder, head = model.segformer.encoder, model.decode_head
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:  # weights; LayerNorm/BatchNorm keep their identity init
                parameter.zero_()
        for block in encoder.block:
            for layer in block:
                layer.attention.output.dense.bias.zero_()
                layer.mlp.dense2.bias.zero_()
        centre = encoder.patch_embeddings[0].proj
        centre.bias.zero_()
        centre.weight[0, 0, 3, 3], centre.weight[0, 2, 3, 3] = 1.0, -1.0
        centre.weight[1] = -centre.weight[0]
        for mlp in head.linear_c:
            mlp.proj.bias.zero_()
        head.linear_c[0].proj.weight[0, 0], head.linear_c[0].proj.weight[1, 1] = 1.0, 1.0
        stage1 = 3 * head.linear_c[0].proj.out_features  # concatenated deepest stage first
        head.linear_fuse.weight[0, stage1, 0, 0], head.linear_fuse.weight[1, stage1 + 1, 0, 0] = 1.0, 1.0
        head.classifier.bias.zero_()
        head.classifier.bias[0] = 0.5
        head.classifier.weight[RIGGED_LABEL, 0, 0, 0], head.classifier.weight[PANTS_LABEL, 1, 0, 0] = 1.0, 1.0


def colour_rule(image):
    """The label the colour-rigged model gives an RGB uint8 image's pixels (before its 512² resize): 4 where
    the ImageNet-normalised red exceeds the normalised blue, 6 where it is below, 0 where equal."""
    import numpy as np

    pixels = image.astype(np.float32) / 255.0
    red = (pixels[..., 0] - PREPROCESSOR["image_mean"][0]) / PREPROCESSOR["image_std"][0]
    blue = (pixels[..., 2] - PREPROCESSOR["image_mean"][2]) / PREPROCESSOR["image_std"][2]
    return np.where(red > blue, RIGGED_LABEL, np.where(red < blue, PANTS_LABEL, 0)).astype(np.uint8)


def build_segformer(folder: Path, *, rigged: bool) -> Path:
    from .cache import cached_dir

    def build(tmp: Path) -> None:
        model = _segformer_model(SEED)
        if rigged:
            rig_by_colour(model)
        _save_segformer(model, tmp)

    return cached_dir(folder, build)


# ------------------------------------------------------------------------------------------------------ SAM


def _sam_model():
    import torch
    from transformers import SamConfig, SamModel

    torch.manual_seed(SEED)
    config = SamConfig(
        vision_config={"hidden_size": 32, "output_channels": SAM_CHANNELS, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": SAM_IMAGE_SIZE, "patch_size": 16, "window_size": 8,
                       "global_attn_indexes": [1], "mlp_dim": 64, "num_pos_feats": SAM_CHANNELS // 2,
                       "initializer_range": 0.02},
        prompt_encoder_config={"hidden_size": SAM_CHANNELS, "image_size": SAM_IMAGE_SIZE, "patch_size": 16,
                               "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": SAM_CHANNELS, "mlp_dim": 64, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "iou_head_hidden_dim": 32},
        initializer_range=0.02,
    )
    return SamModel(config).eval()


def _encoder_modules(sam):
    import torch

    class NchwEncoder(torch.nn.Module):
        """x: normalised, padded (1,3,1024,1024) → image_embeddings."""

        def __init__(self):
            super().__init__()
            self.vision = sam.vision_encoder

        def forward(self, x):
            return self.vision(pixel_values=x, return_dict=False)[0]

    class HwcEncoder(torch.nn.Module):
        """input_image: RGB 0-255 (H,W,3), longest side 1024 → normalise, channels first, zero-pad, encode."""

        def __init__(self):
            super().__init__()
            self.vision = sam.vision_encoder
            self.register_buffer("mean", torch.tensor([123.675, 116.28, 103.53]))
            self.register_buffer("std", torch.tensor([58.395, 57.12, 57.375]))

        def forward(self, input_image):
            x = ((input_image - self.mean) / self.std).permute(2, 0, 1)
            pad_h, pad_w = SAM_IMAGE_SIZE - x.shape[1], SAM_IMAGE_SIZE - x.shape[2]
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h)).unsqueeze(0)
            return self.vision(pixel_values=x, return_dict=False)[0]

    return NchwEncoder().eval(), HwcEncoder().eval()


def _decoder_module(sam):
    import torch
    import torch.nn.functional as F

    prompt = sam.prompt_encoder

    class PromptDecoder(torch.nn.Module):
        """The official SAM ONNX decoder contract (single-mask variant) over transformers' SAM modules."""

        def __init__(self):
            super().__init__()
            self.sam = sam

        def embed_points(self, coords, labels):
            coords = (coords + 0.5) / SAM_IMAGE_SIZE
            pe = self.sam.shared_image_embedding(coords[:, None])[:, 0]  # (1,N,C)
            labels = labels[..., None]
            embedding = pe * (labels != -1) + prompt.not_a_point_embed.weight * (labels == -1)
            for i, point_embed in enumerate(prompt.point_embed):
                embedding = embedding + point_embed.weight * (labels == i)
            return embedding

        def embed_mask(self, mask_input, has_mask_input):
            no_mask = prompt.no_mask_embed.weight.reshape(1, -1, 1, 1)
            return has_mask_input * prompt.mask_embed(mask_input) + (1 - has_mask_input) * no_mask

        def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
            sparse = self.embed_points(point_coords, point_labels)
            dense = self.embed_mask(mask_input, has_mask_input)
            masks, scores = self.sam.mask_decoder(
                image_embeddings=image_embeddings,
                image_positional_embeddings=self.sam.get_image_wide_positional_embeddings(),
                sparse_prompt_embeddings=sparse[:, None], dense_prompt_embeddings=dense, multimask_output=True,
            )[:2]
            masks, scores = masks[:, 0], scores[:, 0]  # one prompt batch
            # the official selection without control flow: the single-mask token when more than 2 points
            reweight = torch.tensor([[1000.0] + [0.0] * (scores.shape[1] - 1)])
            best = torch.argmax(scores + (point_coords.shape[1] - 2.5) * reweight, dim=1)
            masks, scores = masks[:, best], scores[:, best]
            return self.postprocess(masks, orig_im_size), scores, masks

        @staticmethod
        def postprocess(masks, orig_im_size):
            masks = F.interpolate(masks, size=(SAM_IMAGE_SIZE, SAM_IMAGE_SIZE), mode="bilinear", align_corners=False)
            size = orig_im_size.to(torch.float32)
            resized = torch.floor(size * (SAM_IMAGE_SIZE / torch.max(size)) + 0.5).to(torch.int64)
            masks = masks[..., : resized[0], : resized[1]]
            original = orig_im_size.to(torch.int64)
            return F.interpolate(masks, size=(original[0], original[1]), mode="bilinear", align_corners=False)

    return PromptDecoder().eval()


def _export(module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic, expected for this export
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)


def _write_sam(folder: Path) -> None:
    import torch

    sam = _sam_model()
    nchw, hwc = _encoder_modules(sam)
    _export(nchw, (torch.randn(1, 3, SAM_IMAGE_SIZE, SAM_IMAGE_SIZE),), folder / "sam_encoder_nchw.onnx",
            ["x"], ["image_embeddings"], {})
    _export(hwc, (torch.rand(SAM_IMAGE_SIZE, 683, 3) * 255,), folder / "mobile_sam_image_encoder.onnx",
            ["input_image"], ["image_embeddings"], {"input_image": {0: "height", 1: "width"}})
    side = SAM_IMAGE_SIZE // 16
    dummy = (
        torch.randn(1, SAM_CHANNELS, side, side), torch.randint(0, SAM_IMAGE_SIZE, (1, 5, 2)).float(),
        torch.randint(0, 4, (1, 5)).float(), torch.zeros(1, 1, 4 * side, 4 * side), torch.tensor([0.0]),
        torch.tensor([1500.0, 2250.0]),
    )
    _export(_decoder_module(sam), dummy, folder / "sam_mask_decoder_single.onnx",
            ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"],
            ["masks", "iou_predictions", "low_res_masks"],
            {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})


def build_sam(folder: Path) -> Path:
    from .cache import cached_dir

    return cached_dir(folder, _write_sam)


def build_tiny_segment(root: Path) -> TinySegmentPaths:
    """Cached tiny segmentation models under ``root``."""
    from .tiny_sd import torch_threads

    root = root / f"v{SEGMENT_KIT_VERSION}"
    with torch_threads():
        parser = build_segformer(root / "segformer", rigged=False)
        rigged = build_segformer(root / "segformer-rigged", rigged=True)
        sam = build_sam(root / "sam")
    return TinySegmentPaths(parser, rigged, sam / "sam_encoder_nchw.onnx", sam / "mobile_sam_image_encoder.onnx",
                            sam / "sam_mask_decoder_single.onnx")


def install_tiny_segment(paths, tiny: TinySegmentPaths, *, rigged: bool = False, encoder: str = "hwc",
                         parser: bool = True, segmenter: bool = True) -> None:
    """Copy the tiny files where the manifest (easyphoto/models.json) puts the real ones for ``paths``.

    ``encoder`` "hwc" installs the in-graph-preprocessing encoder (Acly/MobileSAM's layout), "nchw" the
    segment-anything export, under the manifest's file name either way."""
    import shutil

    from easyphoto import weights

    files = {}
    if parser:
        folder = tiny.segformer_rigged if rigged else tiny.segformer
        files.update({"segformer-clothes-config": folder / "config.json",
                      "segformer-clothes-weights": folder / "model.safetensors",
                      "segformer-clothes-preprocessor": folder / "preprocessor_config.json"})
    if segmenter:
        files.update({"mobilesam-encoder": tiny.sam_encoder_hwc if encoder == "hwc" else tiny.sam_encoder_nchw,
                      "mobilesam-decoder": tiny.sam_decoder})
    for entry_id, source in files.items():
        target = weights.get(entry_id).path(paths)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
