"""The training pipeline the child runs: validation at each checkpoint on the tiny model, and the merge decision."""

from types import SimpleNamespace

import pytest
import torch

from easyphoto.config import TrainConfig
from easyphoto.sd import lora
from easyphoto.store import read_json
from easyphoto.train import pipeline
from easyphoto.train.lora import from_peft


def make_dataset(folder, photos, config):
    """The real preparation: photo check, face crops at the training resolution, captions."""
    from easyphoto.face import stacks
    from easyphoto.store import Paths
    from easyphoto.train.dataset import prepare_dataset
    from easyphoto.train.photos import select_photos

    stack = stacks.load("dlib", Paths.standalone(folder.parent / "models"))
    report = select_photos(photos, stack, config)
    prepare_dataset(report, photos[0].parent, folder, stack, config)
    return folder


@pytest.fixture
def spec(tmp_path, photos_same_man, tiny_sd_dir):
    identity = tmp_path / "data" / "easyphoto" / "identities" / "zoe"
    (identity / "photos").mkdir(parents=True)
    config = TrainConfig(resolution=256, rank=4, network_alpha=4, steps_per_photo=1, max_train_steps=4,
                         validation=True, validation_every=2, seed=5, gradient_accumulation_steps=1,
                         train_text_encoder=False)
    return {"identity_id": "zoe", "identity_dir": str(identity),
            "dataset_dir": str(make_dataset(identity / "dataset", photos_same_man[:2], config)),
            "checkpoints_dir": str(identity / "checkpoints"), "validation_dir": str(identity / "validation"),
            "lora_file": str(tmp_path / "data" / "models" / "Lora" / "zoe.safetensors"), "base": str(tiny_sd_dir),
            "config": config.to_dict(), "steps": 4, "resume": False, "device": "cpu",
            "models_root": str(tmp_path / "data" / "models" / "easyphoto"), "face_stack": "dlib"}


def test_pipeline_validates_each_checkpoint_and_exports(spec):
    events = []
    result = pipeline.run(spec, events.append, lambda: False)
    validations = [e for e in events if e["event"] == "validation"]
    assert [e["step"] for e in validations] == [2, 4] and all(e["score"] is None for e in validations)
    assert all(e["image"] and e["image"].endswith(".jpg") for e in validations)  # previews for the Train tab
    scores = read_json(f"{spec['validation_dir']}/scores.json")
    assert set(scores) == {"step-000002.safetensors", "step-000004.safetensors"}
    assert scores["step-000002.safetensors"]["against"] == "training images"  # too few photos to hold any out
    assert result["source"] == "step-000004.safetensors" and not result["merged"]["used"]
    assert result["merged"]["reason"].startswith("no face in any validation image")  # tiny models draw noise
    weights, metadata = lora.load_lora(result["lora_file"])
    assert metadata["ss_output_name"] == "zoe" and metadata["ss_steps"] == "4" and weights
    identity = read_json(f"{spec['identity_dir']}/identity.json")
    assert identity["lora_file"] == result["lora_file"] and identity["embedding"]["embedder"] == "dlib-resnet"
    assert identity["embedding"]["count"] == 2 and len(identity["embedding"]["mean"]) == 128


def _peft_unet(tiny_sd_dir, rank):
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, inject_adapter_in_model

    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir / "unet")
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=lora.UNET_TARGETS), unet)
    return unet


class Scores:
    """Stands in for the face-ID validator in the decision test: returns a chosen score for the merged LoRA."""

    def __init__(self, scores, merged_score):
        self.scores = {name: {"score": score} for name, score in scores.items()}
        self.merged_score = merged_score

    def __call__(self, label, step):
        self.scores[label] = {"score": self.merged_score}
        return self.merged_score


@pytest.mark.parametrize(("merged_score", "exported"), [(0.8, "merged"), (0.5, "step-000002.safetensors")])
def test_merge_is_kept_only_if_it_scores_at_least_as_well(tmp_path, tiny_sd_dir, merged_score, exported):
    unet = _peft_unet(tiny_sd_dir, rank=2)
    paths = []
    for step in (2, 4, 6, 8):
        torch.manual_seed(step)
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.data.normal_(0, 0.1)
        path = lora.save_lora(tmp_path / f"step-{step:06d}.safetensors", from_peft(unet, "unet"), {},
                              dtype=torch.float32)
        paths.append(path)
    result = SimpleNamespace(checkpoints=paths, steps=8)
    validator = Scores({"step-000002.safetensors": 0.7, "step-000004.safetensors": 0.6,
                        "step-000006.safetensors": 0.65, "step-000008.safetensors": 0.4}, merged_score)
    config = TrainConfig(rank=2, network_alpha=2)
    events = []
    chosen, weights, record = pipeline._choose(result, validator, SimpleNamespace(unet=unet), config, events.append)
    # the best three by score, weighted by how far each is above the best one left out (0.4)
    assert chosen == exported
    assert record["checkpoints"] == ["step-000002.safetensors", "step-000006.safetensors", "step-000004.safetensors"]
    assert record["weights"] == pytest.approx([0.3 / 0.75, 0.25 / 0.75, 0.2 / 0.75])
    assert record["used"] is (exported == "merged")
    if exported != "merged":
        assert events[-1]["phase"] == "merge rejected" and record["reason"].startswith("the merge scored lower")
        assert torch.equal(weights[next(iter(weights))].up, lora.load_lora(paths[0])[0][next(iter(weights))].up)
