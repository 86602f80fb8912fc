"""SDXL LoRA files (easyphoto.sd.lora with family "sdxl") and proof that the exported files load: through the
WebUI double's Lora key mapping (A1111 1.10.1's networks.load_network / network_apply_weights, modelled in
tests/host/extensions-builtin/Lora) on the kit's SGM single files, and through diffusers' SDXL LoRA loader.

The models are the kit's tiny SDXL (SDXL's module names and layer types: linear transformer projections, CLIP-L and
OpenCLIP-bigG-style encoders) and tiny SD 1.5, with random weights; LoRA weights are random LoraModules over
``module_keys(...)``, so every key and shape is the one a real LoRA on that architecture has.
"""

from __future__ import annotations

import logging
import os

import pytest

from tests.conftest import require_module

torch = require_module("torch")
require_module("diffusers")

from safetensors.torch import load_file, save_file  # noqa: E402

from easyphoto.sd import lora as L  # noqa: E402
from tests.kit.tiny_sd import torch_threads  # noqa: E402

RANK, ALPHA = 4, 2.0
TE_MULTIPLIER, UNET_MULTIPLIER = 0.7, 0.5


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _sdxl_models(folder):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    return {
        "unet": UNet2DConditionModel.from_pretrained(str(folder / "unet"), local_files_only=True).eval(),
        "text_encoder": CLIPTextModel.from_pretrained(str(folder / "text_encoder"), local_files_only=True).eval(),
        "text_encoder_2": CLIPTextModelWithProjection.from_pretrained(
            str(folder / "text_encoder_2"), local_files_only=True
        ).eval(),
    }


def _sd15_models(folder):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    return {
        "unet": UNet2DConditionModel.from_pretrained(str(folder / "unet"), local_files_only=True).eval(),
        "text_encoder": CLIPTextModel.from_pretrained(str(folder / "text_encoder"), local_files_only=True).eval(),
    }


def _all_keys(models):
    return [
        key
        for prefix, model in models.items()
        for key in L.module_keys(model, prefix, L.UNET_TARGETS if prefix == "unet" else L.TEXT_TARGETS)
    ]


def _random_lora(models, seed):
    """A rank-4 LoRA on every target layer of `models`, non-zero up and down (so every ΔW ≠ 0)."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key in _all_keys(models):
        prefix, _, path = key.partition(".")
        shape = models[prefix].get_submodule(path).weight.shape
        kernel = tuple(shape[2:])  # (1, 1) for SD 1.5's proj_in/proj_out convs, () for Linear
        down = torch.randn((RANK, shape[1], *kernel), generator=generator) * 0.1
        up = torch.randn((shape[0], RANK, *(1,) * len(kernel)), generator=generator) * 0.1
        weights[key] = L.LoraModule(down=down, up=up, alpha=ALPHA)
    return weights


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir):
    models = _sdxl_models(tiny_sdxl_dir)
    return {"models": models, "weights": _random_lora(models, seed=7)}


# ---------------------------------------------------------------------------------------------- names


def test_sdxl_kohya_names_and_family():
    te1 = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
    te2 = "text_encoder_2.text_model.encoder.layers.1.mlp.fc2"
    unet = "unet.down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_out.0"
    assert L.kohya_name(te1, "sdxl") == "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    assert L.kohya_name(te2, "sdxl") == "lora_te2_text_model_encoder_layers_1_mlp_fc2"
    assert L.kohya_name(unet, "sdxl") == "lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn2_to_out_0"
    assert L.kohya_name(te1) == "lora_te_text_model_encoder_layers_0_self_attn_q_proj"  # SD 1.5 unchanged
    with pytest.raises(L.LoraFormatError, match="for a sd15 LoRA"):
        L.kohya_name(te2)
    with pytest.raises(L.LoraFormatError, match="Unknown LoRA model family 'sd2'"):
        L.kohya_name(unet, "sd2")

    assert L.lora_family([unet, te1]) == "sd15"
    assert L.lora_family([unet, te1, te2]) == "sdxl"
    assert L.lora_family([unet], "sdxl") == "sdxl"
    assert L.lora_family([unet], metadata={"ss_base_model_version": "sdxl_base_v1-0"}) == "sdxl"
    with pytest.raises(L.LoraFormatError, match="cannot hold text_encoder_2") as caught:
        L.lora_family([te2], "sd15")
    assert "family='sdxl'" in caught.value.hint

    for key in (te1, te2, unet):  # the name vocabulary decodes SDXL names without metadata
        assert L.guess_module_key(L.kohya_name(key, "sdxl")) == key
    # kohya's SDXL trainer names UNet modules the SGM way
    assert L.guess_module_key("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q") == (
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    )
    assert L.guess_module_key("lora_unet_middle_block_1_proj_in") == "unet.mid_block.attentions.0.proj_in"
    assert L.guess_module_key("lora_unet_output_blocks_5_1_transformer_blocks_9_ff_net_0_proj") == (
        "unet.up_blocks.1.attentions.2.transformer_blocks.9.ff.net.0.proj"
    )
    with pytest.raises(L.LoraFormatError, match="'lora_te2_…'"):
        L.guess_module_key("lora_te3_text_model_encoder_layers_0_mlp_fc1")


def test_module_keys_cover_the_sdxl_targets(sdxl):
    """The SD 1.5 target names cover SDXL's diffusers UNet and both CLIP encoders, every one a Linear layer."""
    keys = _all_keys(sdxl["models"])
    counts = {prefix: sum(k.startswith(prefix + ".") for k in keys) for prefix in sdxl["models"]}
    # UNet: 12 transformer blocks (down 2x2, mid 1x2, up 3x2) x 10 projections + 6 attentions x proj_in/proj_out;
    # each encoder: 2 layers x (q, k, v, out, fc1, fc2)
    assert counts == {"unet": 132, "text_encoder": 12, "text_encoder_2": 12}
    assert {k.rsplit(".", 1)[-1] for k in keys} >= {"to_q", "to_k", "to_v", "proj_in", "proj_out", "q_proj", "fc2"}
    for key in keys:
        prefix, _, path = key.partition(".")
        assert isinstance(sdxl["models"][prefix].get_submodule(path), torch.nn.Linear), key


