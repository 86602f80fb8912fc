"""LoRA file format, WebUI-style application (easyphoto.sd.lora), the peft bridge (easyphoto.train.lora) and
checkpoint merging (easyphoto.train.merge).

The models are the kit's tiny SD 1.5 (same module names and layer types as SD 1.5, random weights), so every
module key, kohya name and shape here is the one a real SD 1.5 LoRA has; only the sizes are small.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from tests.conftest import require_module

torch = require_module("torch")
require_module("diffusers")
peft = require_module("peft")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from easyphoto.sd import lora as L  # noqa: E402
from easyphoto.train.lora import from_peft, load_into_peft  # noqa: E402
from easyphoto.train.merge import low_rank_svd, merge_weighted, normalise_weights, score_weights  # noqa: E402
from tests.kit.tiny_sd import torch_threads  # noqa: E402

RANK, ALPHA = 4, 2.0


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _load_unet(tiny_sd_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(tiny_sd_dir / "unet"), local_files_only=True).eval()


def _load_text_encoder(tiny_sd_dir):
    from transformers import CLIPTextModel

    return CLIPTextModel.from_pretrained(str(tiny_sd_dir / "text_encoder"), local_files_only=True).eval()


def _inject(model, targets, seed):
    """peft LoRA (rank 4, alpha 2) with random non-zero A and B, so that ΔW ≠ 0."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(targets), init_lora_weights=True)
    model = inject_adapter_in_model(config, model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def models(tiny_sd_dir):
    """Base UNet/text encoder, the same with a peft LoRA, and the LoRA read from them."""
    with torch_threads(1):
        unet, text = _load_unet(tiny_sd_dir), _load_text_encoder(tiny_sd_dir)
        peft_unet = _inject(_load_unet(tiny_sd_dir), L.UNET_TARGETS, seed=1)
        peft_text = _inject(_load_text_encoder(tiny_sd_dir), L.TEXT_TARGETS, seed=2)
        weights = {**from_peft(peft_unet, "unet", ALPHA), **from_peft(peft_text, "text_encoder", ALPHA)}
    return {"unet": unet, "text": text, "peft_unet": peft_unet, "peft_text": peft_text, "weights": weights}


def _unet_inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 4, 8, 8, generator=generator)
    states = torch.randn(2, 77, 32, generator=generator)
    return sample, torch.tensor([10, 700]), states


def _unet_out(unet, inputs):
    with torch.no_grad():
        return unet(inputs[0], inputs[1], encoder_hidden_states=inputs[2]).sample


def _text_out(text, ids):
    with torch.no_grad():
        return text(ids)[0]


def _token_ids(seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 49406, (2, 77), generator=generator)
    ids[:, 0], ids[:, -1] = 49406, 49407
    return ids


# ---------------------------------------------------------------------------------------------- names and keys


