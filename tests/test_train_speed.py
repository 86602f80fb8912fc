"""The "time to a usable LoRA" projection (easyphoto.train.speed) on made-up timings."""

from __future__ import annotations

import pytest

from easyphoto.train.speed import SpeedReadout, duration


def test_the_projection_counts_steps_checkpoints_and_the_merge_validation():
    readout = SpeedReadout(total_steps=10, start_step=0, checkpoint_every=4, validation=True, levers=["cached latents"])
    for step, seconds in ((1, 9.0), (2, 2.0), (3, 2.0), (4, 4.0)):  # the first step is warm-up: left out
        readout.step_done(step, seconds)
    readout.checkpoint_done(6.0)
    assert readout.seconds_per_step == 2.0
    # 6 steps × 2 s + checkpoints at 8 and 10 × 6 s + the merged LoRA's validation 6 s
    assert readout.remaining_seconds() == pytest.approx(12 + 12 + 6)
    record = readout.record()
    assert record["projected_seconds"] == pytest.approx(9 + 2 + 2 + 4 + 6 + 30)
    assert record["steps_per_second"] == 0.5 and record["levers"] == ["cached latents"]
    assert "compile_seconds" not in record
    message = readout.message(0.12345)
    assert message.startswith("loss 0.1235 · 2.00 s/step (0.50 steps/s) · usable LoRA in about 30 s (53 s in all)")
    assert message.endswith("levers: cached latents")


def test_a_resumed_training_and_the_compile_time():
    readout = SpeedReadout(total_steps=8, start_step=6, checkpoint_every=100, validation=False, levers=[],
                           compiling=True)
    assert readout.remaining_seconds() is None and readout.message(None) == ""
    readout.step_done(7, 50.0)
    readout.step_done(8, 1.0)
    assert readout.remaining_seconds() == 0  # the last checkpoint and no validation: nothing left
    assert readout.compile_seconds() == 49.0 and readout.record()["compile_seconds"] == 49.0
    assert "compiled in 49 s" in readout.message(0.5)


def test_durations_read_naturally():
    assert [duration(s) for s in (4, 89, 600, 7199, 7500)] == ["4 s", "89 s", "10 min", "2 h 00 min", "2 h 05 min"]


def test_the_train_tab_says_the_finished_trainings_speed_and_levers():
    from easyphoto.ui.train_tab import speed_text

    result = {"seconds": 90.0, "speed": {"seconds_per_step": 0.262, "levers": ["cached latents", "fused AdamW"]}}
    assert speed_text(result) == ("\n\n0.26 s per optimizer step, 1.5 min in all; speed levers: cached latents, "
                                  "fused AdamW.")
    assert speed_text({"seconds": 3.0}) == ""  # a record from before the readout existed
