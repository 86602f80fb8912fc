"""Issue 17 against the WebUI double in both flavours: SDXL checkpoints get the SDXL ControlNets, and the training-free
identity methods (InstantID, IP-Adapter-FaceID, PuLID) reach the host's ControlNet as units with the host's own
preprocessor and model names and the reference face as their image; whatever is missing is named before anything
is generated. Also the standalone backend's refusal of those modes.

One host per flavour serves the module; each test puts back the files it removes.
"""

import json

import numpy as np
import pytest
from PIL import Image

from easyphoto.backends.webui import WebUIGenerator
from easyphoto.backends.webui.controlnet import controlnet_script
from easyphoto.generation import (
    CONTROLNET_MODELS,
    CONTROLNET_MODELS_SDXL,
    Control,
    GenerationError,
    IdentityControl,
    InpaintRequest,
)
from easyphoto.identity_modes import IDENTITY_MODELS
from tests.host.harness import WebUIHost, safetensors_bytes

W, H = 96, 64
BIG = b"\0" * 0x100000  # the legacy model hash reads from offset 1 MiB: distinct bytes after it, distinct hashes
SDXL_CHECKPOINT = "juggernaut_base.safetensors"  # nothing in the name says SDXL: the header does
FACEID_LORAS = [m.lora for spec in IDENTITY_MODELS.values() for m in spec.values() if m.lora]
# what each host's ControlNet calls the face preprocessors (read from the real sources, see controlnet.py)
MODULES = {
    "a1111": {"instantid": ["instant_id_face_embedding", "instant_id_face_keypoints"],
              "faceid": ["ip-adapter_face_id_plus"], "pulid": ["ip-adapter_pulid"]},
    "forge": {"instantid": ["InsightFace (InstantID)", "instant_id_face_keypoints"],
              "faceid": ["InsightFace+CLIP-H (IPAdapter)"]},
}


