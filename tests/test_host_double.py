"""Behaviour of the WebUI host double itself (host-api.md 7.3): loading mechanics, callbacks, options,
process_images layout and failure modes, the ControlNet doubles (Mikubill and Forge) and install.py handling."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from tests.host import fixtures as host_fixtures
from tests.host.harness import CONTROLNET_A1111, WebUIHost

webui_host_factory = host_fixtures.webui_host_factory  # also available via pytest_plugins = ["tests.host.fixtures"]


def make_extension(tmp_path, name, files: dict[str, str]):
    """A throwaway extension folder with the given files (dedented)."""
    root = tmp_path / "src" / name
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf8")
    return root


PROBE = """
    import sys
    from modules import script_callbacks, scripts
    basedir_at_import = scripts.basedir()
    path0_at_import = sys.path[0]
    module_name = __name__
    unloaded = []

    def tabs():
        return []

    def boom():
        raise RuntimeError("callback failure")

    script_callbacks.on_ui_tabs(tabs)
    script_callbacks.on_ui_tabs(boom)
    script_callbacks.on_script_unloaded(lambda: unloaded.append(1))
"""


def loaded(name_suffix):
    from modules import script_loading

    return next(m for p, m in script_loading.loaded_scripts.items() if p.endswith(name_suffix))


def txt2img(**kw):
    from modules import processing, scripts

    defaults = {"prompt": "a photo", "width": 64, "height": 64, "steps": 2, "do_not_save_samples": True,
                "do_not_save_grid": True, "seed": 1}
    p = processing.StableDiffusionProcessingTxt2Img(**{**defaults, **kw})
    p.scripts = scripts.scripts_txt2img
    p.script_args = default_args(p.scripts)
    return p


def default_args(runner):
    return [0] + [c.value if c is not None else None for c in runner.inputs[1:]]


def extension_scripts(runner):
    """The alwayson scripts of extensions, without the WebUI's built-in processing scripts (sampler, seed, ...)."""
    return [s for s in runner.alwayson_scripts if not s.setup_for_ui_only]


def builtin_args(runner):
    return sum(s.args_to - s.args_from for s in runner.alwayson_scripts if s.setup_for_ui_only)


def unit(**kw):
    from internal_controlnet.external_code import ControlNetUnit

    image = np.full((64, 64, 3), 200, np.uint8)
    return ControlNetUnit(**{"enabled": True, "module": "canny", "model": "control_v11p_sd15_canny", "image": image,
                             "resize_mode": "Just Resize", **kw})


# ------------------------------------------------------------------------------------------------------- loading
def test_script_loading_mechanics(webui_host_factory, tmp_path):
    src = make_extension(tmp_path, "probe", {"scripts/probe.py": PROBE})
    path_before = list(sys.path)
    host = webui_host_factory(extensions={"probe": src})
    from modules import paths, scripts

    ext_dir = str(host.root / "extensions" / "probe")
    probe = loaded("probe/scripts/probe.py")
    assert probe.module_name == "probe.py" and "probe.py" not in sys.modules
    assert all(getattr(m, "__file__", None) != probe.__file__ for m in list(sys.modules.values()))
    assert probe.basedir_at_import == ext_dir and probe.path0_at_import == ext_dir
    assert scripts.basedir() == paths.script_path and ext_dir not in sys.path
    assert sys.path[len(sys.path) - len(path_before):] == path_before
    host.stop()
    assert sys.path == path_before and "modules" not in sys.modules


def test_every_script_subclass_in_the_namespace_is_registered(webui_host_factory, tmp_path):
    src = make_extension(tmp_path, "gotcha", {"scripts/gotcha.py": """
        import modules.scripts as scripts
        from modules.scripts import Script  # the gotcha: the base class is registered too

        class Good(scripts.Script):
            def title(self):
                return "Good"

            def show(self, is_img2img):
                return scripts.AlwaysVisible
    """})
    host = webui_host_factory(extensions={"gotcha": src})
    from modules import scripts

    classes = [d.script_class for d in scripts.scripts_data if d.path.endswith("gotcha.py")]
    assert scripts.Script in classes and [c.__name__ for c in classes].count("Good") == 1
    assert any("Error calling:" in e and "gotcha.py/title" in e for e in host.errors)


