"""The Real-ESRGAN (RRDBNet) upscaler: loads a checkpoint of the real layout safely, runs on the chosen device with
either engine (spandrel or the built-in RRDBNet), frees its model on unload, and is chosen per front end.

Every checkpoint here is a tiny random RRDBNet with the real key names (conv_first, body.N.rdbM.convK,
conv_body, conv_up1/2, conv_hr, conv_last, inside "params_ema" as in the published .pth files)."""

import dataclasses
import gc
import importlib.util
import os
import pickle
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from easyphoto import upscale, weights
from easyphoto.context import AppContext, HostInfo
from easyphoto.store import Paths
from tests.conftest import CI_TRUTHY

ROOT = Path(__file__).resolve().parents[1]


def tiny_checkpoint(path, scale=2, feat=8, blocks=2, grow=32, seed=0):
    """grow=32: spandrel's RRDBNet has the published growth width fixed at 32; features and blocks are read."""
    torch.manual_seed(seed)
    model = upscale._build_rrdbnet({4: 3, 2: 12, 1: 48}[scale], feat, blocks, grow, scale)
    torch.save({"params_ema": model.state_dict()}, path)  # the layout of the published .pth files
    return model


def noise_image(width, height, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def builtin(monkeypatch):
    """Force the built-in engine whether or not spandrel is importable here."""
    monkeypatch.setattr(upscale, "spandrel_available", lambda: False)


def test_checkpoint_size_and_scale_come_from_the_tensors(tmp_path):
    reference = tiny_checkpoint(tmp_path / "x2.pth", grow=4)
    model = upscale.load_rrdbnet(tmp_path / "x2.pth")
    assert model.scale == 2 and len(model.body) == 2 and model.conv_first.in_channels == 12
    image = noise_image(32, 24)
    out = upscale.upscale_with(model, image)
    assert out.size == (64, 48)
    expected = upscale.upscale_with(reference.eval(), image)
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    tiny_checkpoint(tmp_path / "x4.pth", scale=4)
    assert upscale.load_rrdbnet(tmp_path / "x4.pth").scale == 4


def test_pickled_code_in_a_checkpoint_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"params_ema": Exploit()}))
    with pytest.raises(pickle.UnpicklingError):
        upscale.load_rrdbnet(tmp_path / "evil.pth")


