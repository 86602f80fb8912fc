"""Garment design from a semantic layout (issue 16): layouts and their checks, and route 1 (the segmentation
ControlNet) on the kit's tiny SD 1.5 with a tiny seg ControlNet (diffusers) and inside the WebUI double (the host's
ControlNet receives the colour-coded layout), plus the `design` job."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easyphoto.config import DesignConfig
from easyphoto.design import layout as L
from easyphoto.design.diffusion import DesignError, design_from_layout
from easyphoto.generation import CONTROLNET_MODELS
from tests.kit.tiny_sd import torch_threads

W, H = 96, 64


def two_classes(width=W, height=H) -> np.ndarray:
    labels = np.full((height, width), L.BACKGROUND, np.uint8)
    labels[8:56, 24:72] = 1  # a top
    labels[8:30, 8:24] = 31  # a sleeve
    return labels


def png(array: np.ndarray, mode=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- layouts


def test_label_and_palette_pngs_read_back_to_the_same_labels():
    labels = two_classes()
    assert np.array_equal(L.read_layout(png(labels)), labels)
    assert np.array_equal(L.read_layout(png(L.visualise(labels))), labels)
    assert len({tuple(c) for c in L.PALETTE}) == L.NUM_CLASSES == len(L.CLASSES) == 46
    assert L.CLASSES[0] == "shirt, blouse" and L.CLASSES[31] == "sleeve" and L.CLASSES[45] == "tassel"


def test_bad_layouts_are_refused_with_what_and_where():
    labels = two_classes()
    labels[5, 7] = 46
    with pytest.raises(L.LayoutError, match=r"outside 0–45 \(values \[46\]; first at x=7, y=5\)"):
        L.read_layout(png(labels))
    with pytest.raises(L.LayoutError, match="empty"):
        L.read_layout(png(np.full((H, W), L.BACKGROUND, np.uint8)))
    with pytest.raises(L.LayoutError, match="is 96×64, this route needs 64×64"):
        L.check_layout(two_classes(), size=(64, 64))
    colours = L.visualise(two_classes())
    colours[3, 4] = (1, 2, 3)
    with pytest.raises(L.LayoutError, match=r"not palette colours \(first at x=4, y=3"):
        L.read_layout(png(colours))
    with pytest.raises(L.LayoutError, match="not a readable image"):
        L.read_layout(b"not a png")
    with pytest.raises(L.LayoutError, match="sides must be"):
        L.check_layout(np.zeros((16, 16), np.uint8))


def test_fgvc6_run_length_masks_decode_column_major_and_bad_runs_are_named():
    mask = L.decode_rle("1 3 10 2", 4, 3)
    assert mask[:3, 0].all() and not mask[3, 0] and mask[1:3, 2].all() and mask.sum() == 5
    with pytest.raises(L.LayoutError, match="outside the 3×4 image"):
        L.decode_rle("11 5", 4, 3)
    with pytest.raises(L.LayoutError, match="odd number"):
        L.decode_rle("1 2 3", 4, 3)


# ---------------------------------------------------------------------------------------------- route 1, diffusers


@pytest.fixture(scope="module")
def seg_generator(tiny_sd_dir, tiny_controlnet_dirs, tmp_path_factory):
    from easyphoto.backends.diffusers import DiffusersGenerator

    folder = tmp_path_factory.mktemp("controlnet")
    (folder / CONTROLNET_MODELS["seg"]).symlink_to(Path(tiny_controlnet_dirs["seg"]).resolve(),
                                                    target_is_directory=True)
    generator = DiffusersGenerator(tiny_sd_dir, controlnet_dir=folder)
    yield generator
    generator.unload()


def test_the_seg_condition_reaches_the_controlnet_and_the_background_is_clean(seg_generator, monkeypatch):
    from diffusers import ControlNetModel

    seen = []
    real = ControlNetModel.forward

    def spy(self, sample, timestep, encoder_hidden_states, controlnet_cond, *args, **kwargs):
        seen.append(controlnet_cond.detach().float().cpu())
        return real(self, sample, timestep, encoder_hidden_states, controlnet_cond, *args, **kwargs)

    monkeypatch.setattr(ControlNetModel, "forward", spy)
    labels = two_classes()
    with torch_threads(1):
        result = design_from_layout(seg_generator, labels, DesignConfig(steps=2, prompt="red cotton"), seed=5)
    image = np.asarray(result.image)
    assert image.shape == (H, W, 3)
    assert (image[labels == L.BACKGROUND] == 255).all()  # outside the layout: white, exactly
    assert (image[labels != L.BACKGROUND] != 255).any()
    expected = L.seg_condition(labels).astype(np.float32) / 255.0
    cond = seen[0][0].permute(1, 2, 0).numpy()  # the first call's condition, (H, W, 3) in 0..1
    assert cond.shape == expected.shape and np.abs(cond - expected).max() < 1e-3
    assert seg_generator.counter.controlnet.get("design", 0) > 0
    assert "red cotton" in result.prompt
    assert 'EasyPhoto layout classes: "top, t-shirt, sweatshirt; sleeve"' in result.infotext  # largest area first


def test_route_1_without_the_seg_controlnet_is_refused_before_generating(tiny_sd_dir, tmp_path):
    from easyphoto.backends.diffusers import DiffusersGenerator

    generator = DiffusersGenerator(tiny_sd_dir, controlnet_dir=tmp_path)
    with pytest.raises(DesignError, match="control_v11p_sd15_seg"):
        design_from_layout(generator, two_classes(), DesignConfig(steps=2), seed=1)
    assert generator.counter.totals().get("unet", 0) == 0


# ---------------------------------------------------------------------------------------------- the job


def test_the_design_job_saves_pngs_of_the_layouts_size(tmp_path, tiny_sd_dir, tiny_controlnet_dirs):
    import shutil

    from easyphoto import operations
    from easyphoto.context import standalone_context

    ctx = standalone_context(tmp_path / "data", offline=True)
    shutil.copytree(tiny_controlnet_dirs["seg"], ctx.paths.controlnet_dir / CONTROLNET_MODELS["seg"])
    layout = tmp_path / "layout.png"
    layout.write_bytes(png(L.visualise(two_classes())))
    try:
        with torch_threads(1):
            job = operations.submit(ctx, "design", {"layout": str(layout), "base": str(tiny_sd_dir),
                                                    "config": {"steps": 2, "seed": 9, "batch_size": 2}})
            record = operations.job_queue(ctx).wait(job.id, timeout=600)
    finally:
        operations.shutdown_all()
    assert record.state.value == "succeeded", record.error
    assert record.result["seeds"] == [9, 10] and record.result["size"] == [W, H]
    for file in record.result["files"]:
        with Image.open(file) as image:
            assert image.size == (W, H) and "EasyPhoto design route" in image.info["parameters"]


def test_the_design_job_refuses_a_bad_layout_before_loading_anything(tmp_path):
    from easyphoto.context import standalone_context
    from easyphoto.design.run import check_request
    from easyphoto.job_params import DesignParams

    ctx = standalone_context(tmp_path / "data", offline=True)
    bad = two_classes()
    bad[0, 0] = 200
    layout = tmp_path / "bad.png"
    layout.write_bytes(png(bad))
    with pytest.raises(L.LayoutError, match="outside 0–45"):
        check_request(ctx, DesignParams(layout=str(layout)))
    with pytest.raises(Exception, match="does not exist"):
        check_request(ctx, DesignParams(layout=str(tmp_path / "absent.png")))


# ---------------------------------------------------------------------------------------------- route 1, WebUI


@pytest.fixture(scope="module", params=["a1111", "forge"])
def host(request, tmp_path_factory):
    from tests.host.harness import WebUIHost

    host = WebUIHost(tmp_path_factory.mktemp(f"design-{request.param}"), flavour=request.param)
    folder = host.root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    big = b"\0" * 0x100000  # the legacy model hash reads from offset 1 MiB: distinct bytes after it
    for stem in CONTROLNET_MODELS.values():
        (folder / f"{stem}.pth").write_bytes(big + stem.encode())
    host.start()
    yield host
    host.stop()


def test_inside_the_webui_the_hosts_controlnet_gets_the_colour_coded_layout(host, tmp_path):
    from modules import processing

    from easyphoto import operations
    from easyphoto.backends import webui
    from easyphoto.backends.webui.controlnet import controlnet_script

    ctx = webui.make_context()
    labels = two_classes()
    layout = tmp_path / "layout.png"
    layout.write_bytes(png(labels))
    host.calls.clear()
    try:
        job = operations.submit(ctx, "design", {"layout": str(layout), "config": {"steps": 4, "seed": 3}})
        record = operations.job_queue(ctx).wait(job.id, timeout=300)
    finally:
        operations.shutdown_all()
    assert record.state.value == "succeeded", record.error
    [call] = processing.calls
    assert call.kind == "txt2img" and (call.fields["width"], call.fields["height"]) == (W, H)
    script = controlnet_script(call.p.scripts)
    units = [u for u in call.script_args[script.args_from:script.args_to] if _get(u, "enabled")]
    [unit] = units
    assert _get(unit, "model").startswith("control_v11p_sd15_seg [") and _get(unit, "module") in ("none", "None")
    assert np.array_equal(_get(unit, "image"), L.seg_condition(labels))
    with Image.open(record.result["files"][0]) as image:
        out = np.asarray(image.convert("RGB"))
    assert (out[labels == L.BACKGROUND] == 255).all()


def _get(unit, name):
    return unit.get(name) if isinstance(unit, dict) else getattr(unit, name)