def test_callbacks_are_cleared_and_reregistered_on_reload(webui_host_factory, tmp_path):
    src = make_extension(tmp_path, "probe", {"scripts/probe.py": PROBE})
    host = webui_host_factory(extensions={"probe": src})
    from modules import script_callbacks

    def ours():
        return [c for c in script_callbacks.callback_map["callbacks_ui_tabs"] if c.script.endswith("probe.py")]

    assert [c.name for c in ours()] == ["probe/probe.py/ui_tabs", "probe/probe.py/ui_tabs-1"]
    assert script_callbacks.ui_tabs_callback() == []
    assert len(host.callback_errors) == 1 and "callback failure" in host.callback_errors[0]
    first = loaded("probe/scripts/probe.py")
    host.reload_ui()
    host.reload_ui()
    assert first.unloaded == [1] and len(ours()) == 2
    assert loaded("probe/scripts/probe.py") is not first


def test_remove_current_script_callbacks(webui_host_factory, tmp_path):
    src = make_extension(tmp_path, "rm", {"scripts/rm.py": """
        from modules import script_callbacks
        script_callbacks.on_app_started(lambda demo, app: None)
        script_callbacks.remove_current_script_callbacks()
        script_callbacks.on_app_started(lambda demo, app: None)
    """})
    webui_host_factory(extensions={"rm": src})
    from modules import script_callbacks

    assert len([c for c in script_callbacks.callback_map["callbacks_app_started"] if c.script.endswith("rm.py")]) == 1


def test_preload_options_and_cmd_args(webui_host_factory, tmp_path):
    src = make_extension(tmp_path, "pre", {"preload.py": """
        def preload(parser):
            parser.add_argument("--probe-dir", type=str, default=None)
    """})
    host = webui_host_factory(extensions={"pre": src}, cmd_args=["--probe-dir", "x", "--api"])
    from modules import shared

    assert shared.cmd_opts.probe_dir == "x" and shared.cmd_opts.api is True
    assert shared.cmd_opts.lora_dir == str(host.root / "models" / "Lora")
    assert shared.cmd_opts.controlnet_dir is None


def test_options_behave_like_the_real_ones(webui_host_factory):
    webui_host_factory()
    from modules import shared

    with pytest.raises(AttributeError):
        shared.opts.easyphoto_not_registered  # noqa: B018
    assert shared.opts.data.get("easyphoto_not_registered", 7) == 7
    shared.opts.add_option("probe_key", shared.OptionInfo(3, "Probe", section=("probe", "Probe")))
    assert shared.opts.probe_key == 3 and shared.opts.set("probe_key", 4) and shared.opts.probe_key == 4
    assert shared.options_templates is shared.opts.data_labels


# ------------------------------------------------------------------------------------------------- process_images
def test_grid_detect_maps_and_index_of_first_image(webui_host_factory):
    host = webui_host_factory()
    host.add_controlnet_model("control_v11p_sd15_canny.pth")
    from internal_controlnet import external_code
    from modules import processing

    p = txt2img(batch_size=2, do_not_save_grid=False, outpath_grids=str(host.root / "outputs" / "grids"))
    external_code.update_cn_script_in_processing(p, [unit()])
    processed = processing.process_images(p)
    assert len(processed.images) == 4 and processed.index_of_first_image == 1  # grid, 2 samples, 1 detect map
    assert len(processed.infotexts) == 3 and processed.images[0].size == (128, 64)
    name = external_code.get_models()[0]
    assert name.startswith("control_v11p_sd15_canny [") and f"Model: {name}" in p.extra_generation_params["ControlNet 0"]
    assert "Processor Res: 512" in p.extra_generation_params["ControlNet 0"]
    assert host.errors == []


