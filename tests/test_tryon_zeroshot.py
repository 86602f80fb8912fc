"""Zero-shot try-on backends (issue 15) on tiny random models written in each project's published layout
(tests/kit/tiny_tryon.py): loading with every key checked, running, keeping the person outside the mask, seeds,
refusing damaged or foreign checkpoints; plus the agnostic mask, the framing and the whole pipeline."""

from __future__ import annotations

import collections
import json
import shutil

import numpy as np
import pytest
import torch

from easyphoto.config import AnyGarmentConfig
from easyphoto.segment.types import LABEL_INDEX, Parsing
from easyphoto.tryon.masks import EmptyTryOnMask, NoPersonFound, TryOnInputError
from easyphoto.tryon.zeroshot import agnostic, checkpoints, framing
from easyphoto.tryon.zeroshot.base import TryOnInputs
from easyphoto.tryon.zeroshot.catvton import CatVTONBackend, CatVTONFiles, published_keys
from easyphoto.tryon.zeroshot.checkpoints import CheckpointError
from easyphoto.tryon.zeroshot.leffa import LeffaBackend, LeffaFiles
from easyphoto.tryon.zeroshot.ootd import OOTDBackend, OOTDFiles
from easyphoto.tryon.zeroshot.pipeline import AnyGarmentPipeline, GarmentImage
from easyphoto.tryon.zeroshot.registry import BACKENDS, NonCommercialNotAllowed, check_licence
from tests.kit.tiny_sd import torch_threads

H, W = 64, 48  # a 3:4 working size: 8×6 latents


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture
def models(tiny_tryon_models, tmp_path):
    """A private copy: tests that damage a file or convert a pickle must not touch the shared kit cache."""
    target = tmp_path / "models"
    shutil.copytree(tiny_tryon_models, target)
    return target


def leffa(models, variant="viton_hd", name="virtual_tryon.pth", **kw):
    root = models / "tryon" / "leffa"
    return LeffaBackend(LeffaFiles(root / "stable-diffusion-inpainting", root / name), variant=variant, **kw)


def catvton(models, variant_dir="mix-48k-1024", variant="mix"):
    root = models / "tryon" / "catvton"
    return CatVTONBackend(CatVTONFiles(root / "stable-diffusion-inpainting" / "unet",
                                       root / "stable-diffusion-inpainting" / "scheduler" / "scheduler_config.json",
                                       root / "sd-vae-ft-mse", root / variant_dir / "attention" / "model.safetensors"),
                          variant=variant)


def ootd(models, variant="hd"):
    return OOTDBackend(OOTDFiles(models / "tryon" / "ootd" / "checkpoints" / "ootd",
                                 models / "tryon" / "clip-vit-large-patch14"), variant=variant)


LOADERS = {"leffa": leffa, "catvton": catvton, "ootd": ootd}


def inputs(seed=0, category="upper", garment=None):
    rng = np.random.default_rng(seed)
    person = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[16:48, 8:40] = 255
    parsing = np.zeros((H, W), np.uint8)
    parsing[8:60, 4:44] = LABEL_INDEX["upper_clothes"]
    parsing[0:8, 16:32] = LABEL_INDEX["face"]
    keypoints = np.zeros((18, 3))
    keypoints[[2, 5, 8, 11]] = [[10, 16, 1], [38, 16, 1], [14, 44, 1], [34, 44, 1]]
    if garment is None:
        garment = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return TryOnInputs(person, garment, mask, category, keypoints, parsing)


# ---------------------------------------------------------------------------------------------- every backend


@pytest.mark.parametrize("name", list(LOADERS))
def test_backend_runs_keeps_the_person_outside_the_mask_and_is_seed_deterministic(models, name):
    backend = LOADERS[name](models)
    given = inputs()
    first = backend.run(given, steps=3, guidance=2.5, seed=7)
    again = backend.run(given, steps=3, guidance=2.5, seed=7)
    other = backend.run(given, steps=3, guidance=2.5, seed=8)
    outside = given.mask == 0
    assert first.shape == (H, W, 3) and first.dtype == np.uint8
    assert np.array_equal(first[outside], given.person[outside])  # exactly the person's pixels
    assert np.mean(first[~outside] != given.person[~outside]) > 0.5  # the mask was generated
    assert np.array_equal(first, again)
    assert not np.array_equal(first[~outside], other[~outside])
    assert sum(backend.evals.counts.values()) > 0
    backend.unload()


@pytest.mark.parametrize("name", list(LOADERS))
def test_the_garment_reaches_the_generation(models, name):
    """The garment enters through the reference/outfitting UNet (Leffa, OOTDiffusion) or the spatial
    concatenation (CatVTON): another garment photo, same seed, gives other pixels inside the mask."""
    backend = LOADERS[name](models)
    one = backend.run(inputs(garment=np.full((H, W, 3), 20, np.uint8)), steps=2, guidance=2.5, seed=3)
    two = backend.run(inputs(garment=np.full((H, W, 3), 235, np.uint8)), steps=2, guidance=2.5, seed=3)
    inside = inputs().mask > 0
    assert not np.array_equal(one[inside], two[inside])


