"""The native garment generator (issue 16, route 2) on tiny sizes: a synthetic dataset of textured shapes written in
the FGVC6 layout (images/ + train.csv RLE, and a PNG-mask variant), its resize cache, training through a real job
queue (every loss term logged and finite, samples, checkpoints), resume equal to an uninterrupted run tensor for
tensor, a cancel that keeps a resumable checkpoint, inference white outside the layout, and every bad input."""

from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

from easyphoto.design.layout import BACKGROUND, NUM_CLASSES, LayoutError, layout_mask
from easyphoto.design.smis.cache import build_cache, load_cache
from easyphoto.design.smis.checkpoint import checkpoint_steps, load_tensors
from easyphoto.design.smis.config import DesignTrainConfig
from easyphoto.design.smis.fgvc6 import DesignDatasetError, scan_dataset
from easyphoto.design.smis.params import DesignTrainParams
from easyphoto.design.smis.run import (
    VGG_ID,
    DesignModelDamaged,
    DesignModelNotFound,
    design_train_operation,
    generate_from_layout,
    list_design_models,
    model_folder,
    read_losses,
    unload,
)
from easyphoto.design.smis.trainer import LOSS_TERMS
from easyphoto.design.smis.vgg import VGGWeightsError, conv_indices, load_vgg19
from easyphoto.errors import Conflict, InvalidRequest, MissingWeights
from easyphoto.jobs import JobQueue, JobState
from tests.kit.tiny_sd import torch_threads

SIZE = 64
PHOTO = (96, 72)  # width, height: not square, so the letterbox pads top and bottom
TINY = {"image_size": SIZE, "levels": 4, "width": 4, "encoder_width": 1, "latent_channels": 1, "disc_width": 4,
        "disc_layers": 2, "discriminators": 2, "batch_size": 2, "seed": 3}
TINY_VGG_WIDTHS = (4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8)  # one per convolution up to relu5_1


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield
    unload()


# ---------------------------------------------------------------------------------------------- the synthetic set


def synthetic_layouts(count: int) -> list[np.ndarray]:
    """(H, W) labels per photo: a shirt (0) box, pants (6) ellipse, a sleeve (31) lying on the shirt."""
    height, width = PHOTO[1], PHOTO[0]
    ys, xs = np.mgrid[0:height, 0:width]
    layouts = []
    for index in range(count):
        labels = np.full((height, width), BACKGROUND, np.int32)
        left = 8 + 4 * index
        labels[6:40, left:left + 30] = 0
        labels[((ys - 52) / 14) ** 2 + ((xs - 60 + 2 * index) / 20) ** 2 <= 1] = 6
        labels[10:26, left:left + 8] = 31
        layouts.append(labels)
    return layouts


def textured_photo(labels: np.ndarray, index: int) -> np.ndarray:
    """Stripes per class on a noisy grey background (not white: training must blank it itself)."""
    rng = np.random.default_rng(index)
    pixels = rng.integers(90, 140, (*labels.shape, 3)).astype(np.uint8)
    ys, xs = np.mgrid[0:labels.shape[0], 0:labels.shape[1]]
    colours = {0: (200, 40, 40), 6: (30, 60, 180), 31: (240, 200, 30)}
    for class_id, colour in colours.items():
        stripes = ((xs + ys * (class_id % 3)) // 3) % 2 == 0
        pixels[(labels == class_id) & stripes] = colour
        pixels[(labels == class_id) & ~stripes] = np.asarray(colour) // 2
    return pixels


def encode_rle(mask: np.ndarray) -> str:
    """FGVC6 RLE: 1-based starts, column-major (the competition's files), as "start length ..." pairs."""
    flat = np.concatenate([[0], mask.T.reshape(-1).astype(np.int8), [0]])
    changes = np.nonzero(np.diff(flat))[0] + 1
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends, strict=True))