def sdxl_checkpoint_bytes() -> bytes:
    """A header-only SDXL single file: the tensor names the host's model-config detection reads, no data."""
    tensors = {"conditioner.embedders.1.model.ln_final.weight": {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]},
               "model.diffusion_model.input_blocks.0.0.weight": {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]}}
    header = json.dumps({"__metadata__": {"format": "pt"}, **tensors}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header


def identity_files() -> list[str]:
    stems = {s for spec in IDENTITY_MODELS.values() for m in spec.values() for s in m.units}
    return [f"{stem}.safetensors" for stem in sorted(stems)]


@pytest.fixture(scope="module", params=["a1111", "forge"])
def module_host(request, tmp_path_factory):
    host = WebUIHost(tmp_path_factory.mktemp(f"identity-{request.param}"), flavour=request.param)
    (host.root).mkdir(parents=True, exist_ok=True)
    (host.root / "config.json").write_text(json.dumps({"control_net_unit_count": 5}))  # pass 1 + two face units
    folder = host.root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    stems = [*CONTROLNET_MODELS.values(), *CONTROLNET_MODELS_SDXL.values()]
    for name in [f"{stem}.safetensors" for stem in stems] + identity_files():
        (folder / name).write_bytes(BIG + name.encode())
    for stem in FACEID_LORAS:
        host.add_lora(f"{stem}.safetensors")
    host.add_checkpoint(SDXL_CHECKPOINT, sdxl_checkpoint_bytes())
    yield host
    host.stop()


@pytest.fixture
def host(module_host, monkeypatch):
    module_host.start()
    from modules import sd_models

    sd_models.list_models()
    module_host.calls.clear()
    module_host.errors.clear()
    yield module_host


def select(monkeypatch, name: str) -> None:
    """The user's checkpoint selection (the dropdown), nothing loaded yet."""
    from modules import sd_models, shared

    monkeypatch.setitem(shared.opts.data, "sd_model_checkpoint", sd_models.get_closet_checkpoint_match(name).title)


def model_name(host, stem: str) -> str:
    from modules import sd_models

    path = host.root / "models" / "ControlNet" / f"{stem}.safetensors"
    return f"{stem} [{sd_models.model_hash(str(path))}]"


def face() -> Image.Image:
    pixels = np.zeros((80, 72, 3), np.uint8)
    pixels[20:60, 16:56] = (200, 150, 120)  # a recognisable picture: the unit must carry exactly these pixels
    return Image.fromarray(pixels)


def request(controls=("canny",), identity=None) -> InpaintRequest:
    image = Image.new("RGB", (W, H), (120, 90, 60))
    return InpaintRequest(prompt="a portrait", controls=[Control(k, image, 0.5) for k in controls], identity=identity,
                          steps=20, seed=5, sampler="DPM++ 2M", image=image, mask=Image.new("L", (W, H), 255),
                          denoising_strength=0.5, label="pass 1")


def sent_units(call) -> list:
    script = controlnet_script(call.p.scripts)
    return [u for u in call.script_args[script.args_from:script.args_to] if u.enabled]


def check_used_by_host(host, call, count: int) -> None:
    """The host's ControlNet processed every unit (it records each one) and swallowed no error."""
    assert host.errors == []
    assert [f"ControlNet {i}" in call.p.extra_generation_params for i in range(count)] == [True] * count


# ---------------------------------------------------------------------------------------------- SDXL checkpoints


def test_an_sdxl_checkpoint_gets_the_sdxl_controlnets(host, monkeypatch):
    from modules import processing

    select(monkeypatch, SDXL_CHECKPOINT)
    generator = WebUIGenerator()
    caps = generator.capabilities()
    assert caps.family == "sdxl" and set(caps.controls) == set(CONTROLNET_MODELS_SDXL)
    assert caps.controls["canny"] == model_name(host, "diffusers_xl_canny_mid")
    generator.inpaint(request(("canny", "openpose")))
    [call] = processing.calls
    assert [u.model for u in sent_units(call)] == [model_name(host, "diffusers_xl_canny_mid"),
                                                   model_name(host, "thibaud_xl_openpose_256lora")]
    check_used_by_host(host, call, 2)  # an SD 1.5 ControlNet on SDXL would have been dropped by the host
    from modules import shared

    assert shared.sd_model.is_sdxl is True  # the double's model agrees with the header we read

    with pytest.raises(GenerationError) as info:  # no SDXL tile model exists: said, not sent
        generator.inpaint(request(("canny", "tile")))
    assert "tile" in info.value.message and len(processing.calls) == 1


def test_an_sd15_checkpoint_keeps_the_sd15_controlnets(host, monkeypatch):
    from modules import processing

    select(monkeypatch, "v1-5-pruned-emaonly.safetensors")
    generator = WebUIGenerator()
    assert generator.capabilities().family == "sd15"
    generator.inpaint(request(("canny",)))
    [call] = processing.calls
    assert [u.model for u in sent_units(call)] == [model_name(host, "control_v11p_sd15_canny")]
    check_used_by_host(host, call, 1)


# ---------------------------------------------------------------------------------------------- training-free identity


@pytest.mark.parametrize("method, checkpoint", [("instantid", SDXL_CHECKPOINT), ("faceid", SDXL_CHECKPOINT),
                                                ("faceid", "v1-5-pruned-emaonly.safetensors"),
                                                ("pulid", SDXL_CHECKPOINT)])
def test_identity_units_carry_the_hosts_names_and_the_reference_face(host, monkeypatch, method, checkpoint):
    from modules import processing, shared

    select(monkeypatch, checkpoint)
    if host.flavour == "forge" and method == "pulid":
        return check_pulid_refused_on_forge()
    generator = WebUIGenerator()
    family = "sdxl" if checkpoint == SDXL_CHECKPOINT else "sd15"
    spec = IDENTITY_MODELS[method][family]
    assert generator.capabilities().identity[method] == ", ".join(model_name(host, s) for s in spec.units)
    reference = face()
    req = request(("canny",), IdentityControl(method, reference, 0.7))
    generator.inpaint(req)
    [call] = processing.calls
    canny, *units = sent_units(call)
    assert canny.model == model_name(host, CONTROLNET_MODELS_SDXL["canny"] if family == "sdxl" else "control_v11p_sd15_canny")
    assert [u.module for u in units] == MODULES[host.flavour][method]
    assert [u.model for u in units] == [model_name(host, stem) for stem in spec.units]  # IP-Adapter first
    assert np.array_equal(units[0].image, np.asarray(reference))  # the identity's reference face
    if method == "instantid":  # the keypoints unit places the face where the repainted picture has it
        assert np.array_equal(units[1].image, np.asarray(req.image))
    assert all((u.weight, u.guidance_start, u.guidance_end) == (0.7, 0.0, 1.0) for u in units)
    assert {getattr(u.control_mode, "value", u.control_mode) for u in units} == {"ControlNet is more important"}
    check_used_by_host(host, call, 1 + len(units))
    lora = f"<lora:{spec.lora}:1>" if spec.lora else None
    assert (lora in call.fields["prompt"]) if lora else "<lora:" not in call.fields["prompt"]
    assert shared.opts.data["sd_model_checkpoint"].startswith(checkpoint)


@pytest.mark.parametrize("removed, named", [("control_instant_id_sdxl.safetensors", "control_instant_id_sdxl"),
                                            ("ip-adapter_instant_id_sdxl.safetensors", "ip-adapter_instant_id_sdxl")])
def test_a_missing_instantid_model_is_named_before_generating(host, monkeypatch, removed, named):
    from modules import processing

    select(monkeypatch, SDXL_CHECKPOINT)
    path = host.root / "models" / "ControlNet" / removed
    data = path.read_bytes()
    path.unlink()
    try:
        generator = WebUIGenerator()
        assert named in generator.capabilities().identity_missing["instantid"]
        with pytest.raises(GenerationError) as info:
            generator.inpaint(request(("canny",), IdentityControl("instantid", face())))
    finally:
        path.write_bytes(data)
    assert named in info.value.message and "identity" in info.value.hint
    assert processing.calls == []


def test_a_missing_faceid_model_or_its_lora_is_named_before_generating(host, monkeypatch):
    from modules import processing

    select(monkeypatch, "v1-5-pruned-emaonly.safetensors")
    spec = IDENTITY_MODELS["faceid"]["sd15"]
    for path in (host.root / "models" / "ControlNet" / f"{spec.units[0]}.safetensors",
                 host.root / "models" / "Lora" / f"{spec.lora}.safetensors"):
        data = path.read_bytes()
        path.unlink()
        try:
            with pytest.raises(GenerationError) as info:
                WebUIGenerator().inpaint(request(("canny",), IdentityControl("faceid", face())))
        finally:
            path.write_bytes(data)
        assert path.stem in info.value.message
    assert processing.calls == []


def test_instantid_on_an_sd15_checkpoint_is_refused_by_name(host, monkeypatch):
    from modules import processing

    select(monkeypatch, "v1-5-pruned-emaonly.safetensors")
    with pytest.raises(GenerationError) as info:
        WebUIGenerator().inpaint(request(("canny",), IdentityControl("instantid", face())))
    assert "InstantID" in info.value.message and "SD 1.5" in info.value.message and processing.calls == []


def check_pulid_refused_on_forge():
    """Forge's built-in ControlNet has no PuLID preprocessor: refused by name, nothing generated."""
    from modules import processing

    generator = WebUIGenerator()
    assert "A1111" in generator.capabilities().identity_missing["pulid"]
    with pytest.raises(GenerationError) as info:
        generator.inpaint(request(("canny",), IdentityControl("pulid", face())))
    assert "PuLID needs A1111's ControlNet" in info.value.message and processing.calls == []


# ---------------------------------------------------------------------------------------------- standalone


def test_the_diffusers_backend_refuses_training_free_modes_before_loading(tmp_path):
    from easyphoto.backends.diffusers import DiffusersGenerator

    base = tmp_path / "base.safetensors"
    base.write_bytes(safetensors_bytes())
    generator = DiffusersGenerator(base, controlnet_dir=tmp_path / "ControlNet", device="cpu")
    with pytest.raises(GenerationError) as info:
        generator.inpaint(request((), IdentityControl("faceid", face())))
    assert "insightface" in info.value.message and "identity LoRA" in info.value.message
    assert generator.capabilities().identity == {}


# ---------------------------------------------------------------------------------------------- whole jobs


FAST = {"seed": 3, "first_steps": 4, "second_steps": 4}


def run_job(ctx, kind, params):
    from easyphoto import operations

    try:
        job = operations.submit(ctx, kind, params)
        return operations.job_queue(ctx).wait(job.id, timeout=300)
    finally:
        operations.shutdown_all()


def reference_pixels(ctx, identity_id):
    from easyphoto.imageops import load_photo, to_array

    return to_array(load_photo(ctx.identities.get(identity_id).root / "reference.jpg").image)


def test_an_identity_without_a_lora_renders_training_free(host, monkeypatch, photos_same_man, photo_astronaut):
    """Checked photos (a reference face) but no trained LoRA: refused in LoRA mode, rendered with FaceID, and the
    saved portrait says how it was made and under which licence."""
    from modules import processing

    from easyphoto.backends import webui
    from easyphoto.face import stacks
    from easyphoto.portrait import outputs
    from easyphoto.portrait.run import IdentityNotReady, require_ready
    from tests.test_portrait import make_identity

    select(monkeypatch, "v1-5-pruned-emaonly.safetensors")
    ctx = webui.make_context()
    make_identity(ctx.paths, "fresh", photos_same_man[0], stacks.load("dlib", ctx.paths), lora=False)
    with pytest.raises(IdentityNotReady):
        require_ready(ctx, "fresh", "lora")
    record = run_job(ctx, "portrait", {"identity_ids": ["fresh"], "templates": [str(photo_astronaut)],
                                       "config": {**FAST, "identity_mode": "faceid", "identity_weight": 0.6}})
    assert record.state.value == "succeeded", record.error
    assert len(processing.calls) == 2 and host.errors == []
    for call in processing.calls:
        *_, unit = sent_units(call)
        assert unit.module == MODULES[host.flavour]["faceid"][0] and unit.weight == 0.6
        assert np.array_equal(unit.image, reference_pixels(ctx, "fresh"))
        assert "<lora:fresh" not in call.fields["prompt"]
        assert f"<lora:{IDENTITY_MODELS['faceid']['sd15'].lora}:1>" in call.fields["prompt"]
    [saved] = record.result["portraits"]
    meta = outputs.read_metadata(saved["file"])
    assert meta["identity_mode"] == "faceid" and "non-commercial" in meta["face_model_licence"]
    assert saved["likeness"] is None or -1.0 <= saved["likeness"] <= 1.0


def test_compare_renders_lora_and_training_free_side_by_side(host, monkeypatch, photos_same_man, photo_astronaut):
    from modules import processing

    from easyphoto.backends import webui
    from easyphoto.face import stacks
    from easyphoto.portrait import outputs
    from tests.test_portrait import make_identity

    select(monkeypatch, SDXL_CHECKPOINT)  # InstantID needs SDXL; the LoRA side gets the SDXL ControlNets too
    ctx = webui.make_context()
    make_identity(ctx.paths, "barack", photos_same_man[0], stacks.load("dlib", ctx.paths))
    record = run_job(ctx, "portrait_compare", {"identity_id": "barack", "template": str(photo_astronaut),
                                               "config": FAST, "compare": {"training_free_mode": "instantid"}})
    assert record.state.value == "succeeded", record.error
    result = record.result
    assert result["training_free_mode"] == "instantid" and len(result["images"]) == 2
    lora_calls, free_calls = processing.calls[:2], processing.calls[2:]
    assert len(free_calls) == 2 and host.errors == []
    sdxl = {model_name(host, s) for s in CONTROLNET_MODELS_SDXL.values()}
    for call in lora_calls:  # the identity LoRA, SDXL ControlNets only, no face units
        assert "<lora:barack:0.9>" in call.fields["prompt"]
        assert {u.model for u in sent_units(call)} <= sdxl
    for call in free_calls:  # no identity LoRA; the SDXL controls, then InstantID's two units on the reference face
        assert "<lora:barack" not in call.fields["prompt"]
        *controls, embedding, keypoints = sent_units(call)
        assert {u.model for u in controls} <= sdxl
        assert [embedding.module, keypoints.module] == MODULES[host.flavour]["instantid"]
        assert np.array_equal(embedding.image, reference_pixels(ctx, "barack"))
    assert [c.fields["seed"] for c in lora_calls] == [c.fields["seed"] for c in free_calls]  # same seed both sides
    for side, mode in (("lora", "lora"), ("training_free", "instantid")):
        assert result[side]["identity_mode"] == mode and "likeness" in result[side]
        assert outputs.read_metadata(result[side]["file"])["identity_mode"] == mode
    assert result["lora"]["face_model_licence"] is None and "InstantID" in result["training_free"]["face_model_licence"]


# ---------------------------------------------------------------------------------------------- front ends' refusals


@pytest.fixture
def standalone(tmp_path, photos_same_man):
    """A standalone data folder with "fresh": checked photos (a reference face), no LoRA."""
    from easyphoto import operations
    from easyphoto.context import standalone_context
    from easyphoto.face import stacks
    from tests.test_portrait import make_identity

    ctx = standalone_context(tmp_path / "data")
    make_identity(ctx.paths, "fresh", photos_same_man[0], stacks.load("dlib", ctx.paths), lora=False)
    yield ctx
    operations.shutdown_all()


def test_compare_route_and_cli_refuse_before_submitting(standalone, photo_astronaut, capsys):
    """Compare needs the LoRA side: an identity without one is a 409 / exit 2 naming it, no job; a method that does
    not exist is a 422."""
    from fastapi.testclient import TestClient

    from easyphoto import cli, operations
    from easyphoto.app import create_app
    from tests.kit.api import API

    client = TestClient(create_app(standalone, with_ui=False))
    body = {"identity_id": "fresh", "template_name": "preset/none.jpg"}
    answer = client.post(f"{API}/portraits/compare", json=body)
    assert answer.status_code == 409 and "no trained LoRA" in answer.json()["message"]
    assert client.post(f"{API}/portraits/compare", json={**body, "identity_id": "nobody"}).status_code == 404
    bad = client.post(f"{API}/portraits/compare", json={**body, "compare": {"training_free_mode": "roop"}})
    assert bad.status_code == 422 and "training_free_mode" in bad.text
    assert operations.job_queue(standalone).list() == []
    code = cli.main(["--data-dir", str(standalone.paths.data_root.parent), "portrait-compare", "--id", "fresh",
                     str(photo_astronaut), "--out", str(standalone.paths.data_root / "out"), "--mode", "faceid",
                     "--base", str(photo_astronaut)])
    assert code == 2 and "no trained LoRA" in capsys.readouterr().err


def test_the_digital_models_face_can_be_training_free(standalone, photo_astronaut):
    from easyphoto.job_params import DigitalModelParams
    from easyphoto.portrait.run import IdentityNotReady
    from easyphoto.tryon.model_run import check_request

    params = {"identity_id": "fresh", "person": str(photo_astronaut), "config": {"mode": "model"}}
    with pytest.raises(IdentityNotReady):  # the LoRA mode needs a trained identity
        check_request(standalone, DigitalModelParams.checked(params))
    check_request(standalone, DigitalModelParams.checked({**params, "config": {"mode": "model",
                                                                              "identity_mode": "faceid"}}))
