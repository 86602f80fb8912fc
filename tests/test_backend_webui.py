"""WebUIGenerator against the host double (tests/host) in both flavours: A1111 + Mikubill ControlNet, and Forge with
its built-in lib_controlnet. What the host receives (processing fields, script args, ControlNet units), what is
refused before anything runs, interrupts, the queue lock, and the "Send to" paste buttons.

One host per flavour serves the whole module (tests are grouped by flavour); the tests without ControlNet start
their own host, and the module host is started again afterwards.
"""

import inspect
import threading

import numpy as np
import pytest
from PIL import Image

from easyphoto.backends import webui
from easyphoto.backends.webui.controlnet import controlnet_script
from easyphoto.generation import (
    CONTROLNET_MODELS,
    Control,
    GenerationError,
    GenerationInterrupted,
    Generator,
    InpaintRequest,
    LoraRef,
    Txt2ImgRequest,
)
from easyphoto.jobs import JobQueue, JobState
from easyphoto_webui.paste import paste_buttons
from tests.host.harness import WebUIHost

W, H = 96, 64  # not square: a swapped width/height shows
BIG = b"\0" * 0x100000  # the legacy model hash reads from offset 1 MiB: bytes after it give a distinct hash
MODEL_FILES = {
    "control_v11p_sd15_canny.pth": BIG + b"canny",
    "control_v11p_sd15_openpose.pth": BIG + b"openpose",
    # not the exact stem: Mikubill finds it (shortest stem containing the name), Forge does not (exact name only)
    "control_v11f1e_sd15_tile_fp16.safetensors": BIG + b"tile",
    # control_sd15_random_color ("color") is missing on purpose
}
MODES = {"balanced": "Balanced", "prompt": "My prompt is more important", "control": "ControlNet is more important"}


@pytest.fixture(scope="module", params=["a1111", "forge"])
def flavour(request):
    return request.param


@pytest.fixture(scope="module")
def module_host(flavour, tmp_path_factory):
    host = WebUIHost(tmp_path_factory.mktemp(f"backend-{flavour}"), flavour=flavour)
    models = host.root / "models" / "ControlNet"
    models.mkdir(parents=True)
    for name, data in MODEL_FILES.items():
        (models / name).write_bytes(data)
    yield host
    host.stop()


@pytest.fixture
def host(module_host):
    module_host.start()  # again, if a test's own host replaced it
    from modules import shared

    module_host.calls.clear()
    module_host.errors.clear()
    shared.state.interrupted = False
    yield module_host


def model_name(host, filename):
    from modules import sd_models

    path = host.root / "models" / "ControlNet" / filename
    return f"{path.stem} [{sd_models.model_hash(str(path))}]"


def picture(size=(W, H), colour=(120, 90, 60)):
    return Image.new("RGB", size, colour)


def face_mask(size=(W, H)):
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    return mask


def inpaint_request(controls=(), **kw):
    values = {"prompt": "a photo of sks person", "negative_prompt": "blurry", "image": picture(), "mask": face_mask(),
              "steps": 20, "denoising_strength": 0.5, "seed": 1234, "label": "pass 1", "controls": list(controls)}
    return InpaintRequest(**{**values, **kw})


def control(kind, mode="balanced", size=(W, H), **kw):
    return Control(kind, picture(size, (10, 200, 30)), mode=mode, **kw)


def cn_slice(runner, args):
    script = controlnet_script(runner)
    return args[script.args_from:script.args_to]


def value(enum_or_str):
    return getattr(enum_or_str, "value", enum_or_str)