def test_leffa_counts_both_unets_per_step_and_the_reference_once_when_reused(models):
    backend = leffa(models)
    backend.run(inputs(), steps=3, guidance=2.5, seed=1)
    assert backend.evals.counts == {"reference unet": 6, "unet": 6}  # guidance batch of 2, 3 steps
    fast = leffa(models, reuse_reference=True)
    fast.run(inputs(), steps=3, guidance=2.5, seed=1)
    assert fast.evals.counts == {"reference unet": 2, "unet": 6}


def test_leffa_dress_code_variant_loads_its_own_checkpoint(models):
    dc = leffa(models, variant="dress_code", name="virtual_tryon_dc.pth")
    hd = leffa(models)
    a, b = (m.run(inputs(), steps=2, guidance=2.5, seed=4) for m in (hd, dc))
    assert not np.array_equal(a, b)
    assert dc.densepose(inputs()).max() <= 24  # DressCode's encoding: raw part indices


def test_ootd_hd_refuses_lower_garments_and_dc_takes_them(models):
    with pytest.raises(TryOnInputError, match="upper garments only"):
        ootd(models).run(inputs(category="lower"), steps=2, guidance=2.0, seed=1)
    from easyphoto.tryon.zeroshot.registry import UnknownBackend

    assert BACKENDS["ootd"].variant_for("lower", None) == "dc"  # chosen for the category when none is asked
    with pytest.raises(UnknownBackend, match="trained on upper garments only"):
        BACKENDS["ootd"].variant_for("lower", "hd")  # said before anything loads
    out = ootd(models, variant="dc").run(inputs(category="lower"), steps=2, guidance=2.0, seed=1)
    assert out.shape == (H, W, 3)


def test_ootd_conditioning_is_text_plus_the_garments_clip_embedding(models):
    hd, dc = ootd(models), ootd(models, variant="dc")
    garment = inputs().garment
    assert tuple(hd.conditioning(garment, "upper").shape) == (1, 2, 32)  # [BOS, image]
    assert tuple(dc.conditioning(garment, "dress").shape) == (1, 4, 32)  # [BOS, "dress", EOS, image]
    other = np.full_like(garment, 200)
    assert not torch.equal(hd.conditioning(garment, "upper"), hd.conditioning(other, "upper"))


# ---------------------------------------------------------------------------------------------- checkpoints


def test_catvton_attention_keys_follow_the_published_module_list(models):
    backend = catvton(models)
    mapping = published_keys(backend.unet)
    layers = sorted({key.split(".")[0] for key in mapping}, key=int)
    assert layers == [str(8 * k) for k in range(len(layers))]  # stride 8
    last = mapping[f"{layers[-1]}.to_q.weight"]
    assert last.startswith("mid_block.")  # registration order: down blocks, up blocks, then the mid block
    assert mapping["0.to_out.0.bias"] == "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.bias"


def test_a_leffa_checkpoint_with_missing_and_unexpected_keys_is_refused_naming_them(models):
    path = models / "tryon" / "leffa" / "virtual_tryon.pth"
    state = torch.load(path, weights_only=True)
    del state["unet.conv_in.weight"]
    state["unet.extra_adapter.weight"] = torch.zeros(2)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as caught:
        leffa(models)
    message = caught.value.message
    assert "unet.conv_in.weight" in message or "conv_in.weight" in message
    assert "extra_adapter.weight" in message and "missing" in message and "unexpected" in message


def test_a_leffa_checkpoint_under_an_unknown_prefix_is_refused(models):
    path = models / "tryon" / "leffa" / "virtual_tryon.pth"
    state = torch.load(path, weights_only=True)
    state["text_encoder.embeddings.weight"] = torch.zeros(2)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="text_encoder.embeddings.weight"):
        leffa(models)


def test_a_catvton_attention_file_with_a_missing_or_misshapen_key_is_refused(models):
    from safetensors.torch import load_file, save_file

    path = models / "tryon" / "catvton" / "mix-48k-1024" / "attention" / "model.safetensors"
    state = load_file(str(path))
    del state["8.to_k.weight"]
    state["0.to_q.weight"] = torch.zeros(3, 3)
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as caught:
        catvton(models)
    assert "8.to_k.weight" in caught.value.message and "0.to_q.weight (3, 3)" in caught.value.message


class Payload:
    """A Python object a malicious pickle could carry."""


