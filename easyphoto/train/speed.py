"""The "time to a usable LoRA" readout: training speed measured as it runs, the time still to go, the levers used.

    readout = SpeedReadout(total_steps=800, start_step=0, checkpoint_every=100, validation=True, levers=[...])
    readout.step_done(step, seconds)           # one optimizer step, checkpoints and validation excluded
    readout.checkpoint_done(seconds)           # one checkpoint with its validation render
    readout.message(loss) / readout.record()   # the progress line / the job record's "speed" entry

The projection counts what is still to run: the remaining optimizer steps at the median step time so far (the
first step is left out once there are others: it carries warm-up and, with compile_unet, the compiling), the
remaining checkpoints at their mean time, and one more validation for the merged LoRA.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class SpeedReadout:
    total_steps: int
    start_step: int  # the step a resumed training continues after (0 = fresh)
    checkpoint_every: int
    validation: bool
    levers: list[str]
    compiling: bool = False  # compile_unet: the first step's extra time is the compile time
    step_seconds: list[float] = field(default_factory=list)
    checkpoint_seconds: list[float] = field(default_factory=list)
    step: int = 0

    def __post_init__(self) -> None:
        self.step = self.start_step

    def step_done(self, step: int, seconds: float) -> None:
        self.step = step
        self.step_seconds.append(max(float(seconds), 0.0))

    def checkpoint_done(self, seconds: float) -> None:
        self.checkpoint_seconds.append(max(float(seconds), 0.0))

    @property
    def seconds_per_step(self) -> float | None:
        """Median seconds per optimizer step, the first (warm-up) step left out once there are others."""
        timed = self.step_seconds[1:] or self.step_seconds
        return statistics.median(timed) if timed else None

    def remaining_seconds(self) -> float | None:
        per_step = self.seconds_per_step
        if per_step is None:
            return None
        left = max(self.total_steps - self.step, 0)
        checkpoints = self._checkpoints_after(self.step)
        per_checkpoint = statistics.mean(self.checkpoint_seconds) if self.checkpoint_seconds else 0.0
        merge = per_checkpoint if self.validation and left else 0.0  # the merged LoRA is validated once more
        return left * per_step + checkpoints * per_checkpoint + merge

    def _checkpoints_after(self, step: int) -> int:
        """Checkpoints still to come after `step`: every checkpoint_every steps and at the last step."""
        every = max(self.checkpoint_every, 1)
        regular = self.total_steps // every - step // every
        return regular + (1 if self.total_steps % every and step < self.total_steps else 0)

    def compile_seconds(self) -> float | None:
        if not self.compiling or len(self.step_seconds) < 2:
            return None
        return max(self.step_seconds[0] - (self.seconds_per_step or 0.0), 0.0)

    def record(self) -> dict:
        """The job record's "speed": measured speed, the projection and the levers (JSON-ready)."""
        per_step, remaining = self.seconds_per_step, self.remaining_seconds()
        spent = sum(self.step_seconds) + sum(self.checkpoint_seconds)
        compile_seconds = self.compile_seconds()
        return {
            "seconds_per_step": _round(per_step),
            "steps_per_second": _round(1.0 / per_step) if per_step else None,
            "remaining_seconds": _round(remaining),
            "projected_seconds": _round(spent + remaining) if remaining is not None else None,
            "steps_timed": len(self.step_seconds),
            "levers": list(self.levers),
            **({"compile_seconds": _round(compile_seconds)} if compile_seconds is not None else {}),
        }

    def message(self, loss: float | None) -> str:
        """One progress line: loss, speed, the time to a usable LoRA, the levers in use."""
        parts = [f"loss {loss:.4f}"] if loss is not None else []
        per_step, remaining = self.seconds_per_step, self.remaining_seconds()
        if per_step:
            parts.append(f"{per_step:.2f} s/step ({1.0 / per_step:.2f} steps/s)")
        if remaining is not None:
            total = sum(self.step_seconds) + sum(self.checkpoint_seconds) + remaining
            parts.append(f"usable LoRA in about {duration(remaining)} ({duration(total)} in all)")
        compile_seconds = self.compile_seconds()
        if compile_seconds is not None:
            parts.append(f"compiled in {duration(compile_seconds)}")
        if self.levers:
            parts.append("levers: " + ", ".join(self.levers))
        return " · ".join(parts)


def duration(seconds: float) -> str:
    """'45 s', '12 min', '2 h 05 min'."""
    seconds = max(float(seconds), 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)