def test_a_checkpoint_of_another_layout_is_named(tmp_path):
    torch.save({"model.0.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "old-esrgan.pth")
    with pytest.raises(ValueError, match="old-esrgan.pth: not a Real-ESRGAN RRDBNet checkpoint"):
        upscale.load_rrdbnet(tmp_path / "old-esrgan.pth")


@pytest.mark.parametrize("scale", [2, 4])
def test_x2_and_x4_models_give_side_by_side_images(tmp_path, builtin, scale):
    reference = tiny_checkpoint(tmp_path / "m.pth", scale=scale).eval()
    run = upscale.ModelUpscaler(tmp_path / "m.pth", device="cpu")
    small = noise_image(40, 30)
    out = run(small, 100)
    assert out.size == (100, 100) and run.scale == scale and run.engine == "builtin"
    # ×2 needs two passes to pass 100 px (40 → 80 → 160), ×4 one (40 → 160); then Lanczos to the side
    passes = 2 if scale == 2 else 1
    expected = small
    for _ in range(passes):
        expected = upscale.upscale_with(reference, expected)
    assert expected.width == 160
    assert np.array_equal(np.asarray(out), np.asarray(expected.resize((100, 100), Image.LANCZOS)))


def test_odd_sides_are_padded_for_the_pixel_unshuffle(tmp_path, builtin):
    tiny_checkpoint(tmp_path / "x2.pth")
    model = upscale.load_rrdbnet(tmp_path / "x2.pth")
    out = upscale.upscale_with(model, noise_image(33, 21))
    assert out.size == (66, 42)


def test_a_x1_model_never_loops(tmp_path, builtin):
    tiny_checkpoint(tmp_path / "x1.pth", scale=1)
    run = upscale.ModelUpscaler(tmp_path / "x1.pth", device="cpu")
    assert run(noise_image(20, 20), 64).size == (64, 64) and run.scale == 1


def test_device_follows_cuda_availability(tmp_path, monkeypatch, builtin):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert upscale.ModelUpscaler(tmp_path / "m.pth").device == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_cpu = upscale.ModelUpscaler(tmp_path / "m.pth")
    assert on_cpu.device == "cpu" and "builtin, cpu" in on_cpu.name
    assert upscale.ModelUpscaler(tmp_path / "m.pth", device="cuda:1").device == "cuda:1"


def test_unload_frees_the_model_and_a_later_call_reloads(tmp_path, builtin):
    tiny_checkpoint(tmp_path / "x2.pth")
    run = upscale.ModelUpscaler(tmp_path / "x2.pth", device="cpu")
    assert run.model is None  # nothing is loaded before the first call
    first = run(noise_image(20, 20), 40)
    gone = weakref.ref(run.model)
    run.unload()
    gc.collect()
    assert run.model is None and gone() is None  # no cache or other reference keeps the weights alive
    again = run(noise_image(20, 20), 40)
    assert run.model is not None and np.array_equal(np.asarray(first), np.asarray(again))
    run.unload()
    run.unload()  # a second unload is harmless


def test_model_upscaler_only_when_weights_are_present(tmp_path, monkeypatch, builtin):
    paths = Paths.standalone(tmp_path)
    entry = dataclasses.replace(weights.get(upscale.UPSCALER_ID), size=None, sha256=None)
    monkeypatch.setattr(weights, "MANIFEST", (entry,))
    assert upscale.model_upscaler(paths) is None
    target = entry.path(paths)
    target.parent.mkdir(parents=True)
    tiny_checkpoint(target)
    run = upscale.model_upscaler(paths)
    assert isinstance(run, upscale.ModelUpscaler) and run.file == target
    small = Image.new("RGB", (100, 100), (200, 120, 90))
    assert run(small, 256).size == (256, 256)


class HostUpscaler:
    name = "host ESRGAN"

    def __init__(self):
        self.unloaded = False

    def __call__(self, image, side):
        return image.resize((side, side))

    def unload(self):
        self.unloaded = True


def test_for_context_prefers_the_hosts_upscaler(tmp_path, monkeypatch, builtin):
    paths = Paths.standalone(tmp_path)
    entry = dataclasses.replace(weights.get(upscale.UPSCALER_ID), size=None, sha256=None)
    monkeypatch.setattr(weights, "MANIFEST", (entry,))
    host = HostUpscaler()
    assert upscale.for_context(AppContext(paths, HostInfo("a1111"), make_upscaler=lambda: host)) is host
    # the host has none (no model selected): the manifest's file, which is not there yet
    declined = AppContext(paths, HostInfo("a1111"), make_upscaler=lambda: None)
    assert upscale.for_context(declined) is None
    entry.path(paths).parent.mkdir(parents=True)
    tiny_checkpoint(entry.path(paths))
    assert isinstance(upscale.for_context(declined), upscale.ModelUpscaler)
    standalone = AppContext(paths, HostInfo("standalone"))
    assert standalone.make_upscaler is None
    assert upscale.for_context(standalone).file == entry.path(paths)


def test_without_spandrel_the_builtin_engine_serves(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # `import spandrel` raises ImportError
    upscale.spandrel_available.cache_clear()
    try:
        assert not upscale.spandrel_available()
        tiny_checkpoint(tmp_path / "x2.pth")
        run = upscale.ModelUpscaler(tmp_path / "x2.pth", device="cpu")
        assert run.engine == "builtin" and run(noise_image(20, 20), 40).size == (40, 40)
    finally:
        upscale.spandrel_available.cache_clear()


# ---------------------------------------------------------------------------------------------- spandrel

FAKE_TORCHVISION = {
    "torchvision/__init__.py": "",
    "torchvision/transforms/__init__.py": "",
    "torchvision/transforms/functional.py": textwrap.dedent('''
        """Test-only stand-in: the names spandrel 0.3.4 imports at import time (its RestoreFormer and LaMa
        architectures). Calling either function fails loudly; the RRDBNet path never calls them."""
        import enum


        class InterpolationMode(enum.Enum):
            NEAREST = "nearest"
            BILINEAR = "bilinear"
            BICUBIC = "bicubic"


        def normalize(*args, **kwargs):
            raise NotImplementedError("test stand-in for torchvision")


        def rotate(*args, **kwargs):
            raise NotImplementedError("test stand-in for torchvision")
    '''),
}

SPANDREL_RUN = textwrap.dedent('''
    import sys
    from pathlib import Path

    import numpy as np
    import torch
    from PIL import Image

    from easyphoto import upscale

    out = Path(sys.argv[1])
    assert upscale.spandrel_available(), "spandrel did not import"
    for scale in (2, 4):
        run = upscale.ModelUpscaler(out / f"x{scale}.pth", device="cpu")
        model = run.load()
        assert run.engine == "spandrel" and type(model).__module__.startswith("spandrel"), (run.engine, type(model))
        assert model.scale == scale and model.architecture.name == "ESRGAN"
        image = Image.open(out / "in.png")
        np.save(out / f"pass{scale}.npy", np.asarray(upscale.upscale_with(model, image)))
        np.save(out / f"run{scale}.npy", np.asarray(run(image, 100)))
        tensor = torch.from_numpy(np.load(out / "tensor.npy"))
        np.save(out / f"raw{scale}.npy", model(tensor).numpy())
    print("engine", run.engine)
''')


def require_spandrel_installed():
    """spandrel is installed --no-deps in the test environments (its torchvision dependency cannot be installed
    beside the CPU torch wheel); like require_module, missing under CI is a failure, not a skip."""
    if importlib.util.find_spec("spandrel") is not None and importlib.util.find_spec("einops") is not None:
        return
    if os.environ.get("CI", "").strip().lower() in CI_TRUTHY:
        pytest.fail("spandrel/einops are not installed (requirements/no-deps.txt); CI is set, so this fails")
    pytest.skip("spandrel/einops are not installed (requirements/no-deps.txt)")


def test_spandrel_loads_the_same_network_and_is_chosen_when_importable(tmp_path, builtin):
    """spandrel's RRDBNet and ours implement the published architecture: the same checkpoint gives the same
    output. spandrel imports torchvision at import time, and torchvision cannot be installed in these test
    environments, so the spandrel side runs in a subprocess that finds a minimal torchvision stand-in (two
    functions and an enum, the names spandrel imports, never called on this path) first on sys.path. The stand-in
    exists only in that subprocess's temporary folder: neither this test process nor shipped code sees it."""
    require_spandrel_installed()
    fake = tmp_path / "fake-site"
    for name, text in FAKE_TORCHVISION.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    models = {scale: tiny_checkpoint(tmp_path / f"x{scale}.pth", scale=scale, seed=scale).eval() for scale in (2, 4)}
    image = noise_image(36, 28)
    image.save(tmp_path / "in.png")
    tensor = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(3))
    np.save(tmp_path / "tensor.npy", tensor.numpy())
    (tmp_path / "run.py").write_text(SPANDREL_RUN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)])}
    done = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "engine spandrel" in done.stdout
    for scale, reference in models.items():
        with torch.inference_mode():
            expected_raw = reference(tensor).clamp(0, 1).numpy()
        assert np.allclose(np.load(tmp_path / f"raw{scale}.npy"), expected_raw, atol=1e-5)
        ours = upscale.ModelUpscaler(tmp_path / f"x{scale}.pth", device="cpu")
        assert ours.engine == "builtin"
        for prefix, result in (("pass", upscale.upscale_with(ours.load(), image)), ("run", ours(image, 100))):
            theirs = np.load(tmp_path / f"{prefix}{scale}.npy").astype(int)
            assert theirs.shape == np.asarray(result).shape
            assert np.abs(theirs - np.asarray(result).astype(int)).max() <= 1  # float rounding at most
