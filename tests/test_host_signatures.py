"""The host double (tests/host) against the real WebUI signatures (tests/host/host-api-signatures.json).

One test per JSON module and flavour: every function/method/class/dataclass/constant the double defines must have
the real parameter names, order, kinds and literal defaults (host-api.md 7.4); a second set asserts that every name
of host-api.md section 7.2 exists (and that names the real host lacks do not); the last tests show that the
comparator does catch altered signatures.
"""

from __future__ import annotations

import functools
import inspect

import pytest

from tests.host import signature_check as sc
from tests.host.harness import WebUIHost

REFERENCE = sc.load_reference()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """One started host per flavour, (re)started on demand (starting one stops the other)."""
    made = {}

    def get(flavour):
        host = made.get(flavour)
        if host is None:
            host = made[flavour] = WebUIHost(tmp_path_factory.mktemp(f"sig-{flavour}"), flavour=flavour)
        return host.start()

    yield get
    for host in made.values():
        host.stop()


def _module_params(flavour):
    return [pytest.param(flavour, repo, path, id=f"{flavour}:{path}")
            for (repo, path) in sc.reference_modules(REFERENCE, flavour)]


@pytest.mark.parametrize(("flavour", "repo", "path"), _module_params("a1111") + _module_params("forge"))
def test_module_matches_real_signatures(hosts, flavour, repo, path):
    hosts(flavour)
    module = sc.resolve_module(repo, path, flavour)
    if module is None:
        pytest.skip(f"the double has no {path}")
    problems, compared = sc.compare_module(module, REFERENCE[repo][path])
    assert not problems, "\n".join(problems)
    assert compared > 0 or not REFERENCE[repo][path]


# ---------------------------------------------------------------------------------------------------- 7.2 names
_CALLBACKS = ["app_started", "before_reload", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings",
              "before_image_saved", "image_saved", "extra_noise", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg",
              "before_component", "after_component", "image_grid", "infotext_pasted", "script_unloaded", "before_ui",
              "list_optimizers", "list_unets", "before_token_counter"]
_SCRIPT_HOOKS = ["title", "ui", "show", "run", "setup", "before_process", "process", "before_process_batch",
                 "after_extra_networks_activate", "process_before_every_sampling", "process_batch", "postprocess_batch",
                 "postprocess_batch_list", "on_mask_blend", "post_sample", "postprocess_image", "postprocess_maskoverlay",
                 "postprocess_image_after_composite", "postprocess", "before_component", "after_component",
                 "on_before_component", "on_after_component", "describe", "elem_id", "before_hr"]
_SCRIPT_ATTRS = ["name", "section", "filename", "args_from", "args_to", "alwayson", "is_txt2img", "is_img2img",
                 "tabname", "group", "create_group", "infotext_fields", "paste_field_names", "api_info",
                 "on_before_component_elem_id", "on_after_component_elem_id", "setup_for_ui_only", "controls"]
_RUNNER = ["initialize_scripts", "setup_ui", "run", "before_process", "process", "process_before_every_sampling",
           "before_process_batch", "process_batch", "postprocess", "postprocess_batch", "postprocess_batch_list",
           "postprocess_image", "setup_scrips", "script", "set_named_arg"]