def test_kohya_names():
    assert L.kohya_name("unet.down_blocks.0.attentions.0.proj_in") == "lora_unet_down_blocks_0_attentions_0_proj_in"
    assert (
        L.kohya_name("text_encoder.text_model.encoder.layers.0.self_attn.q_proj")
        == "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    )
    with pytest.raises(L.LoraFormatError):
        L.kohya_name("vae.encoder.conv_in")


def test_module_keys_cover_sd15_like_the_reference_log():
    """Full-size SD 1.5 (built on the meta device): "Text Encoder: 72 modules ... U-Net: 192 modules"."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(cross_attention_dim=768)
        text = CLIPTextModel(CLIPTextConfig())
    unet_keys = L.module_keys(unet, "unet", L.UNET_TARGETS)
    text_keys = L.module_keys(text, "text_encoder", L.TEXT_TARGETS)
    assert (len(unet_keys), len(text_keys)) == (192, 72)
    # Without metadata, kohya names are decoded back with the SD 1.5 vocabulary.
    assert all(L.guess_module_key(L.kohya_name(k)) == k for k in unet_keys + text_keys)


def test_from_peft_reads_every_injected_layer(models):
    weights = models["weights"]
    unet_keys = L.module_keys(models["unet"], "unet", L.UNET_TARGETS)
    text_keys = L.module_keys(models["text"], "text_encoder", L.TEXT_TARGETS)
    assert sorted(weights) == sorted(unet_keys + text_keys)
    # module_keys gives the same keys on the peft-wrapped models (the wrapper, not its base_layer or lora_A).
    assert L.module_keys(models["peft_unet"], "unet", L.UNET_TARGETS) == unet_keys
    assert len(unet_keys) == 6 * 12 and len(text_keys) == 2 * 6
    proj_in = weights["unet.down_blocks.0.attentions.0.proj_in"]  # a 1x1 conv in SD 1.5 (use_linear_projection off)
    assert proj_in.down.shape == (RANK, 32, 1, 1) and proj_in.up.shape == (32, RANK, 1, 1)
    assert proj_in.delta().shape == models["unet"].down_blocks[0].attentions[0].proj_in.weight.shape
    q_key = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
    q = weights[q_key]
    assert q.down.shape == (RANK, 32) and q.up.shape == (32, RANK) and q.rank == RANK and q.alpha == ALPHA
    assert all(m.delta().abs().max() > 0 for m in weights.values())
    with pytest.raises(L.LoraFormatError, match="scales by"):
        from_peft(models["peft_text"], "text_encoder", alpha=8.0)
    assert from_peft(models["peft_text"], "text_encoder")[q_key].alpha == ALPHA  # alpha read from the layers
    assert L.describe(weights) == "84 modules (text_encoder 12, unet 72), rank 4"


def test_load_into_peft_is_an_exact_copy(models, tiny_sd_dir):
    target = _inject(_load_text_encoder(tiny_sd_dir), L.TEXT_TARGETS, seed=99)
    load_into_peft(target, "text_encoder", models["weights"])
    back = from_peft(target, "text_encoder", ALPHA)
    for key, module in back.items():
        assert torch.equal(module.down, models["weights"][key].down)
        assert torch.equal(module.up, models["weights"][key].up)
    ids = _token_ids()
    assert torch.equal(_text_out(target, ids), _text_out(models["peft_text"], ids))
    partial = {k: v for k, v in models["weights"].items() if not k.endswith("fc1")}
    with pytest.raises(L.LoraFormatError, match="do not fit"):
        load_into_peft(target, "text_encoder", partial)


# ---------------------------------------------------------------------------------------------- the file


def test_save_load_roundtrip_is_exact_in_float32(models, tmp_path):
    weights = models["weights"]
    path = L.save_lora(tmp_path / "alice.safetensors", weights, {"ss_steps": "800"}, dtype=torch.float32)
    loaded, metadata = L.load_lora(path)
    assert sorted(loaded) == sorted(weights)
    for key, module in weights.items():
        assert torch.equal(loaded[key].down, module.down) and torch.equal(loaded[key].up, module.up)
        assert loaded[key].alpha == module.alpha
    assert metadata["ss_network_module"] == "networks.lora"
    assert (metadata["ss_network_dim"], metadata["ss_network_alpha"]) == ("4", "2")
    assert metadata["ss_base_model_version"] == "sd_v1" and metadata["ss_output_name"] == "alice"
    assert metadata["ss_steps"] == "800" and metadata["easyphoto_version"]
    assert sorted(json.loads(metadata["easyphoto_modules"])) == sorted(weights)


def test_exported_file_has_exactly_the_kohya_keys(models, tmp_path):
    weights = models["weights"]
    path = L.save_lora(tmp_path / "alice.safetensors", weights, {"ss_sd_model_hash": "abc"})
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        tensors = {k: f.get_tensor(k) for k in keys}
    expected = {L.kohya_name(k) + s for k in weights for s in (".lora_down.weight", ".lora_up.weight", ".alpha")}
    assert keys == expected and len(keys) == 3 * len(weights)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight" in keys
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj.lora_down.weight" in keys
    assert "lora_te_text_model_encoder_layers_1_mlp_fc2.alpha" in keys
    assert all(t.dtype == torch.float16 for t in tensors.values())  # the export default
    assert all(t.dim() == 0 for k, t in tensors.items() if k.endswith(".alpha"))
    assert tensors["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"].shape == (RANK, 32, 1, 1)
    # fp16 export loads back as float32 with fp16 precision.
    loaded, _ = L.load_lora(path)
    key = "unet.up_blocks.1.attentions.2.proj_out"
    assert loaded[key].down.dtype == torch.float32
    torch.testing.assert_close(loaded[key].delta(), weights[key].delta(), rtol=1e-2, atol=1e-4)


def test_files_from_other_trainers_load_without_our_metadata(models, tmp_path):
    """No easyphoto_modules (a kohya/WebUI file): names decode via the vocabulary or the model's keys."""
    weights = models["weights"]
    plain = tmp_path / "kohya.safetensors"
    tensors = L.lora_state_dict(weights, torch.float32)
    tensors.pop("lora_te_text_model_encoder_layers_0_mlp_fc1.alpha")  # alpha is optional: scale 1
    save_file(tensors, str(plain), metadata={"ss_network_dim": "4"})
    loaded, _ = L.load_lora(plain)
    assert sorted(loaded) == sorted(weights)
    assert loaded["text_encoder.text_model.encoder.layers.0.mlp.fc1"].alpha == RANK
    keys = L.module_keys(models["unet"], "unet", L.UNET_TARGETS)
    by_model, _ = L.load_lora(plain, keys=keys)
    assert sorted(by_model) == sorted(weights)
    save_file({"lora_unet_x.hada_w1_a": torch.zeros(1)}, str(tmp_path / "loha.safetensors"))
    with pytest.raises(L.LoraFormatError, match="LoHa"):
        L.load_lora(tmp_path / "loha.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(L.LoraFormatError, match="not a readable"):
        L.load_lora(tmp_path / "junk.safetensors")


def test_metadata_must_be_strings(models, tmp_path):
    with pytest.raises(L.LoraFormatError, match="str"):
        L.save_lora(tmp_path / "a.safetensors", models["weights"], {"ss_steps": 800})
    assert not (tmp_path / "a.safetensors").exists()


def test_a_lora_easyphoto_did_not_write_is_never_overwritten(models, tmp_path):
    """An identity named like a community LoRA in the shared Lora folder: the export refuses, the file stays."""
    from easyphoto.store import ForeignLoraFile, is_easyphoto_lora

    community = tmp_path / "alice.safetensors"
    save_file(L.lora_state_dict(models["weights"], torch.float16), str(community),
              metadata={"ss_network_dim": "4", "ss_output_name": "alice"})  # kohya ss_* keys, none of ours
    before = community.read_bytes()
    with pytest.raises(ForeignLoraFile, match="must be renamed"):
        L.save_lora(community, models["weights"])
    assert community.read_bytes() == before
    ours = L.save_lora(tmp_path / "bob.safetensors", models["weights"])
    assert is_easyphoto_lora(ours)
    L.save_lora(ours, models["weights"], {"ss_steps": "2"})  # our own file is replaced as before
    assert L.read_lora_metadata(ours)["ss_steps"] == "2"


@pytest.mark.parametrize("previous", [False, True])
def test_interrupted_export_leaves_no_partial_file(models, tmp_path, monkeypatch, previous):
    import safetensors.torch

    target = tmp_path / "lora" / "alice.safetensors"
    if previous:
        L.save_lora(target, models["weights"], dtype=torch.float32)
    before = target.read_bytes() if previous else None

    def crash(tensors, filename, metadata=None):
        data = safetensors.torch.save(tensors, metadata=metadata)
        with open(filename, "wb") as f:
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        L.save_lora(target, models["weights"])
    assert sorted(p.name for p in target.parent.iterdir()) == (["alice.safetensors"] if previous else [])
    if previous:
        assert target.read_bytes() == before
        L.load_lora(target)


# ---------------------------------------------------------------------------------------------- applying it


def test_webui_style_merge_reproduces_the_peft_model(models, tiny_sd_dir, tmp_path):
    """W += up@down·alpha/rank (what the WebUI's Lora does) gives the peft LoRA model's outputs."""
    path = L.save_lora(tmp_path / "alice.safetensors", models["weights"], dtype=torch.float32)
    weights, _ = L.load_lora(path)
    unet, text = _load_unet(tiny_sd_dir), _load_text_encoder(tiny_sd_dir)
    inputs, ids = _unet_inputs(), _token_ids()
    base_unet, base_text = _unet_out(unet, inputs), _text_out(text, ids)
    L.apply_webui_style(unet, "unet", weights)
    L.apply_webui_style(text, "text_encoder", weights)
    lora_unet, lora_text = _unet_out(models["peft_unet"], inputs), _text_out(models["peft_text"], ids)
    assert (lora_unet - base_unet).abs().max() > 1e-3  # the LoRA really changes the outputs
    torch.testing.assert_close(_unet_out(unet, inputs), lora_unet, rtol=0, atol=1e-5)
    torch.testing.assert_close(_text_out(text, ids), lora_text, rtol=0, atol=1e-5)
    # unapply restores the base model; a multiplier scales ΔW.
    L.unapply_webui_style(unet, "unet", weights)
    torch.testing.assert_close(_unet_out(unet, inputs), base_unet, rtol=0, atol=1e-5)
    L.apply_webui_style(text, "text_encoder", weights, multiplier=-1.0)
    torch.testing.assert_close(_text_out(text, ids), base_text, rtol=0, atol=1e-5)
    # Applying onto a peft-wrapped model patches its base layer.
    wrapped = _inject(_load_text_encoder(tiny_sd_dir), L.TEXT_TARGETS, seed=5)
    before = wrapped.text_model.encoder.layers[0].mlp.fc1.base_layer.weight.clone()
    L.apply_webui_style(wrapped, "text_encoder", weights, multiplier=0.5)
    after = wrapped.text_model.encoder.layers[0].mlp.fc1.base_layer.weight
    delta = weights["text_encoder.text_model.encoder.layers.0.mlp.fc1"].delta()
    torch.testing.assert_close(after - before, 0.5 * delta, rtol=0, atol=1e-6)
    with pytest.raises(L.LoraFormatError, match="no module"):
        L.apply_webui_style(unet, "text_encoder", {"text_encoder.nope.q_proj": weights[next(iter(weights))]})


def test_diffusers_load_lora_weights_reads_the_export(models, tiny_sd_dir, tmp_path):
    """diffusers' own kohya loader agrees with the WebUI-style merge (needs diffusers' PEFT backend)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import USE_PEFT_BACKEND

    path = L.save_lora(tmp_path / "alice.safetensors", models["weights"], dtype=torch.float32)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None, local_files_only=True)
    if not USE_PEFT_BACKEND:  # diffusers 0.31 wants transformers >= 4.34 for it (the A1111 pin is 4.30.2)
        with pytest.raises(ValueError, match="PEFT backend is required"):
            pipe.load_lora_weights(str(path))
        pytest.skip("diffusers' PEFT backend is off here (transformers < 4.34): load_lora_weights refuses LoRAs")
    # folder + weight_name: works whether or not diffusers captured hub offline mode at import (an earlier test may
    # have imported it while offline; diffusers binds HF_HUB_OFFLINE once)
    pipe.load_lora_weights(str(path.parent), weight_name=path.name)
    weights, _ = L.load_lora(path)
    unet, text = _load_unet(tiny_sd_dir), _load_text_encoder(tiny_sd_dir)
    L.apply_webui_style(unet, "unet", weights)
    L.apply_webui_style(text, "text_encoder", weights)
    inputs, ids = _unet_inputs(), _token_ids()
    torch.testing.assert_close(_unet_out(pipe.unet, inputs), _unet_out(unet, inputs), rtol=0, atol=1e-5)
    torch.testing.assert_close(_text_out(pipe.text_encoder, ids), _text_out(text, ids), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- merging


def _random_lora(seed, rank, alpha, shapes):
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key, (out, inp, conv) in shapes.items():
        down_shape, up_shape = ((rank, inp, 1, 1), (out, rank, 1, 1)) if conv else ((rank, inp), (out, rank))
        weights[key] = L.LoraModule(
            down=torch.randn(down_shape, generator=generator), up=torch.randn(up_shape, generator=generator),
            alpha=alpha,
        )  # fmt: skip
    return weights


SHAPES = {"unet.a.to_q": (24, 16, False), "unet.a.proj_in": (20, 12, True), "text_encoder.b.fc1": (8, 30, False)}


def _expected(checkpoints, weights):
    norm = normalise_weights(weights)
    return {k: sum(w * c[k].delta().double() for c, w in zip(checkpoints, norm, strict=True)) for k in SHAPES}


@pytest.mark.parametrize("w", [0.3, 0.5, 0.9])
def test_merge_is_the_weighted_mean_of_weight_changes(w):
    one, two = _random_lora(1, 4, 2.0, SHAPES), _random_lora(2, 3, 3.0, SHAPES)
    expected = _expected([one, two], [w, 1 - w])
    svd = merge_weighted([one, two], [w, 1 - w], rank=7)
    concat = merge_weighted([one, two], [w, 1 - w], rank=1, method="concat")
    for key, target in expected.items():
        scale = target.abs().max().item()
        torch.testing.assert_close(svd[key].delta().double(), target, rtol=0, atol=1e-5 * scale)
        torch.testing.assert_close(concat[key].delta().double(), target, rtol=0, atol=1e-6 * scale)
        assert svd[key].rank == 7 and svd[key].alpha == 7 and concat[key].rank == 7
        assert svd[key].down.dtype == torch.float32 and svd[key].delta().shape == one[key].delta().shape
    # The reference's tensor-by-tensor average is something else entirely.
    naive = (w * one["unet.a.to_q"].up[:, :3] + (1 - w) * two["unet.a.to_q"].up) @ (
        w * one["unet.a.to_q"].down[:3] + (1 - w) * two["unet.a.to_q"].down
    )
    assert (naive.double() - expected["unet.a.to_q"]).abs().max() > 0.1


def test_svd_truncation_is_the_best_rank_k_approximation():
    one, two = _random_lora(3, 4, 4.0, SHAPES), _random_lora(4, 4, 1.0, SHAPES)
    expected = _expected([one, two], [0.6, 0.4])
    for k in (1, 3, 5):
        merged = merge_weighted([one, two], [0.6, 0.4], rank=k)
        for key, target in expected.items():
            flat = target.reshape(target.shape[0], -1)
            sigma = torch.linalg.svdvals(flat)
            error = (merged[key].delta().double().reshape(flat.shape) - flat)
            scale = sigma[0].item()
            assert math.isclose(torch.linalg.matrix_norm(error, ord=2).item(), sigma[k].item(), abs_tol=1e-5 * scale)
            frobenius = torch.linalg.matrix_norm(error).item()
            assert math.isclose(frobenius, sigma[k:].square().sum().sqrt().item(), rel_tol=1e-5, abs_tol=1e-5 * scale)


def test_merge_details():
    one, two = _random_lora(5, 4, 2.0, SHAPES), _random_lora(6, 4, 2.0, SHAPES)
    # Weights are normalised; zero-weight checkpoints do not count; a module missing from one counts as ΔW = 0.
    a = merge_weighted([one, two], [2.0, 2.0], rank=8)
    b = merge_weighted([one, two], [0.5, 0.5], rank=8)
    assert all(torch.allclose(a[k].delta(), b[k].delta(), atol=1e-6) for k in SHAPES)
    only = merge_weighted([one, two], [1.0, 0.0], rank=8, method="concat")
    assert only["unet.a.to_q"].rank == 4
    torch.testing.assert_close(only["unet.a.to_q"].delta(), one["unet.a.to_q"].delta(), rtol=1e-5, atol=1e-5)
    partial = {k: v for k, v in two.items() if k != "text_encoder.b.fc1"}
    merged = merge_weighted([one, partial], [0.25, 0.75], rank=8)
    torch.testing.assert_close(
        merged["text_encoder.b.fc1"].delta(), 0.25 * one["text_encoder.b.fc1"].delta(), rtol=1e-5, atol=1e-5
    )
    # A rank budget above the matrix's own rank is zero-padded: one rank per file.
    big = merge_weighted([one, two], [0.5, 0.5], rank=40)
    assert {m.rank for m in big.values()} == {40}
    # The low-rank SVD matches a dense one.
    x, y = torch.randn(30, 5, dtype=torch.float64), torch.randn(5, 40, dtype=torch.float64)
    _, s, _ = low_rank_svd(x, y)
    torch.testing.assert_close(s, torch.linalg.svdvals(x @ y)[:5])
    x, y = torch.randn(6, 10, dtype=torch.float64), torch.randn(10, 8, dtype=torch.float64)  # dense branch
    u, s, vh = low_rank_svd(x, y)
    torch.testing.assert_close((u * s) @ vh, x @ y)
    for bad in ([[one], [1.0, 2.0]], [[one], [-1.0]], [[one], [0.0]]):
        with pytest.raises(ValueError):
            merge_weighted(*bad, rank=4)
    with pytest.raises(ValueError, match="method"):
        merge_weighted([one], [1.0], rank=4, method="mean")
    mismatched = _random_lora(7, 4, 2.0, {**SHAPES, "unet.a.to_q": (24, 17, False)})
    with pytest.raises(ValueError, match="shape"):
        merge_weighted([one, mismatched], [0.5, 0.5], rank=4)


def test_merged_lora_saves_and_applies(models, tiny_sd_dir, tmp_path):
    """End to end: two checkpoints -> SVD merge -> export -> WebUI-style apply = weighted ΔW in the model."""
    first = models["weights"]
    second = {k: L.LoraModule(down=m.down.flip(0), up=-m.up, alpha=m.alpha) for k, m in first.items()}
    merged = merge_weighted([first, second], [0.7, 0.3], rank=2 * RANK)
    path = L.save_lora(tmp_path / "merged.safetensors", merged, {"easyphoto_merge": "svd"}, dtype=torch.float32)
    loaded, metadata = L.load_lora(path)
    assert metadata["ss_network_dim"] == metadata["ss_network_alpha"] == str(2 * RANK)
    text = _load_text_encoder(tiny_sd_dir)
    key = "text_encoder.text_model.encoder.layers.1.self_attn.out_proj"
    before = text.text_model.encoder.layers[1].self_attn.out_proj.weight.clone()
    L.apply_webui_style(text, "text_encoder", loaded)
    change = text.text_model.encoder.layers[1].self_attn.out_proj.weight - before
    torch.testing.assert_close(change, 0.7 * first[key].delta() + 0.3 * second[key].delta(), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- score weights


def _check_weights(weights, n):
    assert len(weights) == n and all(w >= 0 for w in weights) and math.isclose(sum(weights), 1.0)


def test_score_weights_examples():
    assert score_weights([0.5, 0.6, 0.7]) == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert score_weights([0.5, 0.5, 0.5]) == pytest.approx([1 / 3] * 3)
    assert score_weights([0.9]) == [1.0]
    # top 2 of 4: baseline is the best dropped score (0.6)
    assert score_weights([0.6, 0.8, 0.7, 0.2], top_k=2) == pytest.approx([0.0, 2 / 3, 1 / 3, 0.0])
    # NaN (no face in the validation image) gets nothing; all NaN -> uniform
    assert score_weights([float("nan"), 0.4, 0.6]) == pytest.approx([0.0, 0.0, 1.0])
    assert score_weights([float("nan")] * 2) == [0.5, 0.5]
    # ties at the cut go to the later checkpoint; equal kept scores share
    assert score_weights([0.7, 0.7, 0.7], top_k=2) == pytest.approx([0.0, 0.5, 0.5])
    with pytest.raises(ValueError):
        score_weights([])
    with pytest.raises(ValueError):
        score_weights([0.1], top_k=0)


def test_score_weights_properties():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 12)
        scores = [rng.choice([rng.uniform(-1, 1), round(rng.uniform(0, 1), 1)]) for _ in range(n)]
        top_k = rng.choice([None, *range(1, n + 2)])
        weights = score_weights(scores, top_k)
        _check_weights(weights, n)
        assert sum(w > 0 for w in weights) <= (top_k or n)
        for i in range(n):  # monotone
            for j in range(n):
                if scores[i] > scores[j]:
                    assert weights[i] >= weights[j] - 1e-12
        shifted = score_weights([3.0 * s + 0.25 for s in scores], top_k)  # affine invariance
        assert shifted == pytest.approx(weights, abs=1e-9)
        if n > 1 and len(set(scores)) > 1 and top_k is None:
            assert weights[min(range(n), key=lambda i: (scores[i], -i))] == 0.0  # the worst gets nothing
