"""pytest plugin: session fixtures handing out the kit's offline models and real photos.

Register with ``pytest_plugins = ["tests.kit.fixtures"]`` in ``tests/conftest.py``.

Why session scope and the pytest cache: building the artefacts takes seconds, using them takes
milliseconds; they live under ``.pytest_cache/d/easyphoto-kit-v1`` and are rebuilt only when
``tests.kit.cache.KIT_VERSION`` changes (or the cache is cleared with ``pytest --cache-clear``).
A fixture whose real source (PyPI package) is unavailable skips locally and fails under ``CI``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import artefacts, photos
from .cache import SourceUnavailable, prepare_root
from .photos import skip_or_fail

CACHE_KEY = "easyphoto-kit-v1"


def _needs_source(build, *args, **kwargs):
    """Run an artefact builder; a missing real source becomes skip (locally) or failure (CI)."""
    try:
        return build(*args, **kwargs)
    except SourceUnavailable as exc:
        message = f"easyphoto test kit: {exc}"
    return skip_or_fail(message)  # outside the handler: no chained traceback in the report


def kit_cache_dir(config) -> Path:
    """Where the kit keeps its artefacts for this pytest run.

    In order: ``$EASYPHOTO_KIT_CACHE``; the pytest cache (``config.cache.mkdir``); and, when the
    cache plugin is disabled (``-p no:cacheprovider``, as run-tests.sh does), the same
    ``d/easyphoto-kit-v1`` folder under ``-o cache_dir=...`` or ``<rootdir>/.pytest_cache`` - a
    persistent place either way, so artefacts are not rebuilt by every session.
    """
    override = os.environ.get("EASYPHOTO_KIT_CACHE")
    if override:
        return Path(override)
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(CACHE_KEY))
    cache_dir = ".pytest_cache"
    for option in getattr(config.option, "override_ini", None) or []:
        key, _, value = option.partition("=")
        if key.strip() == "cache_dir" and value.strip():
            cache_dir = value.strip()
    return Path(config.rootpath, cache_dir, "d", CACHE_KEY)


@pytest.fixture(scope="session")
def kit_root(request) -> Path:
    """Versioned kit cache root (see :func:`kit_cache_dir`), wiped when ``KIT_VERSION`` changes."""
    return prepare_root(kit_cache_dir(request.config))


@pytest.fixture(scope="session")
def clip_tokenizer_dir(kit_root) -> Path:
    """Folder for ``CLIPTokenizer.from_pretrained``: the real CLIP BPE vocabulary (49408 tokens)."""
    return _needs_source(artefacts.tokenizer_dir, kit_root)


@pytest.fixture(scope="session")
def _tiny_sd_paths(kit_root, clip_tokenizer_dir):
    """All tiny SD diffusers folders (built together; they share the tokenizer)."""
    return _needs_source(artefacts.tiny_sd_paths, kit_root)


@pytest.fixture(scope="session")
def tiny_sd_dir(_tiny_sd_paths) -> Path:
    """``StableDiffusionPipeline`` folder: tiny SD 1.5 architecture, 4-channel UNet, DDIM, no safety checker."""
    return _tiny_sd_paths.txt2img


@pytest.fixture(scope="session")
def tiny_inpaint_dir(_tiny_sd_paths) -> Path:
    """``StableDiffusionInpaintPipeline`` folder with a 9-channel UNet."""
    return _tiny_sd_paths.inpaint


@pytest.fixture(scope="session")
def tiny_controlnet_dirs(_tiny_sd_paths) -> dict[str, Path]:
    """Kind ("canny", "openpose", "color", "tile") -> folder of a tiny ``ControlNetModel`` (RGB hint)."""
    return dict(_tiny_sd_paths.controlnets)


@pytest.fixture(scope="session")
def tiny_sd_config_dir(kit_root, _tiny_sd_paths) -> Path:
    """Weight-free copy of ``tiny_sd_dir`` (configs + tokenizer), the ``config=`` for single-file loading."""
    return artefacts.config_only_dir(kit_root, inpaint=False)


@pytest.fixture(scope="session")
def tiny_inpaint_config_dir(kit_root, _tiny_sd_paths) -> Path:
    """Weight-free copy of ``tiny_inpaint_dir``."""
    return artefacts.config_only_dir(kit_root, inpaint=True)


@pytest.fixture(scope="session")
def _tiny_sdxl(kit_root, clip_tokenizer_dir) -> dict[str, Path]:
    return _needs_source(artefacts.tiny_sdxl_paths, kit_root)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(_tiny_sdxl) -> Path:
    """``StableDiffusionXLPipeline`` folder: tiny SDXL architecture (two text encoders, text_time conditioning)."""
    return _tiny_sdxl["pipeline"]


@pytest.fixture(scope="session")
def tiny_sdxl_config_dir(_tiny_sdxl) -> Path:
    """Weight-free copy of ``tiny_sdxl_dir`` (configs + both tokenizers): ``config=`` for the SGM single file."""
    return _tiny_sdxl["config"]


@pytest.fixture(scope="session")
def tiny_sdxl_single_file(_tiny_sdxl) -> Path:
    """``tiny-sdxl.safetensors``: the tiny SDXL in the WebUI's SGM checkpoint layout."""
    return _tiny_sdxl["single_file"]


