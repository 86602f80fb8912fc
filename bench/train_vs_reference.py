"""Our LoRA trainer against another trainer command, side by side: load time, seconds per optimizer step, peak RSS.

Both run as child processes on the same full-size SD 1.5 architecture (the shipped configs, random weights: no
download), the same photos and the same knobs (resolution, batch 1, gradient accumulation, rank/alpha, text
encoder trained at its own learning rate, float32, threads), alternating, `--runs` times each. Ours runs at its
default speed levers (cached latents, batched micro-steps, one text-encoder pass per step, shared cross-attention
keys, small convolutions as matrix products on a CPU, fused AdamW, SDPA); `--ours-set cache_latents=false` etc.
turns one off.

The other trainer is any command line, given as a template whose placeholders are filled in per run:

    {python} {model_dir} {dataset} {out} {resolution} {steps} {rank} {alpha} {lr} {te_lr} {accum} {seed}

Its optimizer steps are timed from its tqdm progress bar ("k/N" on stdout or stderr; most trainers, the
reference's train_lora.py too, update it once per optimizer step); its load time is the time to its first bar
("0/N"), or, without one, to the first step less one step time. README.md ("Training speed") says how to point
it at the reference EasyPhoto's train_lora.py, which you clone yourself.

    python bench/train_vs_reference.py --other 'TEMPLATE' [--resolution 128] [--steps 6] [--runs 4]
    python bench/train_vs_reference.py --ours-only ...         # our numbers alone (no other command)

Peak RSS is the child's own (os.wait4); seconds per step are the mean of steps 2..N and the median of 2..N
(step 1 carries warm-up). Ratios are other / ours: above 1 means ours takes less.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CAPTION = "easyphoto_face, easyphoto, 1person"
PLACEHOLDERS = ("python", "model_dir", "dataset", "out", "resolution", "steps", "rank", "alpha", "lr", "te_lr",
                "accum", "seed")
TQDM_STEP = re.compile(r"(?<![\d/])(\d+)/(\d+) \[")


@dataclass
class Knobs:
    resolution: int = 128
    steps: int = 6
    rank: int = 128
    alpha: int = 64
    lr: float = 1e-4
    te_lr: float = 5e-5
    accum: int = 4
    seed: int = 42
    threads: int = 2


@dataclass
class Run:
    label: str
    load_seconds: float | None = None
    step_times: list[float] = field(default_factory=list)  # seconds of optimizer steps 1..N
    peak_rss_mib: float | None = None
    returncode: int = 0
    tail: str = ""
    first_step_timed: bool = True

    @property
    def timed(self) -> list[float]:
        """Steps 2..N: step 1 carries the warm-up."""
        return (self.step_times[1:] if self.first_step_timed else self.step_times) or self.step_times

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.timed) if self.timed else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.timed) if self.timed else None


# ---------------------------------------------------------------------------------------------- inputs


def make_dataset(folder: Path, count: int = 8, size: int = 512) -> Path:
    """dataset.py's layout (train/N.jpg + N.txt + metadata.jsonl), random photos: the speed does not care."""
    import numpy as np
    from PIL import Image

    if (folder / "metadata.jsonl").is_file():
        return folder
    (folder / "train").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / "train" / f"{i}.jpg")
        (folder / "train" / f"{i}.txt").write_text(CAPTION)
        lines.append(json.dumps({"file_name": f"train/{i}.jpg", "text": CAPTION}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def make_model(folder: Path, tiny: bool) -> Path:
    """The full SD 1.5 architecture with random weights (diffusers folder), or the test kit's tiny one."""
    if (folder / "unet").is_dir():
        return folder
    if tiny:
        from tests.kit import tiny_sd_paths

        return tiny_sd_paths(folder.parent / "kit").txt2img
    from train_step import random_sd15

    return random_sd15(folder)


# ---------------------------------------------------------------------------------------------- children


def run_child(label: str, command: list[str], env: dict, *, ours: bool, steps: int) -> Run:
    """Start `command`, timestamp its optimizer steps as they are reported, and read its peak RSS at the end."""
    run = Run(label)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, bufsize=0)
    marks: list[tuple[int, float]] = []  # (optimizer step reached, when)
    tail: list[str] = []
    reader = threading.Thread(target=_read, args=(process, ours, marks, run, started, tail, steps), daemon=True)
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    reader.join(timeout=10)
    run.returncode = os.waitstatus_to_exitcode(status)
    process.returncode = run.returncode
    run.peak_rss_mib = usage.ru_maxrss / 1024  # KiB on Linux
    run.tail = "".join(tail)[-2000:]
    if not ours:
        _steps_from_marks(run, marks, steps)
    return run


def _read(process, ours: bool, marks: list, run: Run, started: float, tail: list, steps: int) -> None:
    buffer = b""
    while True:
        chunk = process.stdout.read1(65536) if hasattr(process.stdout, "read1") else process.stdout.read(4096)
        if not chunk:
            break
        now = time.perf_counter() - started
        buffer += chunk
        *pieces, buffer = re.split(rb"[\r\n]", buffer)
        for piece in pieces:
            line = piece.decode("utf-8", "replace")
            tail.append(line + "\n")
            del tail[:-40]
            if ours:
                _our_event(line, run)
            else:
                _mark(line, marks, now, steps)
        if not ours:  # tqdm writes "\r" before a bar, not after: the bar being written is the unfinished piece
            _mark(buffer.decode("utf-8", "replace"), marks, now, steps)


def _mark(text: str, marks: list[tuple[int, float]], now: float, steps: int) -> None:
    """Record when the training bar reaches each step. Only bars counting to `steps` qualify, and a bar that
    starts again at 0 after progress replaces the marks: other bars (the reference's datasets library prints
    "17/17 [", "8/8 [" while loading) come before the training's own."""
    for match in TQDM_STEP.finditer(text):
        step, total = int(match.group(1)), int(match.group(2))
        if total != steps:
            continue
        if step == 0 and marks and marks[-1][0] > 0:
            marks.clear()
        if not marks or step > marks[-1][0]:
            marks.append((step, now))


def _our_event(line: str, run: Run) -> None:
    if not line.startswith("{"):
        return
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return
    if event.get("event") == "load":
        run.load_seconds = float(event["seconds"])
    elif event.get("event") == "step":
        run.step_times.append(float(event["seconds"]))


def _steps_from_marks(run: Run, marks: list[tuple[int, float]], steps: int) -> None:
    """Step times from the progress bar's timestamps: the time from reaching step k-1 to reaching k (a jump over
    several steps between two reads is shared out evenly)."""
    for (before, then), (step, when) in zip(marks, marks[1:], strict=False):
        run.step_times.extend([(when - then) / (step - before)] * (step - before))
    zero = next((when for step, when in marks if step == 0), None)
    run.first_step_timed = zero is not None  # without a 0/N bar, step 1 (the warm-up) has no start to time from
    if zero is not None:
        run.load_seconds = zero
    elif marks:
        run.load_seconds = max(marks[0][1] - (run.median or 0.0), 0.0)
    if len(run.step_times) < min(steps, 2):
        run.tail += "\n(bench: fewer progress-bar steps than asked were seen)"


def our_command(args, knobs: Knobs, model: Path, dataset: Path, out: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", "--model", str(model), "--dataset",
            str(dataset), "--out", str(out), "--knobs", json.dumps(knobs.__dict__), "--ours-set",
            *(args.ours_set or [])]


def other_command(template: str, knobs: Knobs, model: Path, dataset: Path, out: Path) -> list[str]:
    values = {"python": sys.executable, "model_dir": model, "dataset": dataset, "out": out, **knobs.__dict__}
    words = shlex.split(template)
    try:
        return [word.format(**{k: values[k] for k in PLACEHOLDERS}) for word in words]
    except (KeyError, IndexError, ValueError) as exc:
        raise SystemExit(f"--other: the template has an unknown placeholder or brace ({exc}); the placeholders "
                         f"are {', '.join('{' + p + '}' for p in PLACEHOLDERS)}.") from exc


def child_main(args) -> int:
    """Our trainer in this process: prints {"event": "load"|"step", "seconds": ...} lines on stdout."""
    import torch
    from train_step import at_resolution

    from easyphoto.cli_common import with_overrides
    from easyphoto.config import TrainConfig
    from easyphoto.sd.base_model import load_base
    from easyphoto.train.trainer import train_lora

    knobs = Knobs(**json.loads(args.knobs))
    torch.set_num_threads(knobs.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    base = load_base(args.model, device=device)
    print(json.dumps({"event": "load", "seconds": time.perf_counter() - started}), flush=True)
    values = dict(resolution=max(knobs.resolution, 256), rank=knobs.rank, network_alpha=knobs.alpha,
                  learning_rate=knobs.lr, text_encoder_learning_rate=knobs.te_lr, train_text_encoder=True,
                  batch_size=1, gradient_accumulation_steps=knobs.accum, validation=False,
                  validation_every=100_000, seed=knobs.seed, mixed_precision="no", keep_checkpoints=0)
    config = at_resolution(with_overrides(TrainConfig(**values), args.ours_set or [], "train"), knobs.resolution)

    def timing(kind: str, step: int, seconds: float) -> None:
        if kind == "step":
            print(json.dumps({"event": "step", "step": step, "seconds": seconds}), flush=True)

    result = train_lora(base, Path(args.dataset), Path(args.out), config, steps=knobs.steps, device=device,
                        on_timing=timing)
    print(json.dumps({"event": "levers", "levers": result.levers}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- report


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def _ratio(theirs: float | None, ours: float | None) -> str:
    return "-" if not theirs or not ours else f"{theirs / ours:.2f}×"


def report(runs: dict[str, list[Run]], knobs: Knobs) -> None:
    print(f"\nresolution {knobs.resolution}, {knobs.steps} optimizer steps × {knobs.accum} micro-steps, batch 1, "
          f"rank {knobs.rank}/alpha {knobs.alpha}, text encoder at {knobs.te_lr}, {knobs.threads} threads")
    print(f"{'trainer':<8} {'runs':>4} {'load s':>8} {'s/step mean':>12} {'s/step median':>14} {'peak RSS MiB':>13}")
    summary = {}
    for label, items in runs.items():
        good = [r for r in items if r.returncode == 0 and r.step_times]
        steps = [t for r in good for t in r.timed]
        row = {
            "load": statistics.median([r.load_seconds for r in good if r.load_seconds is not None] or [0.0]),
            "mean": statistics.mean(steps) if steps else None,
            "median": statistics.median(steps) if steps else None,
            "rss": max((r.peak_rss_mib for r in good if r.peak_rss_mib), default=None),
        }
        summary[label] = row
        print(f"{label:<8} {len(good):>4} {_fmt(row['load']):>8} {_fmt(row['mean']):>12} {_fmt(row['median']):>14} "
              f"{_fmt(row['rss']):>13}")
    if "other" in summary and "ours" in summary:
        o, t = summary["ours"], summary["other"]
        print(f"ratio other/ours: load {_ratio(t['load'], o['load'])}, s/step mean {_ratio(t['mean'], o['mean'])}, "
              f"median {_ratio(t['median'], o['median'])}, peak RSS {_ratio(t['rss'], o['rss'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", help="the other trainer's command template (placeholders: see the docstring)")
    parser.add_argument("--ours-only", action="store_true", help="run our trainer alone")
    parser.add_argument("--ours-set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig changes for ours")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per run (step 1 is not counted)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--accum", type=int, default=4)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--alpha", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--work", type=Path, help="folder for the model and dataset (kept; default a temp folder)")
    parser.add_argument("--model", type=Path, help="an existing SD 1.5 diffusers folder to use instead")
    parser.add_argument("--tiny", action="store_true", help="the test kit's tiny model (a smoke run of the bench)")
    parser.add_argument("--real-size", action="store_true", help="512 px at the defaults (meant for a GPU)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--knobs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)
    if not args.other and not args.ours_only:
        parser.error("give --other 'COMMAND TEMPLATE' (the trainer to compare with) or --ours-only")
    knobs = Knobs(resolution=512 if args.real_size else args.resolution, steps=args.steps, rank=args.rank,
                  alpha=args.alpha, accum=args.accum, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = args.model or make_model(work / ("tiny" if args.tiny else "sd15"), args.tiny)
        dataset = make_dataset(work / "data", count=args.photos)
        env = {**os.environ, "OMP_NUM_THREADS": str(knobs.threads), "MKL_NUM_THREADS": str(knobs.threads),
               "PYTHONUNBUFFERED": "1"}
        runs: dict[str, list[Run]] = {"ours": [], "other": []} if args.other else {"ours": []}
        for index in range(args.runs):
            order = ["ours", "other"] if index % 2 == 0 else ["other", "ours"]
            for label in order:
                if label not in runs:
                    continue
                out = work / f"out-{label}-{index}"
                if label == "ours":
                    command = our_command(args, knobs, model, dataset, out)
                else:
                    command = other_command(args.other, knobs, model, dataset, out)
                run = run_child(label, command, env, ours=label == "ours", steps=knobs.steps)
                runs[label].append(run)
                state = "ok" if run.returncode == 0 and run.step_times else f"FAILED (exit {run.returncode})"
                print(f"run {index + 1} {label}: {state}, load {_fmt(run.load_seconds, ' s')}, "
                      f"s/step {_fmt(run.mean)}, peak RSS {_fmt(run.peak_rss_mib, ' MiB')}", flush=True)
                if state != "ok":
                    print(run.tail, flush=True)
        report(runs, knobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
