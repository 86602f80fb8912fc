"""The weight manifest: states on disk, and missing-file messages that say where each file goes."""

import pytest

from easyphoto import weights
from easyphoto.errors import MissingWeights
from easyphoto.store import Paths


@pytest.fixture
def paths(tmp_path):
    return Paths.standalone(tmp_path)


def test_every_entry_is_complete():
    ids = [e.id for e in weights.MANIFEST]
    assert len(ids) == len(set(ids))
    for entry in weights.MANIFEST:
        assert entry.licence and entry.purpose and entry.sources, entry.id


def test_destinations_follow_the_host_folders(paths):
    assert weights.get("controlnet-canny").path(paths) == paths.controlnet_dir / "control_v11p_sd15_canny.pth"
    det = weights.get("insightface-det-10g").path(paths)
    assert det == paths.models_root / "insightface" / "buffalo_l" / "det_10g.onnx"


def test_missing_present_alias_and_corrupt(paths, monkeypatch):
    canny = weights.get("controlnet-canny")
    assert weights.status(canny, paths).state == "missing"
    paths.controlnet_dir.mkdir(parents=True)
    (paths.controlnet_dir / "control_v11p_sd15_canny_fp16.safetensors").write_bytes(b"x")
    found = weights.status(canny, paths)
    assert found.state == "present" and found.found_at.endswith("control_v11p_sd15_canny_fp16.safetensors")
    sized = weights.WeightFile(**{**canny.__dict__, "size": 10, "aliases": ()})
    (paths.controlnet_dir / "control_v11p_sd15_canny.pth").write_bytes(b"short")
    bad = weights.status(sized, paths)
    assert bad.state == "corrupt" and "5 bytes, expected 10" in bad.detail


def test_require_names_each_missing_file_with_destination_and_source(paths):
    with pytest.raises(MissingWeights) as info:
        weights.require(["controlnet-openpose", "insightface-w600k-r50"], paths)
    text = str(info.value)
    assert str(paths.controlnet_dir / "control_v11p_sd15_openpose.pth") in text
    assert "huggingface.co/lllyasviel/ControlNet-v1-1/resolve/main/control_v11p_sd15_openpose.pth" in text
    assert "w600k_r50.onnx" in text and "buffalo_l.zip" in text
    assert [m["id"] for m in info.value.missing] == ["controlnet-openpose", "insightface-w600k-r50"]


def test_require_returns_paths_when_present(paths):
    target = weights.get("controlnet-tile").path(paths)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"w")
    assert weights.require(["controlnet-tile"], paths) == [target]


def test_unknown_id_lists_known_ones():
    with pytest.raises(KeyError, match="controlnet-canny"):
        weights.get("nope")