REQUIRED = {
    "launch": "args python git index_url dir_repos run is_installed run_pip run_extension_installer list_extensions "
              "git_tag commit_hash repo_dir check_run_python git_clone prepare_environment configure_for_tests "
              "start main".split(),
    "modules.paths_internal": "script_path data_path models_path extensions_dir extensions_builtin_dir "
                              "default_output_dir sd_configs_path sd_default_config sd_model_file default_sd_model_file "
                              "config_states_dir modules_path cwd normalized_filepath commandline_args".split(),
    "modules.paths": "script_path data_path models_path extensions_dir extensions_builtin_dir cwd".split(),
    "modules.cmd_args": ["parser"],
    "modules.shared_cmd_options": ["parser", "cmd_opts"],
    "modules.options": ["OptionInfo", "OptionHTML", "options_section", "Options", "categories",
                        "categories.register_category", "Options.typemap"]
    + [f"OptionInfo.{m}" for m in "link js info html needs_restart needs_reload_ui".split()]
    + [f"Options.{m}" for m in "__setattr__ __getattr__ set get_default save same_type load onchange dumpjson "
                               "add_option reorder cast_value".split()],
    "modules.shared": "cmd_opts parser opts options_templates restricted_opts config_filename state demo device "
                      "hide_dirs sd_upscalers progress_print_out total_tqdm total_tqdm.clear total_tqdm.update "
                      "total_tqdm.updateTotal tab_names settings_components OptionInfo OptionHTML options_section "
                      "natural_sort_key listfiles walk_files html html_path list_checkpoint_tiles refresh_checkpoints "
                      "list_samplers reload_hypernetworks".split(),
    "modules.shared_state": ["State"] + [f"State.{m}" for m in "begin end interrupt skip stop_generating nextjob dict "
                                                                 "set_current_image do_set_current_image "
                                                                 "assign_current_image request_restart "
                                                                 "wait_for_server_command server_command "
                                                                 "need_restart".split()],
    "modules.script_callbacks": [f"on_{c}" for c in _CALLBACKS]
    + "app_started_callback app_reload_callback model_loaded_callback ui_tabs_callback ui_train_tabs_callback "
      "ui_settings_callback before_ui_callback script_unloaded_callback infotext_pasted_callback "
      "before_image_saved_callback image_saved_callback callback_map clear_callbacks add_callback ordered_callbacks "
      "remove_current_script_callbacks remove_callbacks_for_function ScriptCallback ImageSaveParams UiTrainTabParams "
      "CFGDenoiserParams ImageGridLoopParams BeforeTokenCounterParams report_exception".split(),
    "modules.scripts": ["AlwaysVisible", "Script"] + [f"Script.{m}" for m in _SCRIPT_HOOKS + _SCRIPT_ATTRS]
    + "PostprocessImageArgs PostprocessBatchListArgs PostSampleArgs MaskBlendArgs PostProcessMaskOverlayArgs basedir "
      "ScriptFile ScriptClassData scripts_data list_scripts list_files_with_name load_scripts wrap_call ScriptRunner "
      "scripts_txt2img scripts_img2img scripts_current scripts_postproc reload_scripts".split()
    + [f"ScriptRunner.{m}" for m in _RUNNER]
    + [f"scripts_txt2img.{a}" for a in "scripts selectable_scripts alwayson_scripts titles title_map infotext_fields "
                                       "paste_field_names inputs callback_map".split()],
    "modules.processing": "StableDiffusionProcessing StableDiffusionProcessingTxt2Img StableDiffusionProcessingImg2Img "
                          "Processed Processed.js Processed.infotext process_images fix_seed get_fixed_seed "
                          "create_infotext apply_overlay create_binary_mask calls StableDiffusionProcessing.close "
                          "StableDiffusionProcessing.comment StableDiffusionProcessing.save_samples "
                          "StableDiffusionProcessing.setup_scripts StableDiffusionProcessing.scripts "
                          "StableDiffusionProcessing.script_args StableDiffusionProcessing.sd_model "
                          "StableDiffusionProcessingImg2Img.mask_blur".split(),
    "modules.sd_models": "model_dir model_path checkpoints_list checkpoint_aliases checkpoint_alisases CheckpointInfo "
                         "CheckpointInfo.register CheckpointInfo.calculate_shorthash list_models "
                         "get_closet_checkpoint_match model_hash select_checkpoint checkpoint_tiles reload_model_weights "
                         "unload_model_weights send_model_to_device send_model_to_cpu model_data "
                         "SdModelData.get_sd_model SdModelData.set_sd_model read_metadata_from_safetensors "
                         "get_checkpoint_state_dict apply_token_merging".split(),
    "modules.sd_vae": "vae_dict refresh_vae_list reload_vae_weights get_loaded_vae_name get_loaded_vae_hash "
                      "unspecified".split(),
    "modules.sd_samplers": "all_samplers_map get_sampler_and_scheduler fix_p_invalid_sampler_and_scheduler".split(),
    "modules.sd_schedulers": ["schedulers", "schedulers_map"],
    "modules.devices": "cpu device dtype dtype_vae dtype_unet dtype_inference torch_gc get_optimal_device "
                       "get_device_for autocast without_autocast test_for_nans NansException".split(),
    "modules.images": "save_image resize_image image_grid flatten read_info_from_image".split(),
    "modules.masking": "get_crop_region_v2 get_crop_region expand_crop_region fill".split(),
    "modules.call_queue": "queue_lock wrap_queued_call wrap_gradio_gpu_call wrap_gradio_call "
                          "wrap_gradio_call_no_job".split(),
    "modules.errors": "report display display_once print_error_explanation record_exception reported".split(),
    "modules.timer": "Timer Timer.record Timer.summary startup_timer".split(),
    "modules.extensions": "extensions extension_paths loaded_extensions active list_extensions find_extension "
                          "Extension ExtensionMetadata ExtensionMetadata.get_script_requirements "
                          "ExtensionMetadata.parse_list ExtensionMetadata.list_callback_order_instructions".split(),
    "modules.script_loading": "load_module preload_extensions loaded_scripts".split(),
    "modules.ui_components": "ToolButton FormRow FormColumn FormGroup FormHTML DropdownMulti DropdownEditable "
                             "InputAccordion ResizeHandleRow".split(),
    "modules.infotext_utils": "parse_generation_parameters create_override_settings_dict image_from_url_text".split(),
    "modules.generation_parameters_copypaste": ["parse_generation_parameters"],
    "modules.extra_networks": "ExtraNetworkParams parse_prompt parse_prompts register_extra_network activate "
                              "deactivate".split(),
    "modules.api.api": ["decode_base64_to_image", "encode_pil_to_base64"],
    "modules.progress": "create_task_id add_task_to_queue start_task finish_task record_results".split(),
    "modules.util": "natural_sort_key listfiles html html_path walk_files".split(),
    "modules.upscaler": "LANCZOS NEAREST Upscaler Upscaler.upscale Upscaler.do_upscale Upscaler.load_model "
                        "Upscaler.find_models UpscalerData UpscalerNone UpscalerLanczos UpscalerNearest".split(),
    "modules.modelloader": "load_file_from_url load_models friendly_name load_upscalers load_spandrel_model".split(),
    "modules.realesrgan_model": "UpscalerRealESRGAN UpscalerRealESRGAN.do_upscale UpscalerRealESRGAN.load_model "
                                "get_realesrgan_models".split(),
    "modules.upscaler_utils": ["upscale_with_model"],
    "networks": "available_networks available_network_aliases forbidden_network_aliases list_available_networks "
                "update_available_networks_by_names process_network_files".split(),
    "network": ["NetworkOnDisk"],
}
REQUIRED_A1111 = {
    "internal_controlnet.args": ["ControlNetUnit"] + [f"ControlNetUnit.{m}" for m in
                                                      "from_dict parse infotext_fields serialize get_input_images_rgba "
                                                      "is_inpaint uses_clip is_ipadapter accepts_multiple_inputs "
                                                      "cls_match_module cls_match_model cls_decode_base64 "
                                                      "cls_torch_load_base64 cls_get_preprocessor cls_logger".split()],
    "internal_controlnet.external_code": "get_all_units_in_processing get_all_units get_all_units_from "
                                         "get_single_unit_from to_processing_unit update_cn_script_in_processing "
                                         "update_cn_script update_cn_script_in_place get_models get_modules "
                                         "get_modules_detail get_max_models_num find_cn_script is_cn_script "
                                         "resize_mode_from_value pixel_perfect_resolution visualize_inpaint_mask "
                                         "to_base64_nparray get_api_version ResizeMode ControlMode BatchOption "
                                         "ControlNetUnit".split(),
    "scripts.external_code": "ControlNetUnit update_cn_script_in_processing update_cn_script get_models get_modules "
                             "find_cn_script ResizeMode ControlMode".split(),
    "scripts.enums": "ResizeMode ControlMode HiResFixOption InputMode BatchOption".split(),
    "scripts.global_state": "cn_models cn_models_names update_cn_models".split(),
}
REQUIRED_FORGE = {
    "lib_controlnet.external_code": "ControlMode BatchOption ResizeMode resize_mode_from_value control_mode_from_value "
                                    "pixel_perfect_resolution visualize_inpaint_mask GradioImageMaskPair ControlNetUnit "
                                    "ControlNetUnit.from_dict UiControlNetUnit to_base64_nparray get_max_models_num "
                                    "get_api_version".split(),
    "lib_controlnet.global_state": "get_all_controlnet_names get_controlnet_filename update_controlnet_filenames "
                                   "get_preprocessor get_all_preprocessor_names".split(),
    "modules_forge.main_entry": ["checkpoint_change"],
    "modules_forge.main_thread": ["run_and_wait_result"],
    "modules_forge.config": ["always_disabled_extensions"],
    "modules_forge.forge_version": ["version"],
    "modules.sd_models": ["forge_model_reload"],
    "modules.util": ["load_file_from_url", "compare_sha256"],
    "modules_forge.utils": ["prepare_free_memory"],
}
ABSENT = {  # (flavour, module) -> names the real host lacks: code written against the double must not find them
    ("a1111", "modules.util"): ["load_file_from_url", "compare_sha256"],  # added by A1111 PR 16302, after v1.10.1
}
LOADED_SCRIPTS = {  # (flavour, json repo, json path) -> names, for modules executed by the script loader
    ("a1111", sc.A1111, "extensions-builtin/Lora/preload.py"): ["preload"],
    ("a1111", sc.A1111, "extensions-builtin/Lora/scripts/lora_script.py"): ["api_networks", "unload", "before_ui"],
    ("a1111", sc.MIKUBILL, "preload.py"): ["preload"],
    ("a1111", sc.MIKUBILL, "scripts/controlnet.py"): ["Script", "Script.title", "Script.show", "Script.ui",
                                                      "Script.process", "Script.postprocess",
                                                      "find_closest_lora_model_name", "on_ui_settings"],
    ("a1111", sc.MIKUBILL, "scripts/api.py"): ["controlnet_api"],
    ("forge", sc.FORGE, "extensions-builtin/sd_forge_controlnet/scripts/controlnet.py"): [
        "ControlNetForForgeOfficial", "ControlNetForForgeOfficial.title", "ControlNetForForgeOfficial.process"],
    ("forge", sc.FORGE, "extensions-builtin/sd_forge_lora/preload.py"): ["preload"],
}
CMD_OPTS = ("api nowebui listen share ngrok server_name port data_dir models_dir ckpt ckpt_dir vae_dir embeddings_dir "
            "hypernetwork_dir lora_dir lyco_dir_backcompat controlnet_dir no_half no_half_vae lowvram medvram "
            "medvram_sdxl use_cpu precision xformers device_id skip_install enable_insecure_extension_access "
            "disable_all_extensions disable_extra_extensions ui_settings_file ui_config_file hide_ui_dir_config "
            "freeze_settings freeze_settings_in_sections freeze_specific_settings api_auth gradio_auth subpath "
            "api_server_stop test_server no_hashing skip_load_model_at_start no_download_sd_model "
            "do_not_download_clip webui_is_non_local disable_extension_access").split()