def write_rle_dataset(folder, count: int = 5, *, attribute_suffix: bool = True):
    """images/<id>.jpg-less ids + train.csv with one row per class mask (the garment mask covers its parts, as in
    FGVC6); ClassId with FGVC6's attribute suffix on some rows."""
    (folder / "images").mkdir(parents=True)
    layouts = synthetic_layouts(count)
    with open(folder / "train.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "EncodedPixels", "Height", "Width", "ClassId"])
        for index, labels in enumerate(layouts):
            Image.fromarray(textured_photo(labels, index)).save(folder / "images" / f"photo{index}.png")
            garment = (labels == 0) | (labels == 31)
            for class_id, mask in ((31, labels == 31), (6, labels == 6), (0, garment)):
                suffix = "_115_136" if attribute_suffix and class_id == 0 else ""
                writer.writerow([f"photo{index}.png", encode_rle(mask), PHOTO[1], PHOTO[0], f"{class_id}{suffix}"])
    return folder


def write_png_dataset(folder, count: int = 5):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index, labels in enumerate(synthetic_layouts(count)):
        Image.fromarray(textured_photo(labels, index)).save(folder / "images" / f"photo{index}.png")
        Image.fromarray(labels.astype(np.uint8), "L").save(folder / "masks" / f"photo{index}.png")
    return folder


def write_tiny_vgg(path, widths=TINY_VGG_WIDTHS, *, seed: int = 0):
    """A random VGG19 feature stack in torchvision's key layout (plus a classifier key, as timm's file has)."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors, fin = {}, 3
    for index, fout in zip(conv_indices(), widths, strict=True):
        tensors[f"features.{index}.weight"] = torch.randn(fout, fin, 3, 3, generator=generator) * (2 / (9 * fin)) ** 0.5
        tensors[f"features.{index}.bias"] = torch.zeros(fout)
        fin = fout
    tensors["pre_logits.fc1.weight"] = torch.zeros(2, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


# ---------------------------------------------------------------------------------------------- running the job


@pytest.fixture
def ctx(tmp_path):
    from easyphoto import weights
    from easyphoto.context import standalone_context

    context = standalone_context(tmp_path / "root", offline=True)
    write_tiny_vgg(weights.get(VGG_ID).path(context.paths))
    return context


@pytest.fixture
def queue(ctx):
    queue = JobQueue(ctx.paths.jobs_dir)
    queue.register("design_train", lambda p, job: design_train_operation(ctx, p, job),
                   params=lambda p: DesignTrainParams.checked(p, "design_train"), gpu=True)
    yield queue
    queue.shutdown()


def train(queue, dataset, name: str, *, wait: bool = True, resume: bool = False, **config):
    body = {"model_name": name, "dataset": str(dataset), "resume": resume, "device": "cpu",
            "config": {**TINY, **config}}
    record = queue.submit("design_train", body)
    return queue.wait(record.id, timeout=900) if wait else record


def final_state(ctx, name: str) -> dict:
    folder = model_folder(ctx, name) / "checkpoints"
    return load_tensors(folder / f"step_{checkpoint_steps(folder)[-1]:05d}.safetensors")


def assert_same_tensors(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert different == []


# ---------------------------------------------------------------------------------------------- tests


def test_rle_and_png_datasets_cache_the_same_letterboxed_layouts(tmp_path):
    rle = scan_dataset(write_rle_dataset(tmp_path / "rle"))
    png = scan_dataset(write_png_dataset(tmp_path / "png"))
    assert (rle.kind, png.kind) == ("rle", "png") and len(rle.entries) == len(png.entries) == 5
    from_rle = build_cache(tmp_path / "cache-rle", rle, SIZE)
    from_png = build_cache(tmp_path / "cache-png", png, SIZE)
    assert from_rle.labels.dtype == np.uint8 and from_rle.labels.shape == (5, SIZE, SIZE)
    assert np.array_equal(from_rle.labels, from_png.labels) and np.array_equal(from_rle.images, from_png.images)
    # 96×72 → 64×48, centred: 8 rows of padding above and below, white and background
    assert (from_rle.labels[:, :8] == BACKGROUND).all() and (from_rle.labels[:, -8:] == BACKGROUND).all()
    assert (from_rle.images[:, :8] == 255).all()
    first = from_rle.labels[0]
    assert first[8 + round(8 * 2 / 3), round(20 * 2 / 3)] == 0  # shirt at photo (x=20, y=8)
    assert first[8 + round(15 * 2 / 3), round(10 * 2 / 3)] == 31  # the sleeve lies on the shirt
    assert first[8 + round(52 * 2 / 3), round(60 * 2 / 3)] == 6  # pants
    assert set(np.unique(from_rle.labels)) <= {0, 6, 31, BACKGROUND}


def test_the_cache_is_reused_until_the_dataset_changes(tmp_path):
    index = scan_dataset(write_png_dataset(tmp_path / "set", count=3))
    build_cache(tmp_path / "cache", index, SIZE)
    written = (tmp_path / "cache" / "images.npy").stat().st_mtime_ns
    assert build_cache(tmp_path / "cache", index, SIZE) is not None
    assert (tmp_path / "cache" / "images.npy").stat().st_mtime_ns == written  # not rebuilt
    assert load_cache(tmp_path / "cache", index, 128) is None  # another size: another cache
    time.sleep(0.01)
    photo = tmp_path / "set" / "images" / "photo1.png"
    Image.fromarray(np.zeros((PHOTO[1], PHOTO[0], 3), np.uint8)).save(photo)
    assert load_cache(tmp_path / "cache", scan_dataset(tmp_path / "set"), SIZE) is None  # a replaced photo


def test_training_logs_every_loss_term_finite_and_writes_samples_and_checkpoints(ctx, queue, tmp_path):
    dataset = write_rle_dataset(tmp_path / "set")
    record = train(queue, dataset, "shirts", steps=24, sample_every=12, checkpoint_every=10)
    assert record.state is JobState.SUCCEEDED, record.error
    assert record.result["step"] == 24 and record.result["photos"] == 5
    assert record.progress.step == 24 and record.progress.resumable_step == 24
    losses = read_losses(ctx, "shirts")
    assert [r["step"] for r in losses] == list(range(1, 25))
    for row in losses:
        assert set(LOSS_TERMS) <= row.keys() and all(math.isfinite(row[k]) for k in LOSS_TERMS)
    assert any(row["g_vgg"] > 0 and row["g_style"] > 0 and row["g_feat"] > 0 and row["g_kld"] > 0 for row in losses)

    def mean(term, rows):
        return sum(r[term] for r in rows) / len(rows)

    # it learns: D tells the layout's flat colours from photos, and G's output comes closer to the photos
    assert mean("d_layout", losses[-6:]) < 0.7 * mean("d_layout", losses[:6])
    assert mean("g_vgg", losses[-6:]) < mean("g_vgg", losses[:6])
    folder = model_folder(ctx, "shirts")
    assert sorted(p.name for p in (folder / "samples").iterdir()) == ["step_00012.png", "step_00024.png"]
    grid = Image.open(folder / "samples" / "step_00024.png")
    assert grid.size == (3 * SIZE, 4 * SIZE)  # layout | generated | real, four rows
    assert sorted(record.result["images"]) == ["step_00012.png", "step_00024.png"]
    assert checkpoint_steps(folder / "checkpoints") == [10, 20, 24]
    state = final_state(ctx, "shirts")
    assert any(k.startswith("opt_g.") and k.endswith("exp_avg") for k in state)
    assert any(k.startswith("opt_d.") for k in state) and any(k.startswith("encoder.") for k in state)
    assert json.loads((folder / "checkpoints" / "step_00024.json").read_text())["seed"] == TINY["seed"]
    assert [m["name"] for m in list_design_models(ctx)] == ["shirts"]
    assert list_design_models(ctx)[0]["state"] == "done" and list_design_models(ctx)[0]["trained"]


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(ctx, queue, tmp_path):
    dataset = write_png_dataset(tmp_path / "set", count=3)
    straight = train(queue, dataset, "straight", steps=6, checkpoint_every=3)
    first = train(queue, dataset, "resumed", steps=3, checkpoint_every=3)
    resumed = train(queue, dataset, "resumed", steps=6, checkpoint_every=3, resume=True)
    assert {straight.state, first.state, resumed.state} == {JobState.SUCCEEDED}
    assert_same_tensors(final_state(ctx, "straight"), final_state(ctx, "resumed"))
    assert read_losses(ctx, "straight") == read_losses(ctx, "resumed")


def test_a_cancel_keeps_a_resumable_checkpoint_and_resume_continues_exactly(ctx, queue, tmp_path):
    dataset = write_png_dataset(tmp_path / "set", count=3)
    record = train(queue, dataset, "cancelled", wait=False, steps=10_000, checkpoint_every=1000)
    while (queue.get(record.id).progress.step or 0) < 2 or queue.get(record.id).progress.phase != "training":
        assert not queue.get(record.id).is_final, queue.get(record.id).error
        time.sleep(0.01)
    queue.cancel(record.id)
    stopped = queue.wait(record.id, timeout=600)
    assert stopped.state is JobState.CANCELLED
    step = stopped.progress.resumable_step
    assert step is not None and step >= 2
    assert checkpoint_steps(model_folder(ctx, "cancelled") / "checkpoints") == [step]
    assert [m["state"] for m in list_design_models(ctx)] == ["cancelled"]
    resumed = train(queue, dataset, "cancelled", steps=step + 2, checkpoint_every=1000, resume=True)
    straight = train(queue, dataset, "straight", steps=step + 2, checkpoint_every=1000)
    assert resumed.state is JobState.SUCCEEDED and straight.state is JobState.SUCCEEDED
    assert_same_tensors(final_state(ctx, "cancelled"), final_state(ctx, "straight"))


def test_generation_is_white_outside_the_layout_and_follows_the_seed(ctx, queue, tmp_path):
    dataset = write_png_dataset(tmp_path / "set", count=3)
    assert train(queue, dataset, "gen", steps=2).state is JobState.SUCCEEDED
    cache = build_cache(model_folder(ctx, "gen") / "cache", scan_dataset(dataset), SIZE)
    labels = np.asarray(cache.labels[1])
    image = generate_from_layout(ctx, "gen", labels, seed=5)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and image.size == (SIZE, SIZE)
    outside = layout_mask(labels) == 0
    assert (pixels[outside] == 255).all()
    assert (pixels[~outside] != 255).any()  # something is drawn inside
    assert np.array_equal(np.asarray(generate_from_layout(ctx, "gen", labels, seed=5)), pixels)
    assert not np.array_equal(np.asarray(generate_from_layout(ctx, "gen", labels, seed=6)), pixels)
    with pytest.raises(DesignModelNotFound, match="no design model 'nothing'"):
        generate_from_layout(ctx, "nothing", labels, seed=5)
    unload()
    (model_folder(ctx, "gen") / "generator.safetensors").write_bytes(b"damaged")
    with pytest.raises(DesignModelDamaged, match="does not hold this model's generator"):
        generate_from_layout(ctx, "gen", labels, seed=5)


def test_a_layout_of_another_size_than_the_trained_one_is_refused(ctx, queue, tmp_path):
    dataset = write_png_dataset(tmp_path / "set", count=2)
    assert train(queue, dataset, "gen", steps=1).state is JobState.SUCCEEDED
    wrong = np.full((96, 96), BACKGROUND, np.uint8)
    wrong[20:60, 20:60] = 4
    with pytest.raises(LayoutError, match="96×96.*needs 64×64"):
        generate_from_layout(ctx, "gen", wrong, seed=1)
    bad = np.full((SIZE, SIZE), BACKGROUND, np.int32)
    bad[10:20, 10:20] = NUM_CLASSES + 3
    with pytest.raises(LayoutError, match="outside 0–45"):
        generate_from_layout(ctx, "gen", bad, seed=1)


def test_dataset_photos_without_layouts_and_layouts_without_photos_are_named(tmp_path):
    rle = write_rle_dataset(tmp_path / "rle", count=3)
    (rle / "images" / "photo1.png").unlink()
    with pytest.raises(DesignDatasetError, match="1 image.*not in images/: photo1.png"):
        scan_dataset(rle)
    png = write_png_dataset(tmp_path / "png", count=3)
    (png / "masks" / "photo2.png").unlink()
    with pytest.raises(DesignDatasetError, match="no mask in masks/: photo2.png"):
        scan_dataset(png)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(rle / "images" / "stray.png")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(rle / "images" / "photo1.png")
    with pytest.raises(DesignDatasetError, match="no mask in train.csv: stray.png"):
        scan_dataset(rle)
    with pytest.raises(DesignDatasetError, match="no images/ folder"):
        scan_dataset(tmp_path)


def test_labels_outside_the_46_classes_are_layout_errors(tmp_path):
    png = write_png_dataset(tmp_path / "png", count=2)
    labels = np.asarray(Image.open(png / "masks" / "photo0.png")).copy()
    labels[0, 0] = 60  # one stray pixel: a resize alone could drop it
    Image.fromarray(labels, "L").save(png / "masks" / "photo0.png")
    with pytest.raises(LayoutError, match=r"photo0.png: 1 layout pixels .*values \[60\]; first at x=0, y=0"):
        build_cache(tmp_path / "cache", scan_dataset(png), SIZE)
    rle = write_rle_dataset(tmp_path / "rle", count=1)
    text = (rle / "train.csv").read_text().replace(",31\n", ",46\n", 1)
    (rle / "train.csv").write_text(text)
    with pytest.raises(LayoutError, match="line 2: ClassId 46 is outside 0–45"):
        scan_dataset(rle)


def test_without_the_vgg_file_training_says_which_file_and_where(ctx, queue, tmp_path):
    from easyphoto import weights

    weights.get(VGG_ID).path(ctx.paths).unlink()
    record = train(queue, write_png_dataset(tmp_path / "set", count=2), "novgg", steps=1)
    assert record.state is JobState.FAILED and record.error["error"] == MissingWeights.__name__
    assert "design/vgg19/model.safetensors" in record.error["message"]
    assert "timm/vgg19.tv_in1k" in record.error["message"]
    assert not model_folder(ctx, "novgg").exists()  # nothing written before the check


def test_vgg_loader_reads_torchvision_keys_and_names_a_wrong_layout(tmp_path):
    vgg = load_vgg19(write_tiny_vgg(tmp_path / "vgg.safetensors"))
    taps = vgg(torch.zeros(1, 3, 32, 32))
    assert [t.shape[1] for t in taps] == [4, 8, 8, 8, 8] and taps[-1].shape[-1] == 2
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "vgg.safetensors"))
    tensors["features.5.weight"] = torch.zeros(8, 7, 3, 3)
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(VGGWeightsError, match=r"features.5 has shape \(8, 7, 3, 3\).*\(out, 4, 3, 3\)"):
        load_vgg19(tmp_path / "bad.safetensors")
    del tensors["features.28.bias"]
    save_file(tensors, str(tmp_path / "short.safetensors"))
    with pytest.raises(VGGWeightsError, match="no tensor 'features.28.bias'"):
        load_vgg19(tmp_path / "short.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(VGGWeightsError, match="not a readable safetensors file"):
        load_vgg19(tmp_path / "junk.safetensors")


def test_existing_models_are_neither_overwritten_nor_resumed_with_other_settings(ctx, queue, tmp_path):
    from easyphoto.design.smis.run import check_request

    dataset = write_png_dataset(tmp_path / "set", count=2)
    assert train(queue, dataset, "kept", steps=2).state is JobState.SUCCEEDED

    def params(**fields):
        return DesignTrainParams.checked({"model_name": "kept", "dataset": str(dataset), **fields})

    with pytest.raises(Conflict, match="'kept' exists"):
        check_request(ctx, params(config={**TINY, "steps": 2}))
    with pytest.raises(InvalidRequest, match="differ from the model's: width"):
        check_request(ctx, params(resume=True, config={**TINY, "width": 8}))
    with pytest.raises(InvalidRequest, match="exclude each other"):
        check_request(ctx, params(resume=True, overwrite=True))
    assert check_request(ctx, params(resume=True)).width == TINY["width"]  # the model's own settings
    with pytest.raises(InvalidRequest, match="at step 2 already"):
        check_request(ctx, params(resume=True, config={**TINY, "steps": 1}))
    with pytest.raises(Conflict, match="no checkpoint to resume"):
        check_request(ctx, params(model_name="other", resume=True))
    record = train(queue, dataset, "Bad Name", steps=1)
    assert record.state is JobState.FAILED and record.error["error"] == "InvalidDesignName"


def test_feature_matching_counts_only_the_garment_mask_and_hinge_losses_have_their_margins():
    from easyphoto.design.smis.losses import d_hinge, g_hinge, masked_feature_matching

    real = [[torch.ones(1, 2, 8, 8), torch.full((1, 1, 4, 4), 2.0)]]
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1  # the garment: the top half
    outside = real[0][0].clone()
    outside[..., 4:, :] += 5  # differs only below the garment
    assert float(masked_feature_matching([[outside, real[0][1]]], real, mask)) == 0.0
    inside = real[0][0].clone()
    inside[..., :4, :] += 0.5
    assert float(masked_feature_matching([[inside, real[0][1]]], real, mask)) == pytest.approx(0.5)
    assert float(d_hinge(real, real=True)) == 0.0 and float(d_hinge(real, real=False)) == 3.0
    assert float(g_hinge(real)) == -2.0


def test_config_checks_the_latent_size():
    with pytest.raises(ValueError, match="multiple of 2\\^levels"):
        DesignTrainConfig(image_size=96, levels=6)
    assert DesignTrainConfig().latent_size == 8  # SPADE's 8×8 at 256 with five levels
    specs = {spec.name: spec for spec in DesignTrainConfig.field_specs()}
    assert all(spec.group for spec in specs.values()) and specs["lr_d"].default == 4e-4 and specs["width"].advanced
    params = DesignTrainParams.checked({"model_name": "a", "dataset": "/d", "config": DesignTrainConfig(width=8).to_dict()})
    assert params.config.width == 8 and DesignTrainParams.checked(params.to_dict()) == params  # what a record holds
    with pytest.raises(InvalidRequest, match="config.lr_g"):
        DesignTrainParams.checked({"model_name": "a", "dataset": "/d", "config": {"lr_g": float("nan")}})
