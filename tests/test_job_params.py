"""Typed job parameters: one model per job kind, validated once at submit, stored as a dict, handed to the
operation as the model; records written by older versions (dict params) still load and list."""

import json
import time
import uuid

import pytest

from easyphoto import job_params, operations
from easyphoto.config import PortraitConfig, TrainConfig
from easyphoto.context import standalone_context
from easyphoto.errors import Conflict, InvalidRequest
from easyphoto.job_params import PortraitParams, TrainParams
from easyphoto.jobs import JobQueue, JobState
from easyphoto.train.spec import InvalidTrainSpec, TrainSpec, read_spec, write_spec
from tests.conftest import require_module

WAIT = 10  # seconds: a failure guard only


def test_every_registered_kind_has_a_model_and_dicts_from_to_dict_round_trip(tmp_path):
    ctx = standalone_context(tmp_path)
    queue = JobQueue(ctx.paths.jobs_dir, start=False)
    operations.register_operations(queue, ctx)
    assert sorted(job_params.MODELS) == queue.kinds()
    train = job_params.parse("train", {"identity_id": "ann", "config": TrainConfig(rank=8, network_alpha=8).to_dict()})
    assert isinstance(train, TrainParams) and train.config.rank == 8 and train.device == "auto" and not train.resume
    again = job_params.parse("train", json.loads(json.dumps(train.to_dict())))  # what a record holds
    assert again == train and job_params.parse("train", train) is train  # a model is not validated twice
    portrait = job_params.parse("portrait", {"identity_ids": ["ann"], "templates": ["user/a.png"]})
    assert portrait.config == PortraitConfig() and portrait.face_indices is None and portrait.out is None
    assert job_params.parse("boom", {"any": object}) == {"any": object}  # a kind without a model: unchanged


@pytest.mark.parametrize(("kind", "params", "named"), [
    ("train", {"identity_id": "ann", "bsae": "/x"}, "bsae: unknown field"),
    ("train", {"config": {}}, "identity_id: "),
    ("train", {"identity_id": "ann", "config": {"rank": 0}}, "config.rank: "),
    ("train", {"identity_id": "ann", "config": {"learning_rate": float("nan")}}, "config.learning_rate: must be a finite"),
    ("check_photos", {"identity_id": "ann", "config": {"rank": 4}}, "network_alpha must be ≤ rank"),
    ("portrait", {"identity_ids": "ann", "config": {"first_steps": 0}}, "identity_ids: "),
    ("fetch_models", {"ids": [], "group": None, "everything": True}, "everything: unknown field"),
])
def test_invalid_params_are_a_422_naming_the_field(kind, params, named):
    with pytest.raises(InvalidRequest) as refused:
        job_params.parse(kind, params)
    assert refused.value.http_status == 422 and named in refused.value.message
    assert refused.value.message.startswith(f"Invalid {kind} parameters: ") and "\n" not in refused.value.message


def test_the_wrong_model_or_no_mapping_is_refused():
    with pytest.raises(InvalidRequest, match="train jobs take TrainParams, not PortraitParams"):
        job_params.parse("train", PortraitParams())
    with pytest.raises(InvalidRequest, match="must be a JSON object, not list"):
        job_params.parse("portrait", ["ann"])


def test_the_queue_validates_once_and_the_operation_gets_the_model(tmp_path):
    seen, parsed = [], []

    def parse(params):
        parsed.append(params)
        return TrainParams.checked(params, "train")

    queue = JobQueue(tmp_path / "jobs")
    queue.register("train", lambda params, job: seen.append(params) or {"rank": params.config.rank},
                   label=lambda p: f"train {p.identity_id}", gpu=False, params=parse)
    try:
        record = queue.submit("train", {"identity_id": "ann", "config": {"rank": 8, "network_alpha": 8}})
        done = queue.wait(record.id, timeout=WAIT)
        with pytest.raises(InvalidRequest, match="config.rank"):
            queue.submit("train", {"identity_id": "ann", "config": {"rank": -1}})
    finally:
        queue.shutdown()
    assert done.state is JobState.SUCCEEDED and done.result == {"rank": 8} and done.label == "train ann"
    [model] = seen
    assert isinstance(model, TrainParams) and len(parsed) == 2  # once per submit, never again when it runs
    assert record.params == model.to_dict() and record.params["config"]["rank"] == 8
    on_disk = json.loads((tmp_path / "jobs" / f"{record.id}.json").read_text())
    assert on_disk["params"] == record.params and on_disk["params"]["base"] is None  # plain JSON on disk
    assert len(queue.list(kind="train")) == 1  # the refused submit left no record


def test_operations_submit_takes_a_dict_or_the_model_and_refuse_while_busy_reads_the_record(tmp_path):
    ctx = standalone_context(tmp_path)
    queue = JobQueue(ctx.paths.jobs_dir, start=False)  # not started: the submitted jobs stay queued
    operations.register_operations(queue, ctx)
    operations._queues[ctx.paths.jobs_dir.resolve()] = queue  # the process's queue for this folder
    try:
        from_dict = operations.submit(ctx, "train", {"identity_id": "ann", "resume": True})
        from_model = operations.submit(ctx, "portrait", PortraitParams(identity_ids=["bob"], templates=["x.png"]))
        with pytest.raises(InvalidRequest, match="Invalid train parameters: resume: "):
            operations.submit(ctx, "train", {"identity_id": "ann", "resume": "perhaps"})
        assert from_dict.label == "train ann" and from_dict.params["resume"] is True
        assert from_model.label == "portrait of bob" and from_model.params["templates"] == ["x.png"]
        with pytest.raises(Conflict, match="'ann' is used by job"):
            operations.refuse_while_busy(queue, "ann", "then delete it", phase="identity")
        operations.refuse_while_busy(queue, "bob", "then delete it", phase="identity")  # portraits name no identity_id
    finally:
        operations.shutdown_all()