def _required_params():
    params = [pytest.param(f, m, n, id=f"{f}:{m}") for f in ("a1111", "forge") for m, n in REQUIRED.items()]
    params += [pytest.param("a1111", m, n, id=f"a1111-only:{m}") for m, n in REQUIRED_A1111.items()]
    params += [pytest.param("forge", m, n, id=f"forge-only:{m}") for m, n in REQUIRED_FORGE.items()]
    return params


def _missing(module, names):
    missing = []
    for name in names:
        obj = module
        for part in name.split("."):
            try:
                obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
            except AttributeError:
                missing.append(name)
                break
    return missing


@pytest.mark.parametrize(("flavour", "module_name", "names"), _required_params())
def test_required_names_exist(hosts, flavour, module_name, names):
    import importlib

    hosts(flavour)
    module = importlib.import_module(module_name)
    assert _missing(module, names) == []


@pytest.mark.parametrize(("flavour", "module_name", "names"),
                         [pytest.param(*k, v, id=f"{k[0]}:{k[1]}") for k, v in ABSENT.items()])
def test_names_the_real_host_lacks_are_absent(hosts, flavour, module_name, names):
    import importlib

    hosts(flavour)
    module = importlib.import_module(module_name)
    assert _missing(module, names) == names


@pytest.mark.parametrize(("flavour", "repo", "path", "names"),
                         [pytest.param(*k, v, id=f"{k[0]}:{k[2]}") for k, v in LOADED_SCRIPTS.items()])
