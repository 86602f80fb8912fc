"""The "train" job: prepare what the training needs, run it in a child process, report its progress.

    queue.register("train", lambda p, job: train_operation(ctx, p, job), params=job_params.parser("train"))
    params = TrainParams(identity_id="alice", config=TrainConfig(...), base="/path/model.safetensors")

The GPU work happens in `python -m easyphoto.train.child` (easyphoto.train.child), told what to do by spec.json
(easyphoto.train.spec.TrainSpec): its VRAM is freed when it exits and a crash there (CUDA error, segfault, the OOM
killer) fails the job instead of taking the WebUI down. The child writes JSON events on stdout, one per line, which
become the job's progress; its stderr is the job's child.log. A bug in the child arrives with its traceback and
versions, and the job gets a bug report as for a bug in this process (ChildError.bug, easyphoto.jobs.is_bug).

Cancel: the stop file is created and the child stops at the next step boundary, saving a resumable state; a child
that has not exited CANCEL_GRACE_S seconds later is terminated, and killed KILL_GRACE_S seconds after that.
`resume=True` continues from the last checkpoint of the identity. Each checkpoint's step is written into the job
record at once (`JobContext.resumable`), so even a kill -9 of the server leaves a record that says which step to
resume from; the child itself exits when the server dies (easyphoto.train.child.guard_parent).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from easyphoto.config import TrainConfig, train_config_for_family
from easyphoto.context import AppContext
from easyphoto.errors import Cancelled, EasyPhotoError, InvalidRequest
from easyphoto.job_params import TrainParams
from easyphoto.jobs import JobContext
from easyphoto.sd.family import model_family
from easyphoto.store import IdentityLayout, atomic_write_text, check_lora_target, read_json
from easyphoto.train.spec import TrainSpec, read_spec, write_spec

log = logging.getLogger("easyphoto")

CANCEL_GRACE_S = 15.0  # after the stop file: time for the child to save its state and exit
KILL_GRACE_S = 5.0  # after terminate(): time before kill()
PREPARE_SHARE = 0.1  # of the job's fraction, when the dataset has to be prepared first
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `easyphoto` package
PARENT_PID_ENV = "EASYPHOTO_PARENT_PID"  # read by easyphoto.train.child.guard_parent


class ChildError(EasyPhotoError):
    """An error reported by the training process, re-raised with its phase, message, hint and extra fields.

    `bug`: the child's versions and traceback when the error is a bug there (None otherwise); the job queue then
    attaches a bug report built from them (easyphoto.jobs.is_bug, easyphoto.bugreport.bug_report)."""

    phase = "train"
    http_status = 500

    def __init__(self, data: dict, *, log_file: Path | None = None):
        data = dict(data)
        bug = data.pop("bug", None)
        self.bug: dict | None = bug if isinstance(bug, dict) else None
        message = str(data.get("message") or data.get("error") or "the training failed")
        hint = str(data.get("hint") or "")
        if log_file is not None and "bug" in hint:
            hint = f"{hint} ({log_file})"
        super().__init__(message, hint=hint, phase=str(data.get("phase") or "train"))
        self.data = {**data, "message": message, "hint": hint, "phase": self.phase}
        self.data.setdefault("error", type(self).__name__)

    def to_dict(self) -> dict:
        return dict(self.data)


# ---------------------------------------------------------------------------------------------- the operation


def train_operation(ctx: AppContext, params: TrainParams, job: JobContext) -> dict:
    layout = ctx.identities.get(params.identity_id)  # InvalidIdentityId / IdentityNotFound
    # Before any work: the export must not replace a LoRA of the same name that EasyPhoto did not write.
    check_lora_target(layout.lora_file, layout.identity_id)
    base = base_model(ctx, params)
    config = train_config_for_family(params.config, model_family(base))  # SDXL: 1024 px, rank 32, ... unless set
    config_dir = params.config_dir
    if config_dir is not None and not Path(config_dir).is_dir():
        raise InvalidRequest(f"The base model config folder {config_dir} does not exist.",
                             hint="Pass the diffusers config folder of the base model, or leave config_dir out.")
    images, offset = _training_images(ctx, layout, config, params.resume, job)
    steps = config.train_steps(len(images))
    spec = TrainSpec(
        identity_id=layout.identity_id, identity_dir=layout.root, dataset_dir=layout.dataset,
        checkpoints_dir=layout.checkpoints, validation_dir=layout.validation, lora_file=layout.lora_file, base=base,
        config_dir=Path(config_dir) if config_dir else None, config=config, steps=steps, resume=params.resume,
        device=params.device, models_root=ctx.paths.models_root, paths=ctx.paths.to_dict(),
        face_stack=ctx.settings.face_stack, max_upload_megapixels=ctx.settings.max_upload_megapixels,
    )
    spec_file = write_spec(job.work_dir / "spec.json", spec)
    if params.resume:  # until the first new checkpoint, a stop leaves the state this run resumed from
        saved = _state_step(layout.checkpoints)
        if saved:
            job.resumable(saved)
    with _host_offload(ctx):
        return run_child(spec_file, job, steps=steps, offset=offset)


def _training_images(ctx: AppContext, layout: IdentityLayout, config: TrainConfig, resume: bool,
                     job: JobContext) -> tuple[list[str], float]:
    """(the dataset's images, the job fraction used so far): the dataset is prepared first when there is none, or
    when it was made with other settings or photos (a resumed training keeps the one it started with)."""
    from easyphoto.train import prepare

    images = dataset_images(layout.dataset)
    if images and not resume and prepare.dataset_out_of_date(layout, config):
        images = []  # rebuilt before steps are counted
    if images:
        return images, 0.0
    job.progress(phase="preparing", fraction=0.0, message="checking photos and preparing the dataset")

    def report(index: int, total: int, name: str) -> None:
        job.check_cancelled()
        job.progress(phase="preparing", fraction=PREPARE_SHARE * index / max(total, 1), message=name,
                     step=index, total=total)

    prepare.prepare_identity_dataset(ctx, layout.identity_id, config, report)
    job.check_cancelled()
    images = dataset_images(layout.dataset)
    if not images:
        raise EasyPhotoError(f"The dataset of {layout.identity_id!r} has no images.", phase="dataset",
                             hint="Check the photo report: every photo has the reason it was dropped.")
    return images, PREPARE_SHARE


def dataset_images(dataset_dir: Path) -> list[str]:
    """The training images listed in dataset/metadata.jsonl that exist; [] when there is no dataset."""
    metadata = Path(dataset_dir) / "metadata.jsonl"
    if not metadata.is_file():
        return []
    names = []
    for line in metadata.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            name = json.loads(line)["file_name"]
        except (ValueError, KeyError, TypeError):
            continue
        if (Path(dataset_dir) / name).is_file():
            names.append(name)
    return names


def base_model(ctx: AppContext, params: TrainParams | Mapping) -> Path:
    """params.base (TrainParams, or a dict of its fields), else ctx.selected_checkpoint(): the WebUI's selected
    checkpoint, or standalone the SD 1.5 base in models/Stable-diffusion (which raises an actionable error when that
    file is absent). The API calls it before it submits a training, so a missing base is said at once, not by a
    failed job."""
    base = params.get("base") if isinstance(params, Mapping) else params.base
    if not base:
        selected = getattr(ctx, "selected_checkpoint", None)
        base = selected() if callable(selected) else None
    if not base:
        raise InvalidRequest(
            "No base model was given for the training.",
            hint='Pass "base": the path of an SD 1.5 checkpoint (.safetensors) or diffusers folder, '
            f"e.g. one from {ctx.paths.checkpoints_dir}.",
        )
    path = Path(base).expanduser()
    if not path.exists():
        raise InvalidRequest(f"The base model {path} does not exist.",
                             hint="Pass the path of an SD 1.5 checkpoint (.safetensors) or diffusers folder.")
    return path.resolve()


def _host_offload(ctx: AppContext) -> AbstractContextManager:
    """Around the child: the WebUI moves its own checkpoint off the GPU and back (AppContext.host_offload, which
    also honours the "Free VRAM for training" setting); a no-op standalone."""
    offload = getattr(ctx, "host_offload", None)
    if offload is None:
        return nullcontext()
    return offload if hasattr(offload, "__enter__") else offload()


# ---------------------------------------------------------------------------------------------- the child


def child_command(spec_file: Path, stop_file: Path) -> list[str]:
    return [sys.executable, "-m", "easyphoto.train.child", str(spec_file), str(stop_file)]


def child_env() -> dict[str, str]:
    """The host's environment, with our package importable (the WebUI's sys.path has the extension folder, its
    PYTHONPATH does not), UTF-8 pipes, and this process's id for the child's parent watchdog."""
    env = dict(os.environ)
    env[PARENT_PID_ENV] = str(os.getpid())
    parts = [str(PACKAGE_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Tracker:
    """What the runner knows of the child from its events."""

    def __init__(self, job: JobContext, steps: int, offset: float):
        self.job, self.steps, self.offset = job, max(int(steps), 1), offset
        self.fraction = offset
        self.step = 0  # last training step reached
        self.checkpoint_step: int | None = None  # last checkpoint saved (resumable from)
        self.preview: str | None = None
        self.final: dict | None = None  # the done / error / cancelled event
        self.bad_lines = 0

    def handle(self, event: dict) -> None:
        kind = event.get("event")
        if kind in ("done", "error", "cancelled"):
            self.final = event
            return
        step = _int(event.get("step"))
        if step is not None:
            self.step = max(self.step, step)
        if kind == "checkpoint":
            self.checkpoint_step = step if step is not None else self.checkpoint_step
            if step:
                self.job.resumable(step)  # persisted at once: survives a kill -9 of this process
            self._report(None, f"checkpoint at step {step}", step)
        elif kind == "validation":
            image = event.get("image")
            if image:
                self.preview = str(image)
            score = event.get("score")
            shown = "no face found" if score is None else f"score {float(score):.3f}"
            self._report("validating", f"validation at step {step}: {shown}", step)
        elif kind == "progress":
            message = str(event.get("message") or "")
            loss = event.get("loss")
            if loss is not None and "loss" not in message:
                message = f"{message} loss {float(loss):.4f}".strip()
            self._report(event.get("phase"), message, step, _int(event.get("total")))

    def _report(self, phase, message: str, step: int | None, total: int | None = None) -> None:
        total = total or self.steps
        if step is not None:
            share = min(max(step / max(total, 1), 0.0), 1.0)
            # the last 2 % are for merging and exporting: "done" is the job's end, not the last step
            self.fraction = max(self.fraction, self.offset + (1 - self.offset) * 0.98 * share)
        self.job.progress(phase=phase, fraction=self.fraction, message=message, step=step, total=total,
                          preview=self.preview)


def _int(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def run_child(spec_file: Path, job: JobContext, *, steps: int, offset: float = 0.0) -> dict:
    """Run the training process for `spec_file`; its result, or the error it reported, or Cancelled."""
    work = Path(job.work_dir)
    stop_file = work / "stop"
    stop_file.unlink(missing_ok=True)
    log_file = work / "child.log"
    tracker = _Tracker(job, steps, offset)
    with open(log_file, "ab") as stderr:
        try:
            process = subprocess.Popen(
                child_command(spec_file, stop_file), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=stderr, cwd=str(PACKAGE_ROOT), env=child_env(), text=True, encoding="utf-8",
                errors="replace", bufsize=1,
            )
        except OSError as exc:
            raise EasyPhotoError(f"Could not start the training process ({exc}).", phase="train",
                                 hint=f"Check that {sys.executable} can run.") from exc
    atomic_write_text(work / "child.pid", f"{process.pid}\n")
    stopper = _Stopper(process, stop_file)
    job.on_cancel(stopper.request)
    job.progress(phase="starting", fraction=offset, message=f"training process {process.pid} started",
                 step=0, total=steps)
    try:
        for line in process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise ValueError("not an object")
            except ValueError:
                tracker.bad_lines += 1
                log.warning("EasyPhoto: the training process wrote a non-event line: %s", line[:200])
                continue
            try:
                tracker.handle(event)
            except (TypeError, ValueError) as exc:  # a malformed event must not orphan the child
                log.warning("EasyPhoto: ignoring a malformed training event %r (%s)", line[:200], exc)
        code = process.wait()
    finally:
        if process.poll() is None:  # this thread was interrupted: never leave the child running
            stopper.request()
            with contextlib.suppress(Exception):
                process.wait(CANCEL_GRACE_S + KILL_GRACE_S + 1)
        stopper.done()
        if process.stdout is not None:
            process.stdout.close()
    return _outcome(tracker, code, job, log_file)


def _outcome(tracker: _Tracker, code: int, job: JobContext, log_file: Path) -> dict:
    final = tracker.final or {}
    kind = final.get("event")
    if kind == "done":
        if code != 0:
            log.warning("EasyPhoto: the training process reported its result, then exited with %s", _describe_exit(code))
        result = final.get("result")
        result = dict(result) if isinstance(result, dict) else {"result": result}
        result["log"] = str(log_file)
        return result
    if kind == "cancelled" or job.cancelled:
        resume = _resume_hint(tracker, log_file)
        raise Cancelled(f"The training was cancelled at step {tracker.step}.", hint=resume, phase="train")
    if kind == "error":
        data = final.get("error")
        raise ChildError(data if isinstance(data, dict) else {"message": str(data)}, log_file=log_file)
    raise EasyPhotoError(
        f"The training process ended without a result ({_describe_exit(code)}) at step {tracker.step}"
        f"{_last_log_line(log_file)}.",
        phase="train",
        hint=_resume_hint(tracker, log_file),
    )


def resume_sentence(step: int) -> str:
    """How to continue a stopped training, the same words in every message (job hints, interrupted records)."""
    return f"submit the training again with resume: true / --resume to continue from step {step}"


def _resume_hint(tracker: _Tracker, log_file: Path) -> str:
    saved = _saved_step(log_file)  # state.json is authoritative: a stop saves a checkpoint without an event
    step = saved if saved is not None else tracker.checkpoint_step
    if step:
        return f"{resume_sentence(step)} (log: {log_file})"
    return f"no checkpoint was saved yet: submit the training again to start it over (log: {log_file})"


def _saved_step(log_file: Path) -> int | None:
    """The step of the resumable state in the identity's checkpoints folder (when no event said it)."""
    try:
        return _state_step(read_spec(log_file.parent / "spec.json").checkpoints)
    except Exception:
        return None


