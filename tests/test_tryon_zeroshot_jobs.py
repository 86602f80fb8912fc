"""The `tryon_any` job (issue 15) on tiny backends in their published layouts: inside the WebUI double (the host's
checkpoint offloaded and restored, its queue lock held, its Interrupt button stops the run) and standalone (the
digital model's outfit swap with a zero-shot backend keeps the kept garment pixel for pixel)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from easyphoto.backends import webui
from tests.host.harness import WebUIHost
from tests.kit.tiny_sd import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def install_backends(paths, tiny_tryon_models) -> None:
    """The tiny files where the manifest puts them (a copy: the job converts Leffa's pickle next to it)."""
    shutil.copytree(tiny_tryon_models / "tryon", paths.models_root / "tryon", dirs_exist_ok=True)


def write_inputs(folder, photo):
    """(garment photo, mask file) for `photo`: a red garment on white, and a box over the torso."""
    folder.mkdir(parents=True, exist_ok=True)
    garment = np.full((120, 90, 3), 255, np.uint8)
    garment[15:105, 15:75] = (190, 30, 40)
    Image.fromarray(garment).save(folder / "garment.png")
    width, height = Image.open(photo).size
    mask = np.zeros((height, width), np.uint8)
    mask[int(height * 0.6):int(height * 0.95), int(width * 0.25):int(width * 0.75)] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    return folder / "garment.png", folder / "mask.png"


def submit(ctx, photo, garment, mask, **config):
    from easyphoto import operations

    job = operations.submit(ctx, "tryon_any", {
        "person": str(photo), "garment_image": str(garment), "mask": str(mask),
        "config": {"backend": "leffa", "mask_source": "mask", "work_size": 64, "steps": 2, "seed": 5, **config}})
    return operations.job_queue(ctx).wait(job.id, timeout=600)


@pytest.fixture(scope="module", params=["a1111", "forge"])
def host(request, tmp_path_factory):
    host = WebUIHost(tmp_path_factory.mktemp(f"zeroshot-{request.param}"), flavour=request.param)
    host.start()
    yield host
    host.stop()


def test_inside_the_webui_the_host_model_is_offloaded_under_the_queue_lock_and_restored(
        host, tiny_tryon_models, photo_astronaut, tmp_path, monkeypatch):
    from modules import call_queue, devices, sd_models, shared

    from easyphoto import operations
    from easyphoto.backends.webui import host as webui_host

    ctx = webui.make_context()
    install_backends(ctx.paths, tiny_tryon_models)
    garment, mask = write_inputs(tmp_path, photo_astronaut)
    model = sd_models.model_data.sd_model
    seen = []
    real_progress = webui_host.HostJob.progress

    def watch(self, fraction, message):
        loaded = sd_models.model_data.sd_model
        seen.append((call_queue.queue_lock.locked(), shared.state.job, getattr(loaded, "device", None)))
        return real_progress(self, fraction, message)

    monkeypatch.setattr(webui_host.HostJob, "progress", watch)
    try:
        record = submit(ctx, photo_astronaut, garment, mask)
    finally:
        operations.shutdown_all()
    assert record.state.value == "succeeded", record.error
    assert seen and all(locked and job == "easyphoto-try-on (Leffa)" for locked, job, _ in seen)
    if host.flavour == "a1111":  # A1111 moves the model to the CPU and back; Forge unloads it and reloads later
        assert all(device == devices.cpu for _, _, device in seen)
        assert model.device == devices.device
    assert not call_queue.queue_lock.locked() and shared.state.job == ""
    saved = record.result["tryons"][0]
    with Image.open(saved["file"]) as image:
        meta = image.info
    assert "EasyPhoto try-on backend: leffa viton_hd" in meta["parameters"]
    assert '"commercial_use": true' in meta["easyphoto"] and saved["licence"]["licence"].startswith("MIT")


def test_the_webuis_interrupt_button_stops_the_try_on_between_steps(host, tiny_tryon_models, photo_astronaut,
                                                                   tmp_path, monkeypatch):
    from modules import call_queue, shared

    from easyphoto import operations
    from easyphoto.backends.webui import host as webui_host

    ctx = webui.make_context()
    install_backends(ctx.paths, tiny_tryon_models)
    garment, mask = write_inputs(tmp_path, photo_astronaut)
    real_progress = webui_host.HostJob.progress

    def press_interrupt(self, fraction, message):
        shared.state.interrupt()  # what the Interrupt button does
        return real_progress(self, fraction, message)

    monkeypatch.setattr(webui_host.HostJob, "progress", press_interrupt)
    before = set(ctx.paths.outputs_dir.rglob("*.png")) if ctx.paths.outputs_dir.exists() else set()
    try:
        record = submit(ctx, photo_astronaut, garment, mask, steps=4)
    finally:
        operations.shutdown_all()
    assert record.state.value == "cancelled" and "interrupted at step 1 of 4" in record.error["message"]
    after = set(ctx.paths.outputs_dir.rglob("*.png")) if ctx.paths.outputs_dir.exists() else set()
    assert after == before  # nothing saved
    assert not call_queue.queue_lock.locked() and not shared.state.interrupted and shared.state.job == ""


# ---------------------------------------------------------------------------------------------- standalone


def test_digital_model_outfit_swap_with_a_zero_shot_backend_keeps_the_kept_garment(
        tmp_path, tiny_tryon_models, tiny_segment, photo_astronaut):
    from easyphoto import operations
    from easyphoto.context import standalone_context
    from tests.kit.tiny_segment import install_tiny_segment

    ctx = standalone_context(tmp_path / "app", offline=True)
    install_tiny_segment(ctx.paths, tiny_segment)
    install_backends(ctx.paths, tiny_tryon_models)
    garment, _ = write_inputs(tmp_path / "in", photo_astronaut)
    width, height = Image.open(photo_astronaut).size
    kept = np.zeros((height, width), np.uint8)
    kept[int(height * 0.55):, :] = 255  # the kept garment: the lower part of the photo (drawn)
    Image.fromarray(kept).save(tmp_path / "kept.png")
    try:
        job = operations.submit(ctx, "digital_model", {
            "person": str(photo_astronaut), "outfit_image": str(garment), "mask": str(tmp_path / "kept.png"),
            "config": {"mode": "outfit", "outfit_backend": "leffa", "category": "lower", "outfit_category": "upper",
                       "mask_source": "mask", "seed": 3, "outfit_steps": 2, "outfit_work_size": 64}})
        record = operations.job_queue(ctx).wait(job.id, timeout=600)
    finally:
        operations.shutdown_all()
    if record.state.value == "failed" and "region" in record.error.get("message", ""):
        pytest.fail(f"the tiny parser found no upper region: {record.error}")
    assert record.state.value == "succeeded", record.error
    result = record.result
    assert result["mode"] == "outfit" and result["backend"] == "leffa" and result["kept_garment_pixels"] > 0
    with Image.open(result["tryons"][0]["file"]) as image:
        out = np.asarray(image.convert("RGB"))
    original = np.asarray(Image.open(photo_astronaut).convert("RGB"))
    assert np.array_equal(out[kept > 0], original[kept > 0])  # the kept garment, pixel for pixel
    assert result["results"][0]["garment_kept"]["score"] == pytest.approx(1.0)  # and the section says so


def test_a_zero_shot_outfit_swap_is_refused_without_a_garment_or_with_a_category_it_cannot_do(tmp_path):
    from easyphoto.errors import InvalidRequest
    from easyphoto.job_params import DigitalModelParams
    from easyphoto.tryon.zeroshot.outfit import check_outfit_request

    params = DigitalModelParams(person="p.png", config={"mode": "outfit", "outfit_backend": "leffa"})
    with pytest.raises(InvalidRequest, match="outfit_image"):
        check_outfit_request(params)
    hat = DigitalModelParams(person="p.png", outfit_image="g.png",
                             config={"mode": "outfit", "outfit_backend": "leffa", "outfit_category": "hat"})
    with pytest.raises(InvalidRequest, match="no outfit_category 'hat'"):
        check_outfit_request(hat)