def test_a_pickle_with_non_tensor_objects_is_refused(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"weight": torch.zeros(2), "epoch": 3, "optimizer": {"lr": 0.1}}, plain)
    with pytest.raises(CheckpointError, match="2 entries that are not tensors: epoch, optimizer"):
        checkpoints.read_weights(plain)
    crafted = tmp_path / "crafted.pth"
    torch.save({"weight": torch.zeros(2), "payload": Payload()}, crafted)
    with pytest.raises(CheckpointError, match="Python objects other than tensors"):
        checkpoints.read_weights(crafted)
    assert not (tmp_path / "crafted.safetensors").exists() and not (tmp_path / "plain.safetensors").exists()


def test_a_pickle_is_converted_to_safetensors_once_with_both_hashes_recorded(tmp_path):
    source = tmp_path / "weights.pth"
    torch.save(collections.OrderedDict(a=torch.arange(4.0), b=torch.ones(2, 2)), source)
    state = checkpoints.read_weights(source)
    converted = tmp_path / "weights.safetensors"
    record = json.loads((tmp_path / "weights.safetensors.json").read_text())
    assert torch.equal(state["a"], torch.arange(4.0)) and converted.is_file()
    assert record["source_sha256"] == checkpoints.sha256_of(source)
    assert record["sha256"] == checkpoints.sha256_of(converted) and record["tensors"] == 2
    stamp = converted.stat().st_mtime_ns
    checkpoints.read_weights(source)
    assert converted.stat().st_mtime_ns == stamp  # not converted again
    torch.save({"a": torch.zeros(4), "b": torch.ones(2, 2)}, source)  # the pickle changed
    assert torch.equal(checkpoints.read_weights(source)["a"], torch.zeros(4))


