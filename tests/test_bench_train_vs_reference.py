"""bench/train_vs_reference.py's reading of another trainer's progress bar and its command template."""

from __future__ import annotations

import pytest

from tests.kit.bench_scripts import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("train_vs_reference")


def test_only_the_training_bar_is_timed(bench):
    """The reference prints the datasets library's loading bars first ("17/17 [", "8/8 ["), then its own."""
    marks: list = []
    stream = [
        (1.0, "Resolving data files: 100%|##########| 17/17 [00:00<00:00]"),
        (2.0, "Generating train split: 0/8 [00:00<?]"),
        (2.5, "Generating train split: 8/8 [00:00<00:00]"),
        (12.8, "Steps:   0%|          | 0/8 [00:00<?, ?it/s]"),
        (15.6, "Steps:   0%|          | 0/8 [00:02<?, ?it/s, lr=5e-5, step_loss=1.14]"),  # a postfix refresh
        (23.6, "Steps:  12%|#         | 1/8 [00:10<01:15, 10.72s/it]"),
        (34.1, "Steps:  25%|##        | 2/8 [00:21<01:04, 10.63s/it]"),
        (55.1, "Steps:  50%|####      | 4/8 [00:42<00:42, 10.50s/it]"),  # two steps between two reads
    ]
    for when, text in stream:
        bench._mark(text, marks, when, 8)
    assert marks == [(0, 12.8), (1, 23.6), (2, 34.1), (4, 55.1)]
    run = bench.Run("other")
    bench._steps_from_marks(run, marks, 8)
    assert run.load_seconds == 12.8
    assert run.step_times == pytest.approx([10.8, 10.5, 10.5, 10.5])
    assert run.timed == pytest.approx([10.5, 10.5, 10.5])  # step 1 (warm-up) left out


def test_a_bar_without_zero_times_from_its_first_step(bench):
    marks = [(1, 20.0), (2, 30.0), (3, 41.0)]
    run = bench.Run("other")
    bench._steps_from_marks(run, marks, 3)
    assert run.step_times == [10.0, 11.0] and run.timed == [10.0, 11.0]
    assert run.load_seconds == pytest.approx(20.0 - 10.5)


def test_the_command_template_is_filled_per_run(bench, tmp_path):
    knobs = bench.Knobs(resolution=128, steps=4)
    words = bench.other_command("bash run_ref.sh {model_dir} {dataset} {out} {resolution} {steps} {rank} {alpha} "
                                "{lr} {te_lr} {accum} {seed}", knobs, tmp_path / "m", tmp_path / "d", tmp_path / "o")
    assert words == ["bash", "run_ref.sh", str(tmp_path / "m"), str(tmp_path / "d"), str(tmp_path / "o"), "128", "4",
                     "128", "64", "0.0001", "5e-05", "4", "42"]
    with pytest.raises(SystemExit, match="unknown placeholder.*{model_dir}"):
        bench.other_command("train --model {checkpoint}", knobs, tmp_path, tmp_path, tmp_path)