@pytest.fixture(scope="session")
def tiny_sdxl_controlnet_dir(_tiny_sdxl) -> Path:
    """A tiny SDXL ``ControlNetModel`` folder made from the tiny SDXL UNet."""
    return _tiny_sdxl["controlnet"]


@pytest.fixture(scope="session")
def tiny_single_file(kit_root, _tiny_sd_paths) -> Path:
    """``tiny-sd15.safetensors``: the txt2img model in WebUI/LDM key layout (``.yaml`` beside it)."""
    return artefacts.single_file_path(kit_root, inpaint=False)


@pytest.fixture(scope="session")
def tiny_inpaint_single_file(kit_root, _tiny_sd_paths) -> Path:
    """``tiny-sd15-inpainting.safetensors``: the 9-channel inpaint model in LDM layout (``.yaml`` beside it)."""
    return artefacts.single_file_path(kit_root, inpaint=True)


@pytest.fixture(scope="session")
def tiny_arcface_onnx(kit_root) -> Path:
    """``w600k_r50.onnx`` stand-in: ``input.1`` [N,3,112,112] -> ``683`` [N,512]."""
    return artefacts.onnx_models(kit_root)["arcface"]


@pytest.fixture(scope="session")
def tiny_scrfd_onnx(kit_root) -> Path:
    """``det_10g.onnx`` stand-in: ``input.1`` [1,3,H,W] -> 9 SCRFD outputs (scores, boxes, key points)."""
    return artefacts.onnx_models(kit_root)["scrfd"]


@pytest.fixture(scope="session")
def photo_t1(kit_root) -> Path:
    """insightface's ``t1.jpg``: a real group photo with six faces."""
    return photos.photo_t1(kit_root)


@pytest.fixture(scope="session")
def photo_astronaut() -> Path:
    """scikit-image's ``astronaut.png``: a real portrait with one face."""
    return photos.photo_astronaut()


@pytest.fixture(scope="session")
def photos_same_man(kit_root) -> list[Path]:
    """Three real photos of the same man (face_recognition's ``obama.jpg``, ``obama2.jpg``, ``obama3.jpg``)."""
    return photos.photos_same_man(kit_root)


@pytest.fixture(scope="session")
def photo_other_person(kit_root) -> Path:
    """A real photo of a different man (face_recognition's ``biden.jpg``)."""
    return photos.photo_other_person(kit_root)


@pytest.fixture
def offline(monkeypatch):
    """Hub offline mode plus a socket guard: any attempt to open a network connection fails the test."""
    import socket

    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session")
def tiny_segment(kit_root):
    """:class:`tests.kit.tiny_segment.TinySegmentPaths`: a tiny clothes-parsing SegFormer (random and rigged) and a
    tiny SAM as ONNX files (two encoder layouts + the official single-mask prompt decoder)."""
    from .tiny_segment import build_tiny_segment

    return build_tiny_segment(kit_root / "segment")


@pytest.fixture
def tiny_segment_paths(tmp_path, tiny_segment):
    """Standalone ``Paths`` whose models folder holds the tiny parser and SAM pair where the manifest puts them."""
    from easyphoto.store import Paths

    from .tiny_segment import install_tiny_segment

    paths = Paths.standalone(tmp_path / "data", tmp_path / "models")
    install_tiny_segment(paths, tiny_segment)
    return paths


@pytest.fixture
def api_ctx(tmp_path):
    """An offline standalone context in a fresh data folder; its job queue shut down after the test."""
    from easyphoto import operations
    from easyphoto.context import standalone_context

    yield standalone_context(tmp_path, offline=True)
    operations.shutdown_all()


@pytest.fixture
def api_client(api_ctx):
    """FastAPI's TestClient on the standalone app without the UI (server errors answered as 500s, not raised)."""
    from fastapi.testclient import TestClient

    from easyphoto.app import create_app

    return TestClient(create_app(api_ctx, with_ui=False), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def tiny_tryon_models(kit_root, clip_tokenizer_dir) -> Path:
    """A models root holding tiny Leffa, CatVTON and OOTDiffusion files in their published layouts, where the
    manifest puts them (<root>/tryon/...; tests/kit/tiny_tryon.py). Copy or link it into a test's models folder."""
    from .cache import cached_dir
    from .tiny_tryon import build_all_tryon

    return cached_dir(kit_root / "tryon_models", lambda tmp: build_all_tryon(tmp, clip_tokenizer_dir))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium (tests/kit/browser.py) for one test module; missing chromium/chromedriver/selenium skips
    locally and fails under CI."""
    from .browser import chromium_driver

    driver = chromium_driver(tmp_path_factory.mktemp("chromium-profile"))
    if driver is None:
        skip_or_fail("no chromium / chromedriver on PATH, or selenium is not installed (run-tests.sh forge installs "
                     "Debian's chromium + chromium-driver)")
    yield driver
    driver.quit()
