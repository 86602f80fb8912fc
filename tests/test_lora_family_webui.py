"""Inside the WebUI, a LoRA of the other family than the selected checkpoint is refused before generating: the host's
Lora would match none of its keys, only log it, and render without the identity (both double flavours)."""

import pytest

from easyphoto.backends.webui import WebUIGenerator
from easyphoto.generation import GenerationError, LoraRef
from easyphoto.sd.family import lora_file_family
from tests.host.harness import safetensors_bytes
from tests.test_identity_modes import SDXL_CHECKPOINT, host, module_host, request, select  # noqa: F401 - fixtures


@pytest.mark.parametrize("checkpoint, lora_version, refused", [
    (SDXL_CHECKPOINT, "sd_v1", True),
    ("v1-5-pruned-emaonly.safetensors", "sdxl_base_v1-0", True),
    (SDXL_CHECKPOINT, "sdxl_base_v1-0", False),
    ("v1-5-pruned-emaonly.safetensors", "sd_v1", False),
])
def test_a_lora_of_the_other_family_is_refused_before_generating(host, monkeypatch, checkpoint, lora_version,  # noqa: F811
                                                                 refused):
    from modules import processing

    path = host.add_lora("zoe.safetensors", safetensors_bytes({"ss_output_name": "zoe",
                                                               "ss_base_model_version": lora_version}))
    assert lora_file_family(path) == ("sdxl" if lora_version.startswith("sdxl") else "sd15")
    select(monkeypatch, checkpoint)
    req = request(("canny",))
    req.loras = [LoraRef("zoe", 0.9, path)]
    if refused:
        with pytest.raises(GenerationError, match="was trained for") as info:
            WebUIGenerator().inpaint(req)
        assert "zoe" in info.value.message and "checkpoint" in info.value.hint
        assert processing.calls == []
    else:
        WebUIGenerator().inpaint(req)
        [call] = processing.calls
        assert "<lora:zoe:0.9>" in call.p.prompt


def test_the_family_of_lora_files_without_metadata_comes_from_their_names(tmp_path):
    import torch
    from safetensors.torch import save_file

    cases = {"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": "sdxl",
             "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": "sd15",
             "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": None}
    for i, (name, family) in enumerate(cases.items()):
        path = tmp_path / f"{i}.safetensors"
        save_file({name: torch.zeros(2, 2)}, str(path))
        assert lora_file_family(path) == family, name
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    assert lora_file_family(tmp_path / "broken.safetensors") is None