# -------------------------------------------------------------------------------------------------- capabilities
def test_capabilities_report_the_hosts_models_and_units(host, flavour):
    gen = webui.make_context().make_generator({"base": "ignored"})  # what a portrait job gets inside the WebUI
    caps = gen.capabilities()
    assert isinstance(gen, Generator) and gen.name == caps.backend == f"webui-{flavour}"
    assert caps.controls["canny"] == model_name(host, "control_v11p_sd15_canny.pth")
    assert caps.controls["openpose"] == model_name(host, "control_v11p_sd15_openpose.pth")
    if flavour == "a1111":
        assert caps.controls["tile"] == model_name(host, "control_v11f1e_sd15_tile_fp16.safetensors")
        assert set(caps.missing) == {"color", "depth", "seg"}  # the double has no depth or seg model
    else:
        assert set(caps.missing) == {"color", "depth", "seg", "tile"}  # Forge takes only the exact "name [hash]"
    assert "control_sd15_random_color" in caps.missing["color"]
    assert str(host.root / "models" / "ControlNet") in caps.missing["color"]
    assert caps.max_controls == 3 and caps.samplers[:2] == ("DPM++ 2M", "DPM++ SDE")


# -------------------------------------------------------------------------------------------------- call shape
def test_inpaint_gives_the_host_exact_fields_and_units(host, flavour, monkeypatch):
    from modules import processing, scripts, sd_models, shared

    if "other.safetensors" not in {c.name for c in sd_models.checkpoints_list.values()}:
        host.add_checkpoint("other.safetensors")
    chosen = sd_models.get_closet_checkpoint_match("other.safetensors")
    chosen.calculate_shorthash()  # the title a load gives it, as the user's dropdown shows it
    monkeypatch.setitem(shared.opts.data, "sd_model_checkpoint", chosen.title)  # the user's selection
    runner = scripts.scripts_img2img
    slots_before = [(s.args_from, s.args_to) for s in runner.scripts]
    inside_main_thread = []
    if flavour == "forge":
        from modules_forge import main_thread

        original = main_thread.run_and_wait_result

        def spy(func, *args, **kwargs):
            before = len(processing.calls)
            result = original(func, *args, **kwargs)
            inside_main_thread.append(len(processing.calls) - before)
            return result

        monkeypatch.setattr(main_thread, "run_and_wait_result", spy)
    req = inpaint_request([control("canny", "prompt", weight=0.9, start=0.1, end=0.8), control("openpose", "control")],
                          loras=[LoraRef("alice", 0.8)], cfg_scale=6.5, sampler="DPM++ 2M", scheduler="Karras")
    gen = webui.WebUIGenerator()
    [out] = gen.inpaint(req)

    assert out.size == (W, H)
    [call] = host.calls
    f = call.fields
    assert call.kind == "img2img" and f["init_images"] == [req.image] and f["image_mask"] is req.mask
    assert (f["mask_blur_x"], f["mask_blur_y"], f["inpainting_fill"], f["inpaint_full_res"]) == (8, 8, 1, False)
    assert (f["denoising_strength"], f["sampler_name"], f["scheduler"], f["steps"], f["cfg_scale"]) == (
        0.5, "DPM++ 2M", "Karras", 20, 6.5)
    assert (f["width"], f["height"], f["seed"], f["batch_size"], f["n_iter"]) == (W, H, 1234, 1, 1)
    assert f["prompt"] == "a photo of sks person <lora:alice:0.8>" and f["negative_prompt"] == "blurry"
    assert call.loras == [("alice", "0.8")]
    assert f["do_not_save_samples"] is True and f["do_not_save_grid"] is True
    assert f["outpath_samples"] == shared.opts.outdir_img2img_samples
    assert f["outpath_grids"] == shared.opts.outdir_img2img_grids
    assert call.override_settings == {} and f["override_settings"] == {}
    assert shared.opts.sd_model_checkpoint == chosen.title and call.checkpoint == chosen.title  # the user's, unchanged

    # script args: the runner's defaults, ControlNet's slots holding our units, nothing shifted
    assert f["scripts_value"] is runner and call.script_args[0] == 0
    assert len(call.script_args) == len(runner.inputs)
    units = cn_slice(runner, call.script_args)
    script = controlnet_script(runner)
    defaults = [c.value for c in runner.inputs[1:]]
    assert call.script_args[1:script.args_from] + call.script_args[script.args_to:] == \
        defaults[:script.args_from - 1] + defaults[script.args_to - 1:]
    assert len(units) == 3 and [u.enabled for u in units] == [True, True, False]
    assert [(s.args_from, s.args_to) for s in runner.scripts] == slots_before
    names = [model_name(host, "control_v11p_sd15_canny.pth"), model_name(host, "control_v11p_sd15_openpose.pth")]
    for unit, name, c in zip(units, names, req.controls, strict=False):
        assert unit.model == name and unit.module == ("None" if flavour == "forge" else "none")
        assert isinstance(unit.image, np.ndarray) and unit.image.dtype == np.uint8 and unit.image.shape == (H, W, 3)
        assert (unit.weight, unit.guidance_start, unit.guidance_end) == (c.weight, c.start, c.end)
        assert value(unit.control_mode) == MODES[c.mode] and value(unit.resize_mode) == "Just Resize"
        assert (unit.processor_res, unit.pixel_perfect, unit.save_detected_map) == (512, False, False)
        if flavour == "forge":  # a dataclass without validation: what we pass is what the host reads
            assert isinstance(unit.control_mode, str) and isinstance(unit.resize_mode, str)
    # the host's ControlNet really used them (it records each enabled unit) and nothing was swallowed
    p = call.p
    assert f"Model: {names[0]}" in p.extra_generation_params["ControlNet 0"]
    assert f"Model: {names[1]}" in p.extra_generation_params["ControlNet 1"]
    assert host.errors == []
    assert len(call.processed.images) == 1 and getattr(call.processed, "extra_images", []) == []  # no detect maps
    assert p.sampler is None and p.c is None  # closed
    # the host runs int(20 × 0.5) + 1 steps of DPM++ 2M: 11 UNet evaluations, each with both ControlNets
    assert [(r.steps, r.evaluations) for r in call.sampler_runs] == [(11, 11)]
    assert gen.counter.unet == {"pass 1": 11} and gen.counter.controlnet == {"pass 1": 22}
    assert inside_main_thread == ([1] if flavour == "forge" else [])


