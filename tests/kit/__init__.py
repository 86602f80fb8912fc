"""EasyPhoto test kit: offline stand-ins for the hub models and real photos from PyPI packages.

Why: the code under test needs SD 1.5 (+ inpaint, ControlNet, a WebUI single-file checkpoint),
the CLIP tokenizer, insightface's ONNX models and photos of real faces, none of which can be
downloaded from a model hub here. The kit builds tiny, deterministic models with the real
architectures and file layouts, and pulls real photos out of PyPI packages.

Use the pytest fixtures in :mod:`tests.kit.fixtures` (register the plugin), or the builders below
with any folder as the cache root. ``python -m tests.kit [ROOT]`` pre-builds everything and
prints the time each step took.

Measured on the 2-core dev machine (torch 2.13 CPU, diffusers 0.31): cold build of every model
artefact ~7-10 s (tokenizer incl. wheel download 2 s, tiny SD folders 4 s, single files 1 s,
ONNX 0.1 s); fetching the photos ~6 s more (pip prepares the face_recognition sdist's metadata);
``tests/test_kit_models.py`` ~7-13 s with a warm cache, ~20 s cold.
"""

from .artefacts import build_all, config_only_dir, onnx_models, single_file_path, tiny_sd_paths, tokenizer_dir
from .cache import KIT_VERSION, SourceUnavailable, prepare_root
from .clip_tokenizer import VOCAB_SIZE, build_clip_tokenizer
from .lora import random_lora
from .photos import in_ci, photo_astronaut, photo_other_person, photo_t1, photos_same_man, skip_or_fail
from .single_file import ldm_yaml, pipeline_to_ldm, text_encoder_to_ldm, unet_to_ldm, vae_to_ldm
from .tiny_onnx import ARCFACE_INPUT, ARCFACE_OUTPUT, SCRFD_INPUT, SCRFD_OUTPUT_NAMES, scrfd_rows
from .tiny_sd import IMAGE_SIZE, TinySDPaths, make_controlnet, make_text_encoder, make_unet, make_vae, torch_threads

__all__ = [
    "ARCFACE_INPUT",
    "ARCFACE_OUTPUT",
    "IMAGE_SIZE",
    "KIT_VERSION",
    "SCRFD_INPUT",
    "SCRFD_OUTPUT_NAMES",
    "VOCAB_SIZE",
    "SourceUnavailable",
    "TinySDPaths",
    "build_all",
    "build_clip_tokenizer",
    "config_only_dir",
    "in_ci",
    "ldm_yaml",
    "make_controlnet",
    "make_text_encoder",
    "make_unet",
    "make_vae",
    "onnx_models",
    "photo_astronaut",
    "photo_other_person",
    "photo_t1",
    "photos_same_man",
    "pipeline_to_ldm",
    "prepare_root",
    "random_lora",
    "scrfd_rows",
    "single_file_path",
    "skip_or_fail",
    "text_encoder_to_ldm",
    "tiny_sd_paths",
    "tokenizer_dir",
    "torch_threads",
    "unet_to_ldm",
    "vae_to_ldm",
]