@pytest.mark.parametrize("disable", ["unit", "opts"])
def test_detect_maps_can_be_kept_out(webui_host_factory, disable):
    host = webui_host_factory()
    host.add_controlnet_model("control_v11p_sd15_canny.pth")
    from internal_controlnet import external_code
    from modules import processing, shared

    if disable == "opts":
        shared.opts.data["control_net_no_detectmap"] = True
    p = txt2img()
    external_code.update_cn_script_in_processing(p, [unit(save_detected_map=disable != "unit")])
    assert len(processing.process_images(p).images) == 1


def test_unknown_cn_model_is_swallowed_and_reported(webui_host_factory):
    host = webui_host_factory()
    from internal_controlnet import external_code
    from modules import processing

    p = txt2img()
    external_code.update_cn_script_in_processing(p, [unit(model="control_missing")])
    processed = processing.process_images(p)
    assert len(processed.images) == 1 and "ControlNet 0" not in p.extra_generation_params
    assert any("Error running process" in e and "model not found: control_missing" in e for e in host.errors)


def test_unknown_checkpoint_is_silently_dropped_and_options_restored(webui_host_factory):
    host = webui_host_factory()
    host.add_checkpoint("other.safetensors")
    from modules import processing, shared

    p = txt2img(override_settings={"sd_model_checkpoint": "does-not-exist", "CLIP_stop_at_last_layers": 2})
    processing.process_images(p)
    assert "sd_model_checkpoint" not in p.override_settings and host.errors == []
    assert host.calls[-1].checkpoint.startswith("v1-5-pruned-emaonly")
    assert shared.opts.CLIP_stop_at_last_layers == 1
    processing.process_images(txt2img(override_settings={"sd_model_checkpoint": "other"}))
    assert host.calls[-1].checkpoint.startswith("other.safetensors [")
    assert shared.opts.sd_model_checkpoint.startswith("v1-5-pruned-emaonly")  # restored, the model is not


def test_stale_interrupt_gives_zero_images(webui_host_factory):
    webui_host_factory()
    from modules import processing, shared

    shared.state.interrupted = True
    assert processing.process_images(txt2img(n_iter=2)).images == []
    shared.state.begin(job="test")
    assert len(processing.process_images(txt2img(n_iter=2)).images) == 2
    assert shared.state.job_count == 2 and shared.state.job_no == 2