def test_txt2img_uses_the_txt2img_runner(host, flavour):
    from modules import scripts, shared

    req = Txt2ImgRequest(prompt="portrait", width=64, height=48, steps=7, scheduler=None, label="pass 2",
                         controls=[control("canny", size=(64, 48))])
    gen = webui.WebUIGenerator()
    [out] = gen.txt2img(req)
    [call] = host.calls
    assert out.size == (64, 48) and call.kind == "txt2img" and call.fields["scripts_value"] is scripts.scripts_txt2img
    assert call.fields["scheduler"] is None and call.fields["prompt"] == "portrait"
    assert call.fields["outpath_samples"] == shared.opts.outdir_txt2img_samples
    assert [u.enabled for u in cn_slice(scripts.scripts_txt2img, call.script_args)] == [True, False, False]
    assert gen.counter.totals() == {"unet": 7, "controlnet": 7} and host.errors == []


@pytest.mark.parametrize(("sampler", "steps", "strength"), [
    ("DPM++ 2M SDE", 50, 0.45), ("Euler a", 20, 0.3), ("Heun", 10, 0.5), ("DPM++ SDE", 7, 0.6), ("DDIM", 20, 0.5),
    ("DPM2 a", 9, 1.0), ("DPM++ 2M Karras", 12, 0.25)])
def test_counted_evaluations_and_progress_are_what_the_hosts_sampler_ran(host, monkeypatch, sampler, steps,
                                                                         strength):
    from modules import processing, shared

    progress_totals = []
    real = processing.process_images

    def spy(p):
        progress_totals.append(shared.state.sampling_steps)  # what the progress bar shows before sampling starts
        return real(p)

    monkeypatch.setattr(processing, "process_images", spy)
    gen = webui.WebUIGenerator()
    gen.inpaint(inpaint_request(sampler=sampler, steps=steps, denoising_strength=strength))
    gen.txt2img(Txt2ImgRequest(prompt="x", width=64, height=48, steps=steps, sampler=sampler, label="t2i"))
    runs = [run for call in host.calls for run in call.sampler_runs]
    assert [r.steps for r in runs] == [int(steps * min(strength, 0.999)) + 1, steps]
    assert progress_totals == [r.steps for r in runs]
    assert gen.counter.unet == {"pass 1": runs[0].evaluations, "t2i": runs[1].evaluations}
    assert host.errors == []