def test_peft_trained_te2_exports_and_bakes_like_peft(tiny_sdxl_dir, tmp_path):
    """The trainer's path for the second encoder: peft on TEXT_TARGETS -> from_peft("text_encoder_2") -> the file
    -> apply_webui_style reproduces the peft model's output."""
    require_module("peft")
    from peft import LoraConfig, inject_adapter_in_model

    from easyphoto.train.lora import from_peft

    te2 = _sdxl_models(tiny_sdxl_dir)["text_encoder_2"]
    expected_keys = L.module_keys(te2, "text_encoder_2", L.TEXT_TARGETS)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(L.TEXT_TARGETS), init_lora_weights=True)
    peft_te2 = inject_adapter_in_model(config, _sdxl_models(tiny_sdxl_dir)["text_encoder_2"])
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, param in peft_te2.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    weights = from_peft(peft_te2.eval(), "text_encoder_2", alpha=ALPHA)
    assert sorted(weights) == sorted(expected_keys) and L.lora_family(weights) == "sdxl"
    path = L.save_lora(tmp_path / "te2.safetensors", weights, dtype=torch.float32)
    assert all(name.startswith("lora_te2_text_model_encoder_layers_") for name in load_file(str(path)))
    loaded, _ = L.load_lora(path)
    L.apply_webui_style(te2, "text_encoder_2", loaded)
    torch.testing.assert_close(_text_out(te2), _text_out(peft_te2), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- files


def test_sdxl_save_load_roundtrip_is_exact(sdxl, tmp_path):
    weights = sdxl["weights"]
    path = L.save_lora(tmp_path / "alice.safetensors", weights, {"easyphoto_identity": "alice"}, dtype=torch.float32)
    tensors = load_file(str(path))
    prefixes = {name.split("_text_model")[0] if "_text_model" in name else "lora_unet" for name in tensors}
    assert prefixes == {"lora_unet", "lora_te1", "lora_te2"}
    assert len(tensors) == 3 * len(weights)
    loaded, metadata = L.load_lora(path)
    assert metadata["ss_base_model_version"] == "sdxl_base_v1-0" and metadata["easyphoto_identity"] == "alice"
    assert L.lora_family(loaded, metadata=metadata) == "sdxl"
    assert sorted(loaded) == sorted(weights)
    for key, module in weights.items():
        assert torch.equal(loaded[key].down, module.down) and torch.equal(loaded[key].up, module.up), key
        assert loaded[key].alpha == ALPHA


def test_sdxl_file_without_our_metadata_decodes(sdxl, tmp_path):
    """A kohya-style file (no easyphoto_modules), also with SGM UNet names as kohya's SDXL trainer writes them."""
    weights = sdxl["weights"]
    tensors = L.lora_state_dict(weights, torch.float32, family="sdxl")
    save_file(tensors, str(tmp_path / "plain.safetensors"), metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    loaded, _ = L.load_lora(tmp_path / "plain.safetensors")
    assert sorted(loaded) == sorted(weights)

    sgm = {"down_blocks_1_attentions_0": "input_blocks_4_1", "down_blocks_1_attentions_1": "input_blocks_5_1",
           "mid_block_attentions_0": "middle_block_1", "up_blocks_0_attentions_0": "output_blocks_0_1",
           "up_blocks_0_attentions_1": "output_blocks_1_1", "up_blocks_0_attentions_2": "output_blocks_2_1"}  # fmt: skip
    renamed = {}
    for name, tensor in tensors.items():
        for diffusers_name, sgm_name in sgm.items():
            name = name.replace(f"lora_unet_{diffusers_name}_", f"lora_unet_{sgm_name}_")
        renamed[name] = tensor
    assert sum(name.startswith("lora_unet_input_blocks") for name in renamed) > 0
    save_file(renamed, str(tmp_path / "sgm.safetensors"))
    loaded, _ = L.load_lora(tmp_path / "sgm.safetensors")
    assert sorted(loaded) == sorted(weights)


def test_unet_only_sdxl_lora_says_so_in_its_metadata(sdxl, tmp_path):
    unet_only = L.modules_under(sdxl["weights"], "unet")
    unet_only = {f"unet.{path}": module for path, module in unet_only.items()}
    path = L.save_lora(tmp_path / "u.safetensors", unet_only, family="sdxl")
    assert L.read_lora_metadata(path)["ss_base_model_version"] == "sdxl_base_v1-0"
    path = L.save_lora(tmp_path / "u1.safetensors", unet_only)  # no family, no te2 key: SD 1.5
    assert L.read_lora_metadata(path)["ss_base_model_version"] == "sd_v1"
    with pytest.raises(L.LoraFormatError, match="contradicts family 'sdxl'"):
        L.save_lora(tmp_path / "u2.safetensors", unet_only, {"ss_base_model_version": "sd_v1"}, family="sdxl")
    with pytest.raises(L.LoraFormatError, match="cannot hold text_encoder_2"):
        L.save_lora(tmp_path / "u3.safetensors", sdxl["weights"], family="sd15")


# ---------------------------------------------------------------------------------------------- the WebUI's Lora


def _host_with_checkpoint(webui_host_factory, checkpoint):
    """An A1111 host double whose loaded model is `checkpoint` (linked into models/Stable-diffusion)."""
    host = webui_host_factory()
    link = host.root / "models" / "Stable-diffusion" / checkpoint.name
    os.symlink(checkpoint, link)
    from modules import sd_models, shared

    sd_models.list_models()
    sd_models.load_model(sd_models.checkpoint_aliases[checkpoint.name])
    assert shared.sd_model.sd_checkpoint_info.filename == str(link)
    return host


def _load_through_double(host, lora_path, caplog):
    """networks.load_network on the exported file; the 'didn't match keys' log lines it wrote."""
    host.add_lora(lora_path.name, lora_path.read_bytes())
    import networks

    networks.list_available_networks()
    on_disk = networks.available_networks[lora_path.stem]
    with caplog.at_level(logging.DEBUG):
        caplog.clear()
        net = networks.load_network(lora_path.stem, on_disk)
    unmatched = [r.getMessage() for r in caplog.records if "didn't match keys" in r.getMessage()]
    return net, on_disk, unmatched


def _apply_through_double(net):
    """What one generation with <lora:name:0.7:0.5> adds to each layer (network_apply_weights on every layer)."""
    import networks
    from modules import shared

    net.te_multiplier, net.unet_multiplier = TE_MULTIPLIER, UNET_MULTIPLIER
    networks.loaded_networks[:] = [net]
    networks.extra_network_lora.errors.clear()
    updates = networks.apply_to_all_layers(shared.sd_model)
    return updates, dict(networks.extra_network_lora.errors)


def _checkpoint_tensor(checkpoint, layer, param):
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as f:
        return f.get_tensor(layer.sources[param])


def _check_every_module(models, weights, net, updates, checkpoint, family):
    """Each of our modules matched the layer that holds its base weight, and the update there is multiplier * ΔW."""
    for key, module in weights.items():
        prefix, _, path = key.partition(".")
        base = models[prefix].get_submodule(path).weight.detach()
        multiplier = UNET_MULTIPLIER if prefix == "unet" else TE_MULTIPLIER
        expected = module.delta() * multiplier
        matched = [m for m in net.modules.values() if m.network_key.startswith(L.kohya_name(key, family) + ".")]
        assert len(matched) == 1, key
        layer = matched[0].sd_module
        if layer.type_name == "MultiheadAttention":  # te2 q/k/v: rows of the stacked in_proj
            part = path.rsplit(".", 1)[-1]
            row = ("q_proj", "k_proj", "v_proj").index(part)
            stacked = _checkpoint_tensor(checkpoint, layer, "in_proj_weight")
            assert torch.equal(stacked.chunk(3, 0)[row], base), key
            got = updates[layer.network_layer_name]["in_proj_weight"].chunk(3, 0)[row]
        else:
            assert torch.equal(_checkpoint_tensor(checkpoint, layer, "weight"), base), key
            name = layer.network_layer_name
            if not layer.runs_forward:  # a MultiheadAttention's out_proj: updated through the MHA
                name, param = name[: -len("_out_proj")], "out_proj.weight"
            else:
                param = "weight"
            got = updates[name][param]
        torch.testing.assert_close(got, expected.reshape(got.shape), rtol=0, atol=1e-6, msg=key)


def test_sdxl_export_maps_onto_the_sgm_checkpoint_in_the_webui(
    webui_host_factory, sdxl, tiny_sdxl_single_file, tmp_path, caplog
):
    host = _host_with_checkpoint(webui_host_factory, tiny_sdxl_single_file)
    path = L.save_lora(tmp_path / "alice.safetensors", sdxl["weights"], dtype=torch.float32)
    net, on_disk, unmatched = _load_through_double(host, path, caplog)
    import network

    assert on_disk.sd_version == network.SdVersion.SDXL
    assert unmatched == []
    assert len(net.modules) == len(sdxl["weights"])
    te2_attention = {k: m for k, m in net.modules.items() if k.startswith("1_model_transformer_resblocks_0_attn")}
    assert {k: m.sd_module.type_name for k, m in te2_attention.items()} == {
        "1_model_transformer_resblocks_0_attn_q_proj": "MultiheadAttention",  # via the re_x_proj fallback
        "1_model_transformer_resblocks_0_attn_k_proj": "MultiheadAttention",
        "1_model_transformer_resblocks_0_attn_v_proj": "MultiheadAttention",
        "1_model_transformer_resblocks_0_attn_out_proj": "NonDynamicallyQuantizableLinear",
    }
    assert "0_transformer_text_model_encoder_layers_1_mlp_fc2" in net.modules  # te1 via the lora_te1 fallback
    assert "1_model_transformer_resblocks_1_mlp_c_fc" in net.modules
    assert "diffusion_model_input_blocks_4_1_transformer_blocks_1_attn2_to_k" in net.modules

    updates, errors = _apply_through_double(net)
    assert errors == {}
    # every module updates one layer, except te2's q, k, v and out_proj, which update one MultiheadAttention
    assert len(updates) == len(sdxl["weights"]) - 3 * 2
    _check_every_module(sdxl["models"], sdxl["weights"], net, updates, tiny_sdxl_single_file, "sdxl")


def test_te2_attention_loras_need_all_four_projections_in_the_webui(
    webui_host_factory, sdxl, tiny_sdxl_single_file, tmp_path, caplog
):
    """A1111 attaches te2's q/k/v LoRAs to the MultiheadAttention only with out_proj there too; without it they are
    dropped silently, so our files refuse to be written that way."""
    partial = {k: m for k, m in sdxl["weights"].items() if not k.endswith("layers.0.self_attn.out_proj")}
    with pytest.raises(L.LoraFormatError, match="layers.0.self_attn lacks out_proj") as caught:
        L.save_lora(tmp_path / "partial.safetensors", partial)
    assert "all four" in caught.value.hint
    host = _host_with_checkpoint(webui_host_factory, tiny_sdxl_single_file)
    path = tmp_path / "partial.safetensors"  # written past the check, as another trainer could
    tensors = L.lora_state_dict(sdxl["weights"], torch.float32, family="sdxl")
    save_file({k: v for k, v in tensors.items() if "lora_te2_text_model_encoder_layers_0_self_attn_out_proj" not in k},
              str(path))  # fmt: skip
    net, _, unmatched = _load_through_double(host, path, caplog)
    assert unmatched == [] and "1_model_transformer_resblocks_0_attn_q_proj" in net.modules
    updates, errors = _apply_through_double(net)
    assert "1_model_transformer_resblocks_0_attn" not in updates and errors == {}  # dropped, and no error either
    assert "1_model_transformer_resblocks_1_attn" in updates


def test_sd15_export_maps_onto_the_ldm_checkpoint_in_the_webui(
    webui_host_factory, tiny_sd_dir, tiny_single_file, tmp_path, caplog
):
    models = _sd15_models(tiny_sd_dir)
    weights = _random_lora(models, seed=3)
    host = _host_with_checkpoint(webui_host_factory, tiny_single_file)
    path = L.save_lora(tmp_path / "bob.safetensors", weights, dtype=torch.float32)
    net, on_disk, unmatched = _load_through_double(host, path, caplog)
    import network

    assert on_disk.sd_version == network.SdVersion.SD1 and unmatched == []
    assert len(net.modules) == len(weights)
    proj_in = net.modules["diffusion_model_input_blocks_1_1_proj_in"]
    assert proj_in.sd_module.type_name == "Conv2d" and proj_in.down_model.dim() == 4
    assert net.modules["transformer_text_model_encoder_layers_0_self_attn_q_proj"].sd_module.type_name == "Linear"
    updates, errors = _apply_through_double(net)
    assert errors == {} and len(updates) == len(weights)
    _check_every_module(models, weights, net, updates, tiny_single_file, "sd15")


def test_an_sd15_lora_on_an_sdxl_checkpoint_fails_like_in_the_webui(
    webui_host_factory, tiny_sd_dir, tiny_sdxl_single_file, tmp_path, caplog
):
    """Unknown layers are left out with the host's DEBUG line; layers of another width count as errors."""
    weights = _random_lora(_sd15_models(tiny_sd_dir), seed=5)
    host = _host_with_checkpoint(webui_host_factory, tiny_sdxl_single_file)
    path = L.save_lora(tmp_path / "sd15.safetensors", weights, dtype=torch.float32)
    net, _, unmatched = _load_through_double(host, path, caplog)
    assert len(unmatched) == 1 and unmatched[0].startswith(f"Network {host.root / 'models' / 'Lora' / path.name}")
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in unmatched[0]
    assert "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight" in unmatched[0]  # no attention there
    # the middle block exists in both: its self-attention (64 wide) fits, its cross-attention (context 32 vs 80)
    # does not, which the real host finds only when it patches the layer (a RuntimeError counted per network)
    assert "diffusion_model_middle_block_1_transformer_blocks_0_attn2_to_k" in net.modules
    updates, errors = _apply_through_double(net)
    assert "diffusion_model_middle_block_1_transformer_blocks_0_attn1_to_k" in updates
    assert "diffusion_model_middle_block_1_transformer_blocks_0_attn2_to_k" not in updates
    assert errors == {"sd15": 2}  # attn2.to_k and attn2.to_v (the SD 1.5 middle block has one transformer block)


# ---------------------------------------------------------------------------------------------- diffusers


def _sdxl_unet_out(unet, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn((1, 4, 8, 8), generator=generator)
    context = torch.randn((1, 77, 80), generator=generator)
    added = {"text_embeds": torch.randn((1, 48), generator=generator),
             "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}  # fmt: skip
    with torch.no_grad():
        return unet(sample, torch.tensor([500]), encoder_hidden_states=context, added_cond_kwargs=added).sample


def _text_out(text, seed=0):
    ids = torch.randint(0, 49408, (1, 77), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return text(ids, output_hidden_states=True).hidden_states[-2]


def test_diffusers_sdxl_loader_reads_the_export(sdxl, tiny_sdxl_dir, tmp_path):
    """diffusers' SDXL kohya loader agrees with the WebUI-style merge on all three models (needs its PEFT backend)."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import USE_PEFT_BACKEND

    path = L.save_lora(tmp_path / "alice.safetensors", sdxl["weights"], dtype=torch.float32)
    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_dir), local_files_only=True)
    if not USE_PEFT_BACKEND:  # diffusers 0.31 wants transformers >= 4.34 for it (the A1111 pin is 4.30.2)
        with pytest.raises(ValueError, match="PEFT backend is required"):
            pipe.load_lora_weights(str(path))
        pytest.skip("diffusers' PEFT backend is off here (transformers < 4.34): load_lora_weights refuses LoRAs")
    pipe.load_lora_weights(str(path.parent), weight_name=path.name)
    weights, _ = L.load_lora(path)
    baked = _sdxl_models(tiny_sdxl_dir)
    for prefix, model in baked.items():
        L.apply_webui_style(model, prefix, weights)
    torch.testing.assert_close(_sdxl_unet_out(pipe.unet), _sdxl_unet_out(baked["unet"]), rtol=0, atol=1e-5)
    for prefix in ("text_encoder", "text_encoder_2"):
        torch.testing.assert_close(_text_out(getattr(pipe, prefix)), _text_out(baked[prefix]), rtol=0, atol=1e-5)
    # the LoRA changed the outputs (the comparison above is not between two untouched models)
    assert not torch.allclose(_sdxl_unet_out(pipe.unet), _sdxl_unet_out(sdxl["models"]["unet"]), atol=1e-4)