def test_return_mask_is_appended(webui_host_factory):
    webui_host_factory()
    from modules import processing, shared

    shared.opts.return_mask = True
    init = Image.new("RGB", (64, 64), (10, 20, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    p = processing.StableDiffusionProcessingImg2Img(init_images=[init], mask=mask, width=64, height=64,
                                                    inpaint_full_res=False, do_not_save_samples=True,
                                                    do_not_save_grid=True)
    processed = processing.process_images(p)
    assert len(processed.images) == 2 and len(processed.infotexts) == 1


@pytest.mark.parametrize("full_res", [False, True])
def test_inpaint_generates_inside_and_keeps_outside(webui_host_factory, full_res):
    webui_host_factory()
    from modules import processing

    init = Image.new("RGB", (96, 64), (10, 20, 30))
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (40, 16, 72, 48))
    p = processing.StableDiffusionProcessingImg2Img(init_images=[init], mask=mask, width=64, height=64,
                                                    mask_blur=0, inpaint_full_res=full_res,
                                                    inpaint_full_res_padding=4, do_not_save_samples=True, seed=3)
    out = np.asarray(processing.process_images(p).images[0])
    assert out.shape == ((64, 96, 3) if full_res else (64, 64, 3))
    if full_res:
        assert p.paste_to is not None and p.extra_generation_params["Inpaint area"] == "Only masked"
        outside, inside = out[:, :10], out[20:44, 44:68]
    else:
        outside, inside = out[:, :4], out[24:40, 30:44]
    assert (outside == (10, 20, 30)).all() and not (inside == (10, 20, 30)).all()


def test_processing_property_shadows_and_script_setup(webui_host_factory, tmp_path):
    src = make_extension(tmp_path, "setup", {"scripts/setup.py": """
        import modules.scripts as scripts
        calls = []

        class Setup(scripts.Script):
            def title(self):
                return "Setup probe"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def setup(self, p, *args):
                calls.append(args)
    """})
    webui_host_factory(extensions={"setup": src})
    from modules import processing, scripts, shared

    p = processing.StableDiffusionProcessingImg2Img(sd_model="ignored", mask_blur=2.5, init_images=[])
    assert p.sd_model is shared.sd_model and (p.mask_blur_x, p.mask_blur_y) == (4, 4)
    p.mask_blur = 7
    assert (p.mask_blur_x, p.mask_blur_y, p.mask_blur, p.inpainting_fill, p.image_mask) == (7, 7, 7, 0, None)
    probe = loaded("setup/scripts/setup.py")
    p.script_args = default_args(scripts.scripts_img2img)
    assert probe.calls == []
    p.scripts = scripts.scripts_img2img
    p.script_args = p.script_args
    assert len(probe.calls) == 1


def test_lora_not_found_comment_and_lazy_discovery(webui_host_factory):
    host = webui_host_factory()
    from modules import processing

    processed = processing.process_images(txt2img(prompt="x <lora:later:0.7>"))
    assert "Lora not found: later" in processed.comments and host.calls[-1].loras == [("later", "0.7")]
    host.add_lora("later.safetensors")
    processed = processing.process_images(txt2img(prompt="x <lora:later:0.7>"))
    assert "Lora not found" not in processed.comments
    assert host.calls[-1].fields["prompt"] == "x <lora:later:0.7>" and host.calls[-1].kind == "txt2img"


def test_samplers_and_checkpoint_title(webui_host_factory):
    webui_host_factory()
    from modules import sd_models, sd_samplers, shared

    assert list(sd_samplers.all_samplers_map)[:3] == ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE"]
    assert len(sd_samplers.all_samplers_map) == 20
    assert sd_samplers.get_sampler_and_scheduler("DPM++ 2M Karras", None) == ("DPM++ 2M", "Automatic")
    [title] = sd_models.checkpoints_list  # loaded at startup: the title gained " [shorthash]"
    assert title.startswith("v1-5-pruned-emaonly.safetensors [") and shared.sd_model.sd_checkpoint_info.title == title
    assert sd_models.get_closet_checkpoint_match("v1-5-pruned-emaonly") is shared.sd_model.sd_checkpoint_info


def test_wrap_gradio_gpu_call_resets_state_and_reports(webui_host_factory):
    host = webui_host_factory()
    from modules import call_queue, shared

    def fails(x):
        assert call_queue.queue_lock.locked() and shared.state.job == "task(t1)"
        raise ValueError("boom")

    shared.state.interrupted = True
    result = call_queue.wrap_gradio_gpu_call(fails, extra_outputs=[None])("task(t1)")
    assert result[0] is None and "ValueError: boom" in result[1]
    assert not shared.state.interrupted and not call_queue.queue_lock.locked()
    assert any("Error completing request" in e for e in host.errors)


# ---------------------------------------------------------------------------------------------------- ControlNet
def test_cn_unit_validation(webui_host_factory):
    webui_host_factory()
    from internal_controlnet.args import ValidationError
    from internal_controlnet.external_code import ControlMode, ControlNetUnit, ResizeMode

    for bad in ({"resize_mode": 1}, {"control_mode": 0}, {"weight": 2.5}, {"module": "None"},
                {"guidance_start": 0.8, "guidance_end": 0.2}):
        with pytest.raises(ValidationError):
            ControlNetUnit(**bad)
    u = ControlNetUnit(enabled=True, module="canny", resize_mode="Inner Fit (Scale to Fit)", control_mode="Balanced",
                       unknown_key=1)
    assert (u.resize_mode, u.control_mode, u.processor_res, u.threshold_a, u.threshold_b) == (
        ResizeMode.INNER_FIT, ControlMode.BALANCED, 512, 100, 200)
    assert ControlNetUnit(module="depth_midas").module == "depth_midas"
    d = ControlNetUnit.from_dict({"lowvram": True, "mask_image": np.zeros((2, 2, 3), np.uint8), "guidance": 0.5})
    assert d.low_vram is True and d.mask is not None and d.guidance_end == 0.5
    with pytest.raises(ValueError, match="Unrecognized image format"):
        ControlNetUnit(image=Image.new("RGB", (4, 4))).get_input_images_rgba()


def _add_probe_after_controlnet(tmp_path):
    return make_extension(tmp_path, "zz-after", {"scripts/after.py": """
        import modules.scripts as scripts

        class After(scripts.Script):
            def title(self):
                return "After"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def ui(self, is_img2img):
                class C:
                    value = "after"
                return [C(), C()]
    """})


def test_update_cn_script_pads_and_shifts_later_scripts(webui_host_factory, tmp_path):
    webui_host_factory(extensions={"zz-after": _add_probe_after_controlnet(tmp_path)})
    from internal_controlnet import external_code
    from modules import scripts

    runner = scripts.scripts_txt2img
    cn, after = extension_scripts(runner)
    start = builtin_args(runner) + 1  # the sampler, refiner and seed rows are laid out before the script area
    assert (cn.args_from, cn.args_to, after.args_from, after.args_to) == (start, start + 3, start + 3, start + 5)
    args = external_code.update_cn_script(runner, tuple(default_args(runner)), [unit()])
    assert isinstance(args, tuple) and len(args) == start + 5
    assert [a.enabled for a in args[start:start + 3]] == [True, False, False]
    args = external_code.update_cn_script(runner, default_args(runner), [unit()] * 5)
    assert (cn.args_to, after.args_from, after.args_to) == (start + 5, start + 5, start + 7)
    assert args[start + 5:] == ["after", "after"]


def test_cn_absent_means_no_cn_script(webui_host_factory):
    webui_host_factory(controlnet=False)
    from modules import scripts

    assert [s.title() for s in extension_scripts(scripts.scripts_txt2img)] == []
    with pytest.raises(ImportError):
        __import__("scripts.external_code")


# --------------------------------------------------------------------------------------------------------- Forge
def test_forge_flavour(webui_host_factory, tmp_path):
    host = webui_host_factory("forge", extensions={"sd-webui-controlnet": CONTROLNET_A1111})
    import launch
    from lib_controlnet import external_code, global_state
    from modules import processing, scripts, sd_models, sd_vae

    assert launch.git_tag() == "f2.0.1v1.10.1-v1.10.1" and __import__("modules_forge.config")
    assert [s.title() for s in extension_scripts(scripts.scripts_txt2img)] == ["ControlNet"]  # Mikubill: disabled
    assert "scripts.external_code" not in sys.modules
    assert sd_models.reload_model_weights() is None and sd_vae.reload_vae_weights() is None
    host.add_controlnet_model("control_v11p_sd15_canny.pth")
    exact = global_state.get_all_controlnet_names()[1]
    with pytest.raises(TypeError):
        external_code.ControlNetUnit(low_vram=True)
    image = np.full((64, 64, 3), 9, np.uint8)
    for model in ("control_v11p_sd15_canny", exact):
        p = txt2img()
        [cn] = extension_scripts(scripts.scripts_txt2img)
        p.script_args[cn.args_from] = {"enabled": True, "module": "canny", "model": model, "image": image,
                                       "low_vram": True}
        processed = processing.process_images(p)
        assert len(processed.images) == 1
    assert len(processed.extra_images) == 1 and "ControlNet 0" in p.extra_generation_params
    assert any("KeyError: 'control_v11p_sd15_canny'" in e for e in host.errors)


def test_forge_model_switch_goes_through_main_entry(webui_host_factory):
    host = webui_host_factory("forge")
    host.add_checkpoint("other.safetensors")
    from modules import processing, sd_models, shared

    assert not hasattr(sd_models.model_data.sd_model, "sd_checkpoint_info")  # FakeInitialModel
    processing.process_images(txt2img(override_settings={"sd_model_checkpoint": "other.safetensors"}))
    assert shared.sd_model.sd_checkpoint_info.name == "other.safetensors"


# ---------------------------------------------------------------------------------------------------- install.py
def test_run_extension_installer_records_pip(webui_host_factory, tmp_path):
    src = make_extension(tmp_path, "inst", {"install.py": """
        import launch
        if not launch.is_installed("surely-not-installed-pkg"):
            launch.run_pip("install surely-not-installed-pkg==1.0", "probe requirement")
        print(launch.is_installed("numpy"), launch.git_tag())
    """})
    host = WebUIHost(tmp_path / "h", extensions={"inst": src})
    log = tmp_path / "pip.jsonl"
    result = host.run_extension_installer(src, env={"EASYPHOTO_TEST_PIP_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["True", "v1.10.1"]
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["kind"] == "pip" and entry["command"] == "install surely-not-installed-pkg==1.0"


def test_failing_installer_is_only_reported(webui_host_factory, tmp_path):
    src = make_extension(tmp_path, "bad", {"install.py": "raise SystemExit(3)\n"})
    host = webui_host_factory(extensions={"bad": src})
    import launch

    launch.run_extension_installer(str(host.root / "extensions" / "bad"))
    assert any("Error running install.py" in e and "Error code: 3" in e for e in host.errors)


# ---------------------------------------------------------------------------------------------- upscalers
@pytest.mark.parametrize("flavour", ["a1111", "forge"])
def test_upscalers_are_listed_and_run_the_real_way(webui_host_factory, flavour):
    host = webui_host_factory(flavour)
    from modules import modelloader, shared, upscaler

    # the built-ins first, then the Real-ESRGAN entries enabled in Settings → Upscaling (by default these two)
    assert [u.name for u in shared.sd_upscalers] == ["None", "Lanczos", "Nearest", "R-ESRGAN 4x+",
                                                      "R-ESRGAN 4x+ Anime6B"]
    entry = shared.sd_upscalers[3]
    assert entry.data_path.endswith("/RealESRGAN_x4plus.pth") and entry.scale == 4
    assert entry.scaler.model_download_path == str(host.root / "models" / "RealESRGAN")
    image = Image.new("RGB", (30, 20), (200, 10, 10))
    lanczos = shared.sd_upscalers[1]
    assert lanczos.scaler.upscale(image, 3, lanczos.data_path).size == (88, 56)  # × 3, rounded down to 8
    # no file and no network: reported, and the caller's Lanczos resize still gives the size asked for
    assert entry.scaler.upscale(image, 3, entry.data_path).size == (88, 56)
    assert any("Unable to load RealESRGAN model" in e for e in host.errors) and modelloader.loads == []
    (host.root / "models" / "RealESRGAN").mkdir(parents=True, exist_ok=True)  # the failed download made it
    (host.root / "models" / "RealESRGAN" / "RealESRGAN_x4plus.pth").write_text("scale=4\n", encoding="utf8")
    out = entry.scaler.upscale(image, 3, entry.data_path)  # one model pass (120×80), then Lanczos down
    assert out.size == (88, 56) and len(modelloader.loads) == 1
    assert np.array_equal(np.asarray(out), np.asarray(image.resize((120, 80), upscaler.LANCZOS)
                                                      .resize((88, 56), upscaler.LANCZOS)))