def test_img2img_fix_steps_runs_exactly_the_steps(host, monkeypatch):
    from modules import shared

    monkeypatch.setitem(shared.opts.data, "img2img_fix_steps", True)  # Settings → img2img: "do exactly the steps"
    gen = webui.WebUIGenerator()
    gen.inpaint(inpaint_request(sampler="Heun", steps=6, denoising_strength=0.3))
    [run] = host.calls[0].sampler_runs
    assert run.steps == 6 and gen.counter.unet == {"pass 1": run.evaluations} == {"pass 1": 11}


def test_the_hosts_dpmpp_2m_sde_crashes_on_a_one_step_schedule(host):
    """Why the generator refuses such schedules: k-diffusion fails inside the WebUI, after the queue wait."""
    from modules import processing

    p = processing.StableDiffusionProcessingImg2Img(init_images=[picture()], prompt="x", width=W, height=H, steps=3,
                                                    denoising_strength=0.3, sampler_name="DPM++ 2M SDE")
    with pytest.raises(UnboundLocalError, match="'h'"):
        processing.process_images(p)


@pytest.mark.parametrize("request_kind", ["inpaint", "txt2img"])
def test_a_schedule_of_one_host_step_is_refused_before_anything_runs(host, request_kind):
    gen = webui.WebUIGenerator()
    with pytest.raises(GenerationError, match=r"would run 1 sampling step.*at least 2") as info:
        if request_kind == "inpaint":  # int(3 × 0.3) = 0: the host would run 0 + 1 steps
            gen.inpaint(inpaint_request(steps=3, denoising_strength=0.3, sampler="DPM++ 2M SDE"))
        else:
            gen.txt2img(Txt2ImgRequest(prompt="x", width=64, height=48, steps=1, sampler="DPM++ 2M SDE"))
    assert "steps" in str(info.value) and "steps" in info.value.hint
    assert host.calls == [] and gen.counter.totals() == {"unet": 0, "controlnet": 0}


def test_a_generation_error_is_not_chained_to_the_forge_probe(host, monkeypatch):
    """The WebUI's log must show the real error, not "No module named 'modules_forge' ... During handling ..."."""
    from modules import processing

    def boom(p):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(processing, "process_images", boom)
    with pytest.raises(RuntimeError, match="CUDA out of memory") as info:
        webui.WebUIGenerator().inpaint(inpaint_request())
    chain = []
    error = info.value
    while error is not None:
        chain.append(type(error))
        error = error.__context__ or error.__cause__
    assert ImportError not in chain and ModuleNotFoundError not in chain


def test_scripts_are_set_before_script_args(host, monkeypatch):
    from modules import processing

    order = []
    cls = processing.StableDiffusionProcessing
    for name in ("scripts", "script_args"):
        prop = getattr(cls, name)

        def setter(p, v, prop=prop, name=name):
            order.append(name)
            prop.fset(p, v)

        monkeypatch.setattr(cls, name, property(prop.fget, setter))
    webui.WebUIGenerator().inpaint(inpaint_request())
    assert order == ["scripts", "script_args"]


def test_mask_images_stay_out_and_the_option_is_restored(host, monkeypatch):
    from modules import shared

    monkeypatch.setitem(shared.opts.data, "return_mask", True)
    monkeypatch.setitem(shared.opts.data, "return_mask_composite", True)
    out = webui.WebUIGenerator().inpaint(inpaint_request())
    assert len(out) == 1 and len(host.calls[-1].processed.images) == 1
    assert shared.opts.data["return_mask"] is True and shared.opts.data["return_mask_composite"] is True


