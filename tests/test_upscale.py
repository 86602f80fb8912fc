"""The Real-ESRGAN (RRDBNet) upscaler: loads a checkpoint of the real layout safely, and is used for small crops."""

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from easyphoto import upscale, weights
from easyphoto.store import Paths


def tiny_checkpoint(path, scale=2, feat=8, blocks=2, grow=4, seed=0):
    torch.manual_seed(seed)
    model = upscale._build_rrdbnet({4: 3, 2: 12, 1: 48}[scale], feat, blocks, grow, scale)
    torch.save({"params_ema": model.state_dict()}, path)  # the layout of the published .pth files
    return model


def test_checkpoint_size_and_scale_come_from_the_tensors(tmp_path):
    reference = tiny_checkpoint(tmp_path / "x2.pth")
    model = upscale.load_rrdbnet(tmp_path / "x2.pth")
    assert model.scale == 2 and len(model.body) == 2 and model.conv_first.in_channels == 12
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))
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


def test_model_upscaler_only_when_weights_are_present(tmp_path, monkeypatch):
    paths = Paths.standalone(tmp_path)
    entry = dataclasses.replace(weights.get(upscale.UPSCALER_ID), size=None, sha256=None)
    monkeypatch.setattr(weights, "MANIFEST", (entry,))
    assert upscale.model_upscaler(paths) is None
    target = entry.path(paths)
    target.parent.mkdir(parents=True)
    tiny_checkpoint(target)
    run = upscale.model_upscaler(paths)
    small = Image.new("RGB", (100, 100), (200, 120, 90))
    assert run(small, 256).size == (256, 256)
