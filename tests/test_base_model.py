"""The standalone default base checkpoint: its folder exists, `train`/`portrait` without --base use it, and without
it they stop before any work with a message naming the file and how to get it. Offline; nothing is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from easyphoto import cli
from easyphoto.context import standalone_context
from easyphoto.errors import MissingWeights
from easyphoto.store import IdentityStore, Paths
from tests.conftest import require_module

BASE_FILE = "v1-5-pruned-emaonly.safetensors"
FETCH = "python -m easyphoto models fetch sd15-base"


@pytest.fixture
def jobs(monkeypatch):
    """Every job the CLI submits, recorded instead of run (kind, params); prepare_dataset answers like the real one."""
    seen: list[tuple[str, dict]] = []

    def fake_run_job(ctx, kind, params):
        seen.append((kind, dict(params)))
        return {"images": 3} if kind == "prepare_dataset" else {"ok": True}

    monkeypatch.setattr(cli, "run_job", fake_run_job)
    return seen


def put_base(home: Path) -> Path:
    target = home / "models" / "Stable-diffusion" / BASE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"tiny stand-in")  # path resolution only: no job runs, nothing loads it
    return target


def test_standalone_context_creates_the_checkpoints_folder(tmp_path):
    ctx = standalone_context(tmp_path / "home")
    assert ctx.paths.checkpoints_dir == tmp_path / "home" / "models" / "Stable-diffusion"
    assert ctx.paths.checkpoints_dir.is_dir() and not any(ctx.paths.checkpoints_dir.iterdir())
    other = standalone_context(tmp_path / "data", tmp_path / "elsewhere")
    assert other.paths.checkpoints_dir == tmp_path / "elsewhere" / "Stable-diffusion" and other.paths.checkpoints_dir.is_dir()


def test_a_read_only_data_folder_does_not_stop_the_context(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the models folder should be")
    ctx = standalone_context(tmp_path / "d", blocker)  # mkdir fails: logged, not raised
    assert not ctx.paths.checkpoints_dir.exists()


def test_standalone_selected_checkpoint_is_the_default_base(tmp_path):
    ctx = standalone_context(tmp_path)
    with pytest.raises(MissingWeights) as info:
        ctx.selected_checkpoint()
    assert str(tmp_path / "models" / "Stable-diffusion" / BASE_FILE) in str(info.value) and FETCH in str(info.value)
    target = put_base(tmp_path)
    assert ctx.selected_checkpoint() == target


def test_training_without_a_base_param_uses_the_default_base(tmp_path):
    """What the standalone UI and API send when the base field is empty."""
    from easyphoto.train.runner import base_model

    ctx = standalone_context(tmp_path)
    with pytest.raises(MissingWeights, match="models fetch sd15-base"):
        base_model(ctx, {})
    target = put_base(tmp_path)
    assert base_model(ctx, {}) == target.resolve()


def test_train_without_base_stops_before_photos_or_jobs(tmp_path, jobs, monkeypatch, capsys):
    from easyphoto.train import prepare

    monkeypatch.setattr(prepare, "add_photos", lambda *a, **k: pytest.fail("photos were added before the base check"))
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"\xff\xd8")
    assert cli.main(["--data-dir", str(tmp_path), "train", "--id", "zed", str(photo)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "models" / "Stable-diffusion" / BASE_FILE) in err
    assert FETCH in err and "--base" in err
    assert jobs == [] and not IdentityStore(Paths.standalone(tmp_path)).exists("zed")


def test_train_with_a_missing_explicit_base_stops_before_jobs(tmp_path, jobs, capsys):
    assert cli.main(["--data-dir", str(tmp_path), "train", "--id", "zed", "--base", str(tmp_path / "nope")]) == 2
    assert f"The base model {tmp_path / 'nope'} does not exist" in capsys.readouterr().err and jobs == []


def test_train_without_base_uses_the_default_when_present(tmp_path, jobs, capsys):
    target = put_base(tmp_path)
    IdentityStore(Paths.standalone(tmp_path)).create("zed")
    assert cli.main(["--data-dir", str(tmp_path), "train", "--id", "zed"]) == 0
    assert [kind for kind, _ in jobs] == ["prepare_dataset", "train"]
    assert jobs[1][1]["base"] == str(target.resolve())
    capsys.readouterr()


def test_portrait_without_base_uses_the_default_or_says_how_to_get_it(tmp_path, jobs, capsys):
    layout = IdentityStore(Paths.standalone(tmp_path)).create("zed")
    lora = tmp_path / "models" / "Lora" / "zed.safetensors"  # looks trained: the base is what this test is about
    lora.parent.mkdir(parents=True, exist_ok=True)
    lora.write_bytes(b"stand-in")
    layout.identity_json.write_text(json.dumps({"lora_file": str(lora)}))
    template = tmp_path / "t.jpg"
    template.write_bytes(b"\xff\xd8")
    argv = ["--data-dir", str(tmp_path), "portrait", "--id", "zed", str(template), "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    assert FETCH in capsys.readouterr().err and jobs == []
    target = put_base(tmp_path)
    assert cli.main(argv) == 0
    assert [(kind, params["base"]) for kind, params in jobs] == [("portrait", str(target.resolve()))]
    capsys.readouterr()


def test_models_list_shows_the_base_first_with_feature_and_need(tmp_path, capsys):
    assert cli.main(["--data-dir", str(tmp_path), "models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == "sd15-base" and rows[0]["path"] == str(tmp_path / "models" / "Stable-diffusion" / BASE_FILE)
    assert all(r["features"] and isinstance(r["required"], bool) for r in rows)
    assert rows[0]["features"] == ["training", "portraits"] and rows[0]["required"] is True

    assert cli.main(["--data-dir", str(tmp_path), "models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["id", "needed", "by", "need"]
    assert lines[1].startswith("sd15-base") and "training, portraits" in lines[1] and "required" in lines[1]
    assert any(line.startswith("controlnet-canny") and "portraits" in line for line in lines)
    assert any(FETCH.rsplit(" ", 1)[0] in line and "sd15-base" in line for line in lines)  # the fetch hint

    assert cli.main(["--data-dir", str(tmp_path), "models", "list", "--group", "instantid"]) == 2
    assert "groups: " in capsys.readouterr().err


def test_api_model_listing_adds_feature_and_required(tmp_path):
    require_module("fastapi")
    from fastapi.testclient import TestClient

    from easyphoto import operations
    from easyphoto.app import create_app

    try:
        client = TestClient(create_app(standalone_context(tmp_path), with_ui=False))
        rows = client.get("/easyphoto/v1/models").json()
        assert rows[0]["id"] == "sd15-base" and rows[0]["features"] == ["training", "portraits"]
        assert all("required" in r and r["features"] for r in rows)
        assert {"file", "group", "purpose", "licence", "state", "path", "size", "detail", "sources"} <= set(rows[0])
    finally:
        operations.shutdown_all()


def test_train_takes_set_overrides_like_portrait(tmp_path, jobs, capsys):
    """`train --set key=value` goes through TrainConfig's validation; a bad key or value is one line, no job."""
    put_base(tmp_path)
    IdentityStore(Paths.standalone(tmp_path)).create("zed")
    base = ["--data-dir", str(tmp_path), "train", "--id", "zed"]
    assert cli.main([*base, "--set", "rank=64", "--set", "low_vram=true"]) == 0
    [(_, prepared), (_, trained)] = jobs
    assert trained["config"]["rank"] == 64 and trained["config"]["low_vram"] is True
    assert prepared["config"]["rank"] == 64  # the dataset job sees the same config
    capsys.readouterr()
    jobs.clear()
    assert cli.main([*base, "--set", "rnak=64"]) == 2 and "rnak" in capsys.readouterr().err and jobs == []
    assert cli.main([*base, "--set", "rank=-1"]) == 2 and "rank" in capsys.readouterr().err and jobs == []
