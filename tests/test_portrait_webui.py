"""A whole portrait job inside the WebUI double (both flavours): what the host's processing and ControlNet receive
per pass, and the user's settings left as they were. The job runs the real pipeline on a real photo; the host
double "samples" fake pixels inside the mask."""

import numpy as np
import pytest
from PIL import Image

from easyphoto.backends import webui
from easyphoto.backends.webui.controlnet import controlnet_script
from easyphoto.generation import CONTROLNET_MODELS
from tests.host.harness import WebUIHost
from tests.test_portrait import make_identity

BIG = b"\0" * 0x100000  # the legacy model hash reads from offset 1 MiB: distinct bytes after it, distinct hashes


@pytest.fixture(scope="module", params=["a1111", "forge"])
def host(request, tmp_path_factory):
    host = WebUIHost(tmp_path_factory.mktemp(f"portrait-{request.param}"), flavour=request.param)
    folder = host.root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    for stem in CONTROLNET_MODELS.values():
        (folder / f"{stem}.pth").write_bytes(BIG + stem.encode())
    host.start()
    yield host
    host.stop()


def run_portrait(ctx, template, config=None):
    from easyphoto import operations

    job = operations.submit(ctx, "portrait", {"identity_ids": ["barack"], "templates": [str(template)],
                                              "config": {"seed": 99, **(config or {})}})
    return operations.job_queue(ctx).wait(job.id, timeout=300)


def test_portrait_passes_reach_the_host_as_specified(host, photos_same_man, photo_astronaut, monkeypatch):
    from modules import processing, sd_models, shared

    from easyphoto import operations
    from easyphoto.face import stacks

    ctx = webui.make_context()
    make_identity(ctx.paths, "barack", photos_same_man[0], stacks.load("dlib", ctx.paths))
    if "other.safetensors" not in {c.name for c in sd_models.checkpoints_list.values()}:
        host.add_checkpoint("other.safetensors")
    checkpoint = sd_models.get_closet_checkpoint_match("other.safetensors").title
    monkeypatch.setitem(shared.opts.data, "sd_model_checkpoint", checkpoint)  # the user's selection
    host.calls.clear()
    try:
        record = run_portrait(ctx, photo_astronaut)
    finally:
        operations.shutdown_all()
    assert record.state.value == "succeeded", record.error
    # the user's selection stands (the host itself rewrites it to the title with the hash once the file is read)
    assert shared.opts.sd_model_checkpoint.startswith(checkpoint) and host.errors == []
    first, second = processing.calls
    # generated with the user's model (its title gains the hash once read), which stays selected
    assert first.checkpoint.startswith("other.safetensors") and second.checkpoint == first.checkpoint
    names = {kind: f"{stem} [{sd_models.model_hash(str(host.root / 'models' / 'ControlNet' / f'{stem}.pth'))}]"
             for kind, stem in CONTROLNET_MODELS.items()}
    expected = [(first, 50, 0.45, 99, ["canny", "openpose", "color"], [0.5, 0.5, 0.85]),
                (second, 20, 0.30, 99 + 7, ["canny", "tile"], [1.0, 1.0])]
    for call, steps, strength, seed, kinds, weights in expected:
        fields = call.fields  # p as process_images received it: after the host's processing scripts ran setup()
        assert call.kind == "img2img" and (fields["steps"], fields["denoising_strength"]) == (steps, strength)
        assert (fields["sampler_name"], fields["scheduler"], fields["seed"]) == ("DPM++ 2M SDE", "Karras", seed)
        assert (fields["refiner_checkpoint"], fields["cfg_scale"], fields["inpainting_fill"]) == (None, 7.0, 1)
        [run] = call.sampler_runs  # what the host's sampler ran: int(steps × strength) + 1 steps of it
        assert (run.sampler, run.steps, run.evaluations) == ("DPM++ 2M SDE", int(steps * strength) + 1,
                                                              int(steps * strength) + 1)
        assert fields["override_settings"] == {} and "<lora:barack:0.9>" in fields["prompt"]
        assert min(fields["width"], fields["height"]) == 512
        script = controlnet_script(call.p.scripts)
        units = [u for u in call.script_args[script.args_from:script.args_to] if _get(u, "enabled")]
        assert len(call.script_args[script.args_from:script.args_to]) <= 3
        assert [_get(u, "model") for u in units] == [names[k] for k in kinds]
        assert [_get(u, "weight") for u in units] == weights
        for unit in units:
            assert _get(unit, "module") in ("none", "None") and _get(unit, "save_detected_map") is False
            assert _value(_get(unit, "control_mode")) == "My prompt is more important"
            assert _value(_get(unit, "resize_mode")) == "Just Resize"
            assert isinstance(_get(unit, "image"), np.ndarray) and _get(unit, "image").dtype == np.uint8
    unet = sum(run.evaluations for call in processing.calls for run in call.sampler_runs)
    controlnet = sum(run.evaluations * 3 for run in first.sampler_runs) + \
        sum(run.evaluations * 2 for run in second.sampler_runs)
    assert record.result["evaluations"] == {"unet": unet, "controlnet": controlnet}
    [saved] = record.result["portraits"]
    with Image.open(saved["file"]) as image, Image.open(photo_astronaut) as template:
        assert image.size == template.size
        infotext = image.info["parameters"]
    from modules import infotext_utils

    parsed = infotext_utils.parse_generation_parameters(infotext)  # what PNG Info and "Send to" read
    assert (str(parsed["Steps"]), parsed["Sampler"], str(parsed["Seed"])) == ("50", "DPM++ 2M SDE", "99")
    face = saved["faces"][0]["index"]
    assert "<lora:barack:0.9>" in parsed["Prompt"] and parsed["EasyPhoto identities"] == f"{face}=barack"


def test_interrupt_button_mid_run_ends_the_job_cleanly(host, photo_astronaut, monkeypatch):
    from modules import processing, shared

    from easyphoto import operations

    ctx = webui.make_context()
    real = processing.process_images_inner

    def interrupted_in_pass_2(p):
        if len(processing.calls) == 2:
            shared.state.interrupt()  # what the WebUI's Interrupt button does
        return real(p)

    monkeypatch.setattr(processing, "process_images_inner", interrupted_in_pass_2)
    host.calls.clear()
    try:
        record = run_portrait(ctx, photo_astronaut, {"first_steps": 4, "second_steps": 4})
    finally:
        operations.shutdown_all()
    assert record.state.value == "cancelled" and "0 portrait(s) were saved" in record.error["message"]
    assert len(processing.calls) == 2 and not shared.state.interrupted
    from modules import call_queue

    assert not call_queue.queue_lock.locked()  # the job released the WebUI's queue lock


def _get(unit, name):
    return unit.get(name) if isinstance(unit, dict) else getattr(unit, name)


def _value(value):
    return getattr(value, "value", value)
