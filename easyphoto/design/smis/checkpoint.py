"""Checkpoints of the native generator's training, all in safetensors (no pickle anywhere):

    checkpoints/step_00100.safetensors   generator.*, encoder.*, discriminator.* weights and the two Adam states as
                                         tensors (opt_g.<param>.<exp_avg|exp_avg_sq|step>, opt_d.…)
    checkpoints/step_00100.json          step, seed, the architecture, the step's losses: written last, so a
                                         checkpoint without its JSON (a crash while saving) is never resumed from
    generator.safetensors                the latest generator alone: what inference loads

Everything that decides the next step is in the checkpoint (weights, spectral-norm vectors, Adam moments and step
counts) or follows from (seed, step) (data order, flips, noise), so a resumed training continues bit for bit.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from easyphoto.store import atomic_path, atomic_write_json, read_json

FORMAT = "easyphoto-smis-1"
_STEP_FILE = re.compile(r"step_(\d{5,})\.json")


def checkpoint_name(step: int) -> str:
    return f"step_{step:05d}"


def module_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam's per-parameter state as flat tensors; the hyper-parameters come from the config, not the file."""
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            value = value if torch.is_tensor(value) else torch.tensor(value, dtype=torch.float32)
            tensors[f"{prefix}.{index}.{name}"] = value.detach().cpu().contiguous()
    return tensors


def load_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            index, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def load_module(prefix: str, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    module.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, **metadata})
    return path


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


def write_checkpoint(folder: Path, step: int, tensors: dict[str, torch.Tensor], info: dict, keep: int) -> Path:
    """Save step `step` (tensors, then its JSON) and delete all but the newest `keep` checkpoints."""
    name = checkpoint_name(step)
    save_tensors(folder / f"{name}.safetensors", tensors, {"step": str(step)})
    atomic_write_json(folder / f"{name}.json", {"format": FORMAT, "step": step, **info})
    for old in checkpoint_steps(folder)[:-keep]:
        for suffix in (".json", ".safetensors"):  # the JSON first: a half-deleted one is never resumed from
            (folder / f"{checkpoint_name(old)}{suffix}").unlink(missing_ok=True)
    return folder / f"{name}.safetensors"


def checkpoint_steps(folder: Path) -> list[int]:
    """Steps of the complete checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    steps = []
    for path in folder.iterdir():
        match = _STEP_FILE.fullmatch(path.name)
        if match and path.with_suffix(".safetensors").is_file():
            steps.append(int(match.group(1)))
    return sorted(steps)


def read_checkpoint(folder: Path, step: int) -> tuple[dict[str, torch.Tensor], dict]:
    name = checkpoint_name(step)
    return load_tensors(folder / f"{name}.safetensors"), read_json(folder / f"{name}.json")