def old_record(jobs_dir, params: dict, state: str = "succeeded") -> str:
    """A record as an older EasyPhoto wrote it: dict params that today's model would refuse."""
    job_id = uuid.uuid4().hex
    jobs_dir.mkdir(parents=True, exist_ok=True)
    (jobs_dir / f"{job_id}.json").write_text(json.dumps({
        "id": job_id, "kind": "train", "state": state, "created": time.time() - 60, "started": None,
        "finished": time.time() - 30, "params": params, "progress": {}, "result": {"steps": 3}, "error": None,
        "label": "train old"}))
    return job_id


OLD_PARAMS = {"identity_id": "old", "config": {"steps": 3, "rank": 4, "config_version": 1}, "gpu": "0"}


def test_records_with_old_dict_params_still_load_and_list(tmp_path):
    jobs_dir = tmp_path / "jobs"
    job_id = old_record(jobs_dir, OLD_PARAMS)
    running = old_record(jobs_dir, OLD_PARAMS, state="running")
    queue = JobQueue(jobs_dir, start=False)
    operations.register_operations(queue, standalone_context(tmp_path))
    listed = {r.id: r for r in queue.list()}
    assert listed[job_id].params == OLD_PARAMS and listed[job_id].state is JobState.SUCCEEDED
    assert listed[running].state is JobState.FAILED and "interrupted" in listed[running].error["message"]
    assert queue.get(running).params == OLD_PARAMS


def test_the_api_lists_old_records_with_their_params(tmp_path):
    require_module("fastapi")
    from fastapi.testclient import TestClient

    from easyphoto.app import create_app

    ctx = standalone_context(tmp_path)
    job_id = old_record(ctx.paths.jobs_dir, OLD_PARAMS)
    try:
        client = TestClient(create_app(ctx, with_ui=False))
        listed = client.get("/easyphoto/v1/jobs").json()
        one = client.get(f"/easyphoto/v1/jobs/{job_id}").json()
    finally:
        operations.shutdown_all()
    assert [j["params"] for j in listed if j["id"] == job_id] == [OLD_PARAMS] and one["params"] == OLD_PARAMS


# ---------------------------------------------------------------------------------------------- the training spec


def test_the_training_spec_round_trips_and_derives_the_identity_folders(tmp_path):
    identity = tmp_path / "data" / "easyphoto" / "identities" / "ann"
    spec = TrainSpec(identity_id="ann", identity_dir=identity, lora_file=tmp_path / "ann.safetensors",
                     config=TrainConfig(rank=8, network_alpha=8), steps=12, base=tmp_path / "base.safetensors",
                     models_root=tmp_path / "models")
    path = write_spec(tmp_path / "spec.json", spec)
    back = read_spec(path)
    assert back == spec and back.config.rank == 8 and back.device == "auto"
    assert back.dataset == identity / "dataset" and back.checkpoints == identity / "checkpoints"
    assert back.store_paths().models_root == tmp_path / "models" and back.store_paths().data_root == identity.parents[1]
    no_base = spec.updated(base=None)
    with pytest.raises(InvalidTrainSpec, match="names no base model"):
        no_base.base_path()


@pytest.mark.parametrize(("content", "named"), [
    ('{"identity_id": "ann"}', "identity_dir: "),
    ('{"identity_id": "ann", "identity_dir": "/x", "lora_file": "/y", "config": {}, "steps": 1, "gpus": 2}',
     "gpus: unknown field"),
    ("[1, 2]", "is not a JSON object"),
    ("{not json", "cannot be read"),
])
def test_a_spec_that_does_not_validate_names_what_is_wrong(tmp_path, content, named):
    path = tmp_path / "spec.json"
    path.write_text(content)
    with pytest.raises(InvalidTrainSpec) as refused:
        read_spec(path)
    assert named in str(refused.value)
    assert not isinstance(refused.value, InvalidRequest)  # ours, not the user's: the child reports it as a bug


# ---------------------------------------------------------------------------------------------- portrait upscaler


class RecordingUpscaler:
    name = "recording"

    def __init__(self, fail_unload: bool = False):
        self.unloads, self.fail_unload = 0, fail_unload

    def __call__(self, image, side):
        return image.resize((side, side))

    def unload(self) -> None:
        self.unloads += 1
        if self.fail_unload:
            raise RuntimeError("the driver is gone")


def test_the_portrait_job_uses_the_contexts_upscaler_and_unloads_it(tmp_path, caplog):
    from dataclasses import replace

    from easyphoto.portrait import run
    from easyphoto.upscale import classical

    host = RecordingUpscaler()
    ctx = replace(standalone_context(tmp_path), make_upscaler=lambda: host)
    on = PortraitConfig(super_resolution=True)
    assert run._upscaler(ctx, PortraitConfig()) is None  # super resolution off: nothing is loaded
    assert run._upscaler(ctx, on) is host
    run._unload(host)
    assert host.unloads == 1
    bare = replace(standalone_context(tmp_path / "bare"), make_upscaler=lambda: None)  # no host's, no weights
    assert run._upscaler(bare, on) is classical
    run._unload(classical)  # a plain function: nothing to free, no error
    broken = RecordingUpscaler(fail_unload=True)
    run._unload(broken)  # logged, never raised: the portraits are saved already
    assert broken.unloads == 1 and "could not unload the upscaler recording" in caplog.text