# -------------------------------------------------------------------------------------------------- refused early
def test_without_the_controlnet_extension_nothing_is_generated(webui_host_factory, flavour):
    host = webui_host_factory(flavour, controlnet=False)
    gen = webui.WebUIGenerator()
    with pytest.raises(GenerationError) as err:
        gen.inpaint(inpaint_request([control("canny")]))
    text = str(err.value)
    if flavour == "forge":
        assert "Forge's built-in ControlNet" in text and "disabled" in text and "Enable sd_forge_controlnet" in text
    else:
        assert "sd-webui-controlnet extension is not installed" in text and "Install sd-webui-controlnet" in text
    assert host.calls == []
    caps = gen.capabilities()
    assert caps.controls == {} and caps.max_controls == 0 and set(caps.missing) == set(CONTROLNET_MODELS)
    assert len(gen.inpaint(inpaint_request())) == 1  # without controls it still works


def test_a_missing_model_is_named_before_anything_runs(host, flavour):
    gen = webui.WebUIGenerator()
    controls = [control("canny"), control("color"), control("tile")]
    with pytest.raises(GenerationError) as err:
        gen.inpaint(inpaint_request(controls))
    text = str(err.value)
    assert "control_sd15_random_color.pth" in text and ("control_v11f1e_sd15_tile.pth" in text) == (flavour == "forge")
    assert str(host.root / "models" / "ControlNet") in text and "EasyPhoto → Models" in text
    assert "control_v11p_sd15_canny" not in text and host.calls == []
    added = [host.add_controlnet_model(n, BIG + n.encode()) for n in
             ("control_sd15_random_color.pth", "control_v11f1e_sd15_tile.pth")]
    try:  # a file downloaded while the WebUI runs is found at the next generation
        gen.inpaint(inpaint_request(controls))
        from modules import scripts

        units = [u for u in cn_slice(scripts.scripts_img2img, host.calls[-1].script_args) if u.enabled]
        assert units[1].model == model_name(host, "control_sd15_random_color.pth")
        assert units[2].model == model_name(host, "control_v11f1e_sd15_tile.pth") and host.errors == []
    finally:
        for path in added:
            path.unlink()


def test_more_controls_than_units_is_refused(host, monkeypatch):
    from modules import scripts, shared

    runner = scripts.scripts_img2img
    slots = [(s.args_from, s.args_to) for s in runner.scripts]
    monkeypatch.setitem(shared.opts.data, "control_net_unit_count", 4)  # raised, but the WebUI was not restarted
    with pytest.raises(GenerationError) as err:
        webui.WebUIGenerator().inpaint(inpaint_request([control("canny")] * 4))
    text = str(err.value)
    assert "needs 4 ControlNet units" in text and "runs with 3 (setting: 4)" in text
    assert "Multi-ControlNet: ControlNet unit number" in text and "Settings → ControlNet" in text and "restart" in text
    assert host.calls == [] and [(s.args_from, s.args_to) for s in runner.scripts] == slots


# -------------------------------------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("when", ["sampling", "before the first batch"])
def test_an_interrupt_mid_run_raises_and_releases_everything(host, monkeypatch, when):
    from modules import call_queue, processing, scripts, shared

    gen = webui.WebUIGenerator()
    if when == "sampling":  # the Interrupt button (or our job cancel) while sampling: the sample still comes back
        original = processing.StableDiffusionProcessingImg2Img.sample

        def sample(p, *args, **kwargs):
            gen.interrupt()
            return original(p, *args, **kwargs)

        monkeypatch.setattr(processing.StableDiffusionProcessingImg2Img, "sample", sample)
    else:  # set before the n_iter loop: zero images come back
        monkeypatch.setattr(scripts.ScriptRunner, "process", lambda self, p: shared.state.interrupt())
    with pytest.raises(GenerationInterrupted):
        gen.inpaint(inpaint_request([control("canny")]))
    assert len(host.calls[-1].processed.images) == (1 if when == "sampling" else 0)
    assert not call_queue.queue_lock.locked() and shared.state.job == "" and not shared.state.interrupted
    assert gen.counter.totals() == {"unet": 0, "controlnet": 0}
    monkeypatch.undo()
    assert len(gen.inpaint(inpaint_request())) == 1  # nothing stuck


