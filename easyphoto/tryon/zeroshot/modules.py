"""Building the backends' diffusers modules from published configs and filling them from checked weights.

Modules are built on the `meta` device (no memory, no random initialisation of a 860M-parameter UNet), their
expected keys and shapes are compared with the file's (checkpoints.check_keys names every difference), then the
file's tensors are assigned in place, so a 7 GB checkpoint is never held twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from easyphoto.tryon.zeroshot.checkpoints import CheckpointError, check_keys


def read_config(path: Path, what: str) -> dict:
    """A diffusers/transformers config.json, or an error naming the file and what needs it."""
    if not path.is_file():
        raise CheckpointError(f"{what}: {path} does not exist.",
                              hint="Fetch the backend's models (`python -m easyphoto models fetch --group tryon-any`) "
                                   "or put the published folder there.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{what}: {path} is not readable JSON ({exc}).") from exc


def empty(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """`build()` on the meta device: the module's structure, no weights."""
    with torch.device("meta"):
        return build()


def fill(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, device, dtype) -> torch.nn.Module:
    """`module` with exactly `state`'s tensors (check_keys first), on `device` in `dtype`, in eval mode, frozen."""
    check_keys(state, module.state_dict(), what)
    module.load_state_dict(dict(state), strict=True, assign=True)
    _materialise_position_ids(module)
    left = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()] if tensor.is_meta]
    if left:
        raise CheckpointError(f"{what}: {len(left)} tensors were not filled ({', '.join(left[:5])}).")
    return module.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _materialise_position_ids(module: torch.nn.Module) -> None:
    """CLIP's `position_ids` buffer is not saved by every transformers version (persistent in 4.30, not in 4.31+),
    so it is never taken from a file: it is arange(positions), made here when the meta build left it empty."""
    for owner in module.modules():
        ids = owner._buffers.get("position_ids")
        if ids is not None and ids.is_meta:
            owner._buffers["position_ids"] = torch.arange(ids.shape[-1]).expand(ids.shape).clone()


def without_position_ids(state: Mapping[str, torch.Tensor]) -> dict:
    return {key: value for key, value in state.items() if not key.endswith("position_ids")}


def fill_clip(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, device, dtype) -> torch.nn.Module:
    """fill() for a transformers CLIP model: `position_ids` neither required nor taken from the file."""
    persistent = {k for k in module.state_dict() if k.endswith("position_ids")}
    for key in persistent:  # made a non-persistent buffer, so state_dict() and load_state_dict() ignore it
        owner = module.get_submodule(key.rsplit(".", 1)[0])
        owner._non_persistent_buffers_set.add("position_ids")
    return fill(module, without_position_ids(state), what, device, dtype)


def split(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...], what: str) -> dict[str, dict]:
    """{prefix: {key without prefix: tensor}}; keys under no prefix are refused by name."""
    parts: dict[str, dict] = {prefix: {} for prefix in prefixes}
    stray = []
    for key, tensor in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            stray.append(key)
        else:
            parts[prefix][key[len(prefix):]] = tensor
    if stray:
        check_keys({k: state[k] for k in stray}, {}, what)  # raises, naming the unexpected keys
    return parts


def unet_from_config(config: dict, **overrides):
    from diffusers import UNet2DConditionModel

    return empty(lambda: UNet2DConditionModel.from_config({**config, **overrides}))


def vae_from_config(config: dict):
    from diffusers import AutoencoderKL

    return empty(lambda: AutoencoderKL.from_config(config))


__all__ = ["empty", "fill", "fill_clip", "without_position_ids", "read_config", "split", "unet_from_config", "vae_from_config"]