def test_required_names_exist_in_loaded_scripts(hosts, flavour, repo, path, names):
    hosts(flavour)
    module = sc.resolve_module(repo, path, flavour)
    assert module is not None, f"{path} was not loaded"
    assert _missing(module, names) == []


@pytest.mark.parametrize("flavour", ["a1111", "forge"])
def test_cmd_opts_have_the_attributes_extensions_read(hosts, flavour):
    hosts(flavour)
    from modules import shared

    assert [name for name in CMD_OPTS if not hasattr(shared.cmd_opts, name)] == []


# ------------------------------------------------------------------------------------- the comparator is not blind
def _with_signature(func, transform):
    """A wrapper of ``func`` whose inspect.signature() is ``transform(list of Parameters)``."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    params = list(inspect.signature(func).parameters.values())
    wrapper.__signature__ = inspect.Signature(transform(params))
    del wrapper.__wrapped__
    return wrapper


def _rename_first(params):
    return [params[0].replace(name=params[0].name + "_x"), *params[1:]]


def _change_default(params):
    return [p.replace(default=3) if p.name == "batch_size" else p for p in params]


def _swap_last_two(params):
    return [*params[:-2], params[-1], params[-2]]


def _drop_default(params):
    return [p.replace(default=inspect.Parameter.empty) for p in params]


def _make_keyword_only(params):
    kinds = [inspect.Parameter.KEYWORD_ONLY if p.name in ("batch_size", "rows") else p.kind for p in params]
    return [p.replace(kind=k) for p, k in zip(params, kinds, strict=False)]


@pytest.mark.parametrize("transform", [_rename_first, _change_default, _swap_last_two, _drop_default,
                                       _make_keyword_only])
def test_comparator_reports_an_altered_signature(hosts, transform):
    hosts("a1111")
    from modules import images

    entry = REFERENCE[sc.A1111]["modules/images.py"]["image_grid"]
    assert sc.compare_entry("image_grid", entry, images.image_grid) == []
    altered = _with_signature(images.image_grid, transform)
    assert sc.compare_entry("image_grid", entry, altered) != []


def test_comparator_reports_altered_dataclass_fields_and_constants(hosts):
    import dataclasses

    hosts("a1111")
    from modules import processing

    entries = REFERENCE[sc.A1111]["modules/processing.py"]
    cls = processing.StableDiffusionProcessingImg2Img
    assert sc.compare_entry("StableDiffusionProcessingImg2Img", entries["StableDiffusionProcessingImg2Img"], cls) == []
    changed_default = dataclasses.make_dataclass("X", [("init_images", list, dataclasses.field(default=None)),
                                                       ("resize_mode", int, dataclasses.field(default=1))])
    assert sc.compare_fields("X", {**entries["StableDiffusionProcessingImg2Img"],
                                   "annotated_fields": entries["StableDiffusionProcessingImg2Img"]
                                   ["annotated_fields"][:2]}, changed_default) != []
    assert sc.compare_variable("opt_f", {"type": "variable", "value": "8"}, 9) != []