def test_stale_interrupt_is_cleared_and_should_stop_is_polled(host):
    from modules import shared

    gen = webui.WebUIGenerator()
    shared.state.interrupted = True  # left over from somebody's run without state.begin()
    assert len(gen.inpaint(inpaint_request())) == 1
    gen.interrupt()  # idle: must not stop somebody else's generation
    assert not shared.state.interrupted
    with pytest.raises(GenerationInterrupted):
        gen.inpaint(inpaint_request(), should_stop=lambda: True)
    assert len(host.calls) == 1


def test_a_host_error_comes_back_and_releases_everything(host, monkeypatch):
    """Forge's run_and_wait_result prints a failure and returns None: the generator must still raise it."""
    from modules import call_queue, processing, shared

    def boom(p):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(processing, "process_images", boom)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        webui.WebUIGenerator().txt2img(Txt2ImgRequest(prompt="x", width=64, height=64))
    assert not call_queue.queue_lock.locked() and shared.state.job == ""


# -------------------------------------------------------------------------------------------------- queue lock
def test_generation_runs_under_the_queue_lock_and_state(host, monkeypatch, tmp_path):
    from modules import call_queue, processing, shared

    seen = []
    original = processing.StableDiffusionProcessingTxt2Img.sample

    def sample(p, *args, **kwargs):
        seen.append((call_queue.queue_lock.locked(), shared.state.job, shared.state.job_count,
                     shared.state.textinfo))
        return original(p, *args, **kwargs)

    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample", sample)
    gen = webui.WebUIGenerator()
    req = Txt2ImgRequest(prompt="x", width=64, height=64, label="pass 1")
    gen.txt2img(req)
    assert seen == [(True, "easyphoto", 1, "EasyPhoto pass 1")] and not call_queue.queue_lock.locked()

    # our job worker holds the lock for the whole job: the generator inside must not wait for itself
    # (the double's FIFOLock raises on a same-thread re-acquire where the real one would hang)
    with webui.host_queue_lock():
        gen.txt2img(req)
        assert call_queue.queue_lock.locked()
    assert not call_queue.queue_lock.locked()

    queue = JobQueue(tmp_path / "jobs", gpu_lock=webui.host_queue_lock)
    try:
        queue.register("gen", lambda params, ctx: {"n": len(gen.txt2img(req))})
        record = queue.wait(queue.submit("gen", {}).id, timeout=30)
        assert record.state is JobState.SUCCEEDED and record.result == {"n": 1}
    finally:
        queue.shutdown()
    assert not call_queue.queue_lock.locked() and len(seen) == 3


def test_another_threads_hold_makes_the_generation_wait(host):
    from modules import call_queue

    done = threading.Event()
    gen = webui.WebUIGenerator()
    with call_queue.queue_lock:  # e.g. the WebUI's own txt2img
        worker = threading.Thread(target=lambda: (gen.txt2img(Txt2ImgRequest(prompt="x", width=64, height=64)),
                                                  done.set()))
        worker.start()
        assert not done.wait(0.2) and host.calls == []
    worker.join(10)
    assert done.is_set() and len(host.calls) == 1


# -------------------------------------------------------------------------------------------------- paste buttons
def test_paste_buttons_register_the_hosts_bindings(host):
    import gradio as gr
    from modules import infotext_utils

    params = list(inspect.signature(infotext_utils.ParamBinding).parameters)
    assert params == ["paste_button", "tabname", "source_text_component", "source_image_component",
                      "source_tabname", "override_settings_component", "paste_field_names"]
    with gr.Blocks():
        image, info = gr.Image(), gr.Textbox()
        buttons = paste_buttons(image, info)
    assert list(buttons) == ["img2img", "inpaint"] and buttons["inpaint"].elem_id == "inpaint_tab"
    bindings = infotext_utils.registered_param_bindings
    assert [(b.tabname, b.paste_button) for b in bindings] == list(buttons.items())
    assert all(b.source_image_component is image and b.source_text_component is info for b in bindings)
