"""The host's Real-ESRGAN through `make_context().make_upscaler` in both flavours of the host double: which entry is
picked, that the host's model really runs (on its device, under the queue lock, on Forge's main thread), the
fallbacks (none listed, offline, a failed download) and unload().

The double's Real-ESRGAN "network" is a Lanczos enlargement by the model's scale, loaded per call like the real
spandrel one (modules.modelloader.loads records every load), so exact arrays tell a model pass from a fallback.
"""

import logging
import threading

import numpy as np
import pytest
from PIL import Image

from easyphoto.backends import webui
from easyphoto.backends.webui.upscaler import HostUpscaler, host_upscaler
from tests.host.harness import WebUIHost

X4_URL = "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"


@pytest.fixture(params=["a1111", "forge"])
def flavour(request):
    return request.param


def start(tmp_path, flavour, weights=(), cmd_args=()):
    """A host with `weights` ({file name: scale}) in models/RealESRGAN before it starts."""
    host = WebUIHost(tmp_path, flavour=flavour, cmd_args=cmd_args)
    folder = host.root / "models" / "RealESRGAN"
    folder.mkdir(parents=True)
    for name, scale in dict(weights).items():
        (folder / name).write_text(f"scale={scale}\n", encoding="utf8")
    return host.start()


@pytest.fixture
def hosts():
    started = []
    yield started
    for host in reversed(started):
        host.stop()


def photo(size=(64, 64)):
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def lanczos(image, *sizes):
    for size in sizes:
        image = image.resize(size, Image.LANCZOS)
    return image


def test_the_hosts_real_esrgan_enlarges_on_its_device_under_the_queue_lock(tmp_path, hosts, flavour, monkeypatch):
    hosts.append(host := start(tmp_path, flavour, {"RealESRGAN_x4plus.pth": 4}))
    from modules import call_queue, modelloader, shared

    seen = []
    real_load = modelloader.load_spandrel_model

    def spy(path, **kw):
        seen.append((call_queue.queue_lock.locked(), threading.current_thread().name))
        return real_load(path, **kw)

    monkeypatch.setattr(modelloader, "load_spandrel_model", spy)
    ctx = webui.make_context()
    assert ctx.make_upscaler is host_upscaler
    upscaler = ctx.make_upscaler()
    assert isinstance(upscaler, HostUpscaler) and upscaler.name == "R-ESRGAN 4x+"
    from easyphoto import upscale

    assert upscale.for_context(ctx).name == "R-ESRGAN 4x+"  # what portrait and training jobs get in the WebUI
    image = photo()
    out = upscaler(image, 256)
    assert out.size == (256, 256) and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(lanczos(image, (256, 256))))  # one 4x pass of the model
    weights = str(host.root / "models" / "RealESRGAN" / "RealESRGAN_x4plus.pth")
    assert modelloader.loads == [(weights, shared.device)] and host.errors == []
    assert seen == [(True, threading.current_thread().name)] and not call_queue.queue_lock.locked()
    if flavour == "forge":
        from modules_forge import main_thread

        assert len(main_thread.tasks) == 1  # the upscale went through Forge's main thread


def test_a_2x_model_runs_until_the_size_is_reached(tmp_path, hosts, flavour):
    hosts.append(start(tmp_path, flavour, {"RealESRGAN_x2plus.pth": 2}))
    from modules import modelloader, shared

    shared.opts.data["realesrgan_enabled_models"] = ["R-ESRGAN 2x+"]  # Settings → Upscaling, read at start-up
    modelloader.load_upscalers()
    upscaler = host_upscaler()
    assert upscaler.name == "R-ESRGAN 2x+"
    image = photo((48, 48))
    out = upscaler(image, 160)  # 48 → 96 → 192 by the model, then the host's and our Lanczos to 160
    assert np.array_equal(np.asarray(out), np.asarray(lanczos(image, (96, 96), (192, 192), (160, 160))))
    assert len(modelloader.loads) == 2  # the host loads the model again for every pass