def test_a_truncated_safetensors_file_and_an_unknown_format_are_named(tmp_path):
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable .safetensors file"):
        checkpoints.read_weights(broken)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown weight format"):
        checkpoints.read_weights(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoints.read_weights(tmp_path / "absent.safetensors")


def test_a_base_unet_that_is_not_an_inpainting_unet_is_refused(models):
    config = models / "tryon" / "catvton" / "stable-diffusion-inpainting" / "unet" / "config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "in_channels": 4}))
    with pytest.raises(CheckpointError, match="4 input channels, not the 9"):
        catvton(models)


# ---------------------------------------------------------------------------------------------- licences


def test_non_commercial_backends_need_the_opt_in(tmp_path):
    from easyphoto.config import Settings

    check_licence(BACKENDS["leffa"], Settings())  # MIT: no opt-in
    for name in ("catvton", "ootd"):
        with pytest.raises(NonCommercialNotAllowed) as caught:
            check_licence(BACKENDS[name], Settings())
        assert "CC BY-NC-SA" in caught.value.message and "allow_noncommercial_tryon" in caught.value.hint
        check_licence(BACKENDS[name], Settings(allow_noncommercial_tryon=True))


# ---------------------------------------------------------------------------------------------- the agnostic mask


def body(shape=(200, 150)):
    """A person in a T-shirt and trousers: parsing labels + COCO-18 key points, arms hanging, hands visible."""
    labels = np.zeros(shape, np.uint8)
    labels[10:40, 60:90] = LABEL_INDEX["face"]
    labels[40:110, 45:105] = LABEL_INDEX["upper_clothes"]  # a T-shirt: short sleeves
    labels[40:70, 30:45] = LABEL_INDEX["right_arm"]
    labels[40:70, 105:120] = LABEL_INDEX["left_arm"]
    labels[110:190, 50:100] = LABEL_INDEX["pants"]
    labels[190:200, 50:100] = LABEL_INDEX["left_shoe"]
    points = np.zeros((18, 3))
    points[[1, 2, 5, 3, 6, 4, 7, 8, 11, 9, 12, 10, 13]] = [
        [75, 42, 1], [50, 45, 1], [100, 45, 1], [38, 75, 1], [112, 75, 1], [36, 100, 1], [114, 100, 1],
        [60, 110, 1], [90, 110, 1], [60, 150, 1], [90, 150, 1], [60, 185, 1], [90, 185, 1]]
    return Parsing(labels), points


def test_upper_mask_covers_a_long_sleeve_not_just_the_old_t_shirt_and_keeps_face_hands_and_trousers():
    parsing, points = body()
    result = agnostic.agnostic_mask(parsing.labels.shape, "upper", parsing=parsing, keypoints=points, dilation=4)
    mask = result.mask > 0
    assert mask[85, 38]  # the forearm, below the T-shirt's sleeve: a long sleeve may go there
    assert not (mask & (parsing.mask("face") > 0)).any()
    assert not (mask & (parsing.mask("pants") > 0)).any()
    assert not mask[108, 36]  # the right hand (a disc past the wrist)
    assert {"face", "right hand", "left hand", "other garments"} <= set(result.protected)


def test_lower_and_dress_masks():
    parsing, points = body()
    lower = agnostic.agnostic_mask(parsing.labels.shape, "pants", parsing=parsing, keypoints=points).mask > 0
    assert lower[150, 75] and not (lower & (parsing.mask("upper_clothes") > 0)).any()
    dress = agnostic.agnostic_mask(parsing.labels.shape, "dress", parsing=parsing, keypoints=points).mask > 0
    assert dress[80, 75] and dress[150, 75] and not (dress & (parsing.mask("left_shoe") > 0)).any()


def test_a_given_mask_is_used_as_drawn_minus_the_protected_regions():
    parsing, points = body()
    drawn = np.zeros(parsing.labels.shape, np.uint8)
    drawn[0:120, 40:110] = 255
    result = agnostic.agnostic_mask(parsing.labels.shape, "upper", parsing=parsing, keypoints=points, given=drawn)
    assert result.mask[60, 75] == 255 and result.mask[20, 75] == 0  # the face stays
    assert result.mask[125, 75] == 0  # outside the drawing: not added by the silhouette


def test_mask_errors_are_said_before_anything_runs():
    parsing, points = body()
    with pytest.raises(NoPersonFound):
        agnostic.agnostic_mask((50, 50), "upper", parsing=Parsing(np.zeros((50, 50), np.uint8)), keypoints=None)
    with pytest.raises(TryOnInputError, match="no garment category 'hat'"):
        agnostic.agnostic_mask(parsing.labels.shape, "hat", parsing=parsing, keypoints=points)
    with pytest.raises(EmptyTryOnMask, match="given try-on mask is empty"):
        agnostic.agnostic_mask(parsing.labels.shape, "upper", parsing=parsing, keypoints=points,
                               given=np.zeros(parsing.labels.shape, np.uint8))


# ---------------------------------------------------------------------------------------------- framing


def test_frame_has_the_backend_aspect_contains_the_mask_and_pastes_back_only_the_mask():
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    mask = np.zeros((300, 500), np.uint8)
    mask[40:280, 400:480] = 255  # near the right edge: the frame leaves the photo there
    frame = framing.fit_frame(photo.shape[:2], mask, (48, 64))
    x0, y0, x1, y1 = frame.box
    assert abs((x1 - x0) / (y1 - y0) - 0.75) < 0.02 and x0 <= 400 and x1 >= 480 and y0 <= 40 and y1 >= 280
    cut = frame.cut(photo)
    assert cut.shape == (64, 48, 3) and frame.cut_mask(mask).shape == (64, 48)
    generated = np.zeros((64, 48, 3), np.uint8)
    out = framing.paste_into(photo, frame, generated, mask, feather=1.0)
    assert np.array_equal(out[mask == 0], photo[mask == 0])
    assert (out[mask > 0] != photo[mask > 0]).mean() > 0.5


# ---------------------------------------------------------------------------------------------- the pipeline


class RiggedParser:
    def __init__(self, parsing):
        self.parsing = parsing

    def parse(self, pixels):
        assert pixels.shape[:2] == self.parsing.labels.shape
        return self.parsing


def test_pipeline_frames_runs_and_pastes_back_with_the_licence_in_the_infotext(models):
    parsing, points = body()
    rng = np.random.default_rng(5)
    photo = rng.integers(0, 256, (200, 150, 3), dtype=np.uint8)
    garment = np.full((80, 60, 3), 255, np.uint8)
    garment[10:70, 10:50] = (200, 30, 30)
    config = AnyGarmentConfig(backend="leffa", category="upper", work_size=64, steps=2, seed=11)
    pipeline = AnyGarmentPipeline(leffa(models), config, parser=RiggedParser(parsing), pose=lambda px: points)
    result = pipeline.render(photo, GarmentImage(garment))
    image = np.asarray(result.image)
    assert image.shape == photo.shape and result.size == (48, 64) and result.seed == 11
    assert np.array_equal(image[result.mask == 0], photo[result.mask == 0])
    assert result.licence["backend"] == "leffa" and result.licence["commercial_use"] is True
    assert "EasyPhoto backend licence: \"MIT (code and weights" in result.infotext and "Seed: 11" in result.infotext
    assert result.fidelity is not None and 0.0 <= result.fidelity.score <= 1.0
    again = pipeline.render(photo, GarmentImage(garment))
    assert np.array_equal(np.asarray(again.image), image)


def test_pipeline_refuses_an_empty_garment_photo_before_running(models):
    parsing, points = body()
    pipeline = AnyGarmentPipeline(leffa(models), AnyGarmentConfig(work_size=64, steps=2), parser=RiggedParser(parsing),
                                  pose=lambda px: points)
    with pytest.raises(TryOnInputError, match="shows no garment"):
        pipeline.render(np.zeros((200, 150, 3), np.uint8), GarmentImage(np.full((40, 40, 3), 255, np.uint8)))