def _state_step(checkpoints_dir: Path) -> int | None:
    """last_step of the trainer's state.json in `checkpoints_dir`, or None."""
    try:
        return _int(read_json(Path(checkpoints_dir) / "state.json").get("last_step"))
    except Exception:
        return None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = " - killed, e.g. by the out-of-memory killer" if -code == getattr(signal, "SIGKILL", 9) else ""
        return f"{name}{extra}"
    return f"exit code {code}"


def _last_log_line(log_file: Path) -> str:
    try:
        with open(log_file, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [x.strip() for x in f.read().decode("utf-8", "replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return f"; last log line: {lines[-1][:300]}" if lines else ""


class _Stopper:
    """Cancel: stop file now, terminate() after CANCEL_GRACE_S, kill() KILL_GRACE_S later (timers, never blocking
    the thread that calls JobQueue.cancel)."""

    def __init__(self, process: subprocess.Popen, stop_file: Path):
        self.process, self.stop_file = process, stop_file
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self._requested = False

    def request(self) -> None:
        with self._lock:
            if self._requested:
                return
            self._requested = True
            try:
                self.stop_file.touch()
            except OSError as exc:
                log.warning("EasyPhoto: could not create %s (%s); terminating the training", self.stop_file, exc)
                self._signal(self.process.terminate)
            for delay, action in ((CANCEL_GRACE_S, self.process.terminate),
                                  (CANCEL_GRACE_S + KILL_GRACE_S, self.process.kill)):
                timer = threading.Timer(delay, self._signal, (action,))
                timer.daemon = True
                timer.start()
                self._timers.append(timer)

    def _signal(self, action) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                action()

    def done(self) -> None:
        with self._lock:
            self._requested = True  # a late cancel has nothing left to stop
            for timer in self._timers:
                timer.cancel()