def test_the_preferred_entry_with_weights_on_disk_wins(tmp_path, hosts):
    hosts.append(host := start(tmp_path, "a1111", {"RealESRGAN_x2plus.pth": 2}))
    from modules import modelloader, shared

    shared.opts.data["realesrgan_enabled_models"] = ["R-ESRGAN 4x+", "R-ESRGAN 2x+", "R-ESRGAN 4x+ Anime6B"]
    modelloader.load_upscalers()
    assert host_upscaler().name == "R-ESRGAN 2x+"  # 4x+ would need a download
    # a file copied into models/RealESRGAN after start-up: the host's download finds it, so it counts as on disk
    (host.root / "models" / "RealESRGAN" / "RealESRGAN_x4plus.pth").write_text("scale=4\n", encoding="utf8")
    assert host_upscaler().name == "R-ESRGAN 4x+"
    assert host_upscaler("R-ESRGAN 2x+").name == "R-ESRGAN 2x+"
    assert host_upscaler("R-ESRGAN 4x+ Anime6B").name == "R-ESRGAN 4x+ Anime6B"  # online: the host downloads it
    assert host_upscaler("R-ESRGAN General 4xV3") is None  # not enabled in Settings → Upscaling: not listed
    assert host_upscaler("Lanczos") is None and host_upscaler("No such upscaler") is None
    assert modelloader.loads == []  # choosing loads nothing


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "setting"])
def test_offline_never_picks_an_entry_the_host_would_download(tmp_path, hosts, monkeypatch, offline):
    hosts.append(start(tmp_path, "a1111"))
    from modules import shared

    assert host_upscaler().name == "R-ESRGAN 4x+"  # online: the host would download it
    if offline == "setting":
        monkeypatch.setitem(shared.opts.data, "easyphoto_offline", True)  # Settings → EasyPhoto
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert host_upscaler() is None and webui.make_context().make_upscaler() is None


def test_a_host_without_upscalers_gives_none(tmp_path, hosts, flavour):
    hosts.append(start(tmp_path, flavour, {"RealESRGAN_x4plus.pth": 4}))
    from modules import shared

    shared.sd_upscalers = []  # e.g. --ui-debug-mode lists Lanczos only, or an unusual host
    assert host_upscaler() is None


def test_a_failed_download_is_reported_and_the_image_still_comes_back(tmp_path, hosts, caplog):
    hosts.append(host := start(tmp_path, "a1111"))
    from modules import modelloader

    upscaler = host_upscaler()  # online, nothing on disk: the host is to download R-ESRGAN 4x+ ...
    assert upscaler.name == "R-ESRGAN 4x+"
    image = photo()
    with caplog.at_level(logging.WARNING, logger="easyphoto"):
        out = upscaler(image, 256)  # ... and cannot (the double has no network)
    assert out.size == (256, 256) and modelloader.loads == []
    assert np.array_equal(np.asarray(out), np.asarray(lanczos(image, (256, 256))))  # the host's Lanczos resize
    assert [e for e in host.errors if "Unable to load RealESRGAN model" in e] != []
    assert "could not load the upscaler R-ESRGAN 4x+" in caplog.text and upscaler.failed
    reported = len(host.errors)
    again = upscaler(image, 256)  # no second download attempt (a dataset calls it once per photo)
    assert np.array_equal(np.asarray(again), np.asarray(out)) and len(host.errors) == reported


def test_a_download_the_host_makes_is_used(tmp_path, hosts, caplog):
    hosts.append(host := start(tmp_path, "a1111"))
    from modules import modelloader, shared, util

    util.served[X4_URL] = b"scale=4\n"
    with caplog.at_level(logging.WARNING, logger="easyphoto"):
        out = host_upscaler()(photo(), 256)
    target = host.root / "models" / "RealESRGAN" / "RealESRGAN_x4plus.pth"
    assert out.size == (256, 256) and modelloader.loads == [(str(target), shared.device)] and target.is_file()
    assert host.errors == [] and "could not load" not in caplog.text
    assert host_upscaler().name == "R-ESRGAN 4x+"  # now on disk


def test_a_large_enough_image_is_only_resized_and_unload_empties_the_hosts_cache(tmp_path, hosts, flavour):
    hosts.append(start(tmp_path, flavour, {"RealESRGAN_x4plus.pth": 4}))
    from modules import devices, modelloader

    upscaler = host_upscaler()
    image = photo((300, 280))
    assert np.array_equal(np.asarray(upscaler(image, 256)), np.asarray(lanczos(image, (256, 256))))
    assert modelloader.loads == []
    before = devices.torch_gc_calls
    upscaler.unload()
    assert devices.torch_gc_calls == before + 1
