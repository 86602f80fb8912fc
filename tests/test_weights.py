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


# ---------------------------------------------------------------------------------------------- base, features

SD15_SHA256 = "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"


def test_the_sd15_base_checkpoint_is_the_first_entry(paths):
    base = weights.MANIFEST[0]
    assert base.id == weights.BASE_ID == "sd15-base" and weights.GROUPS[0] == base.group == "base"
    assert base.path(paths) == paths.checkpoints_dir / "v1-5-pruned-emaonly.safetensors"
    assert base.licence == "CreativeML OpenRAIL-M" and base.sha256 == SD15_SHA256
    assert base.required and set(base.features) == {"training", "portraits"}
    hf = base.sources[0]
    assert (hf.kind, hf.location, hf.path) == (
        "huggingface", "stable-diffusion-v1-5/stable-diffusion-v1-5", "v1-5-pruned-emaonly.safetensors")
    assert [s.entry.id for s in weights.status_all(paths)][0] == "sd15-base"  # models list order


def test_every_entry_says_which_feature_needs_it_and_how_much():
    for entry in weights.MANIFEST:
        assert entry.features and set(entry.features) <= set(weights.FEATURES), entry.id
        assert isinstance(entry.required, bool) and entry.need in ("required", "optional"), entry.id
    by_id = {e.id: e for e in weights.MANIFEST}
    # portraits fail without their ControlNets; the insightface stack and Real-ESRGAN only improve on a fallback
    assert all(by_id[i].required for i in ("controlnet-canny", "controlnet-openpose", "controlnet-tile",
                                            "controlnet-color"))
    assert not any(by_id[i].required for i in ("insightface-det-10g", "insightface-w600k-r50", "realesrgan-x2plus"))


def test_status_dict_carries_features_and_required(paths):
    row = weights.status(weights.get("insightface-det-10g"), paths).to_dict()
    assert row["features"] == ["face check"] and row["required"] is False
    assert {"id", "file", "group", "purpose", "licence", "state", "path", "size", "detail", "sources"} <= set(row)


def test_no_entries_for_features_this_version_does_not_have():
    assert not {"controlnet-sdxl", "ip-adapter", "instantid"} & set(weights.GROUPS)
    assert {e.group for e in weights.MANIFEST} == set(weights.GROUPS)  # no empty group in the Models tab dropdown
    for entry in weights.MANIFEST:
        text = f"{entry.id} {entry.filename} {entry.purpose}".lower()
        for word in ("sdxl", "ip-adapter", "instantid", "antelopev2", "gfpgan"):
            assert word not in text, (entry.id, word)
    for group in ("controlnet-sdxl", "ip-adapter", "instantid"):
        with pytest.raises(KeyError):
            weights.select(None, group)


def test_default_base_is_the_file_in_the_checkpoints_folder(paths):
    target = paths.checkpoints_dir / "v1-5-pruned-emaonly.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a real checkpoint")  # path resolution only: nothing loads or hashes it
    assert weights.default_base(paths) == target


def test_missing_default_base_names_the_path_the_command_and_the_alternative(paths):
    with pytest.raises(MissingWeights) as info:
        weights.default_base(paths)
    text = str(info.value)
    assert str(paths.checkpoints_dir / "v1-5-pruned-emaonly.safetensors") in text
    assert "python -m easyphoto models fetch sd15-base" in text
    assert "--base" in text and "SD 1.5 .safetensors" in text
    assert [m["id"] for m in info.value.missing] == ["sd15-base"]
