"""The bridge between peft's LoRA layers (what the trainer optimises) and the shared LoRA format (easyphoto.sd.lora).

Training injects adapter :data:`ADAPTER` with ``peft.inject_adapter_in_model``; :func:`from_peft` reads its layers as
:data:`~easyphoto.sd.lora.LoraWeights` (to save checkpoints and exports), :func:`load_into_peft` copies saved
weights back (resuming, validation). Only training uses peft, so this stays in the training package: inference
reads LoRA files and applies them with :mod:`easyphoto.sd.lora` alone.
"""

from __future__ import annotations

import math

import torch

from easyphoto.sd.lora import LoraFormatError, LoraModule, LoraWeights, modules_under, strip_peft_wrapper

ADAPTER = "default"


def _lora_layer_class():
    from peft.tuners.lora import LoraLayer

    return LoraLayer


def _peft_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    lora_layer = _lora_layer_class()
    return {
        strip_peft_wrapper(name): module
        for name, module in model.named_modules()
        if isinstance(module, lora_layer) and ADAPTER in getattr(module, "lora_A", {})
    }


def from_peft(model: torch.nn.Module, prefix: str, alpha: float | None = None) -> LoraWeights:
    """The LoRA of adapter "default" in `model` (injected with ``peft.inject_adapter_in_model``), float32 copies.

    `alpha` is the ``lora_alpha`` the adapter was created with; it must agree with the layers' own scaling
    (alpha / rank). With ``alpha=None`` it is read from each layer as ``scaling * rank``, which also turns an
    rsLoRA adapter (scaling alpha/√rank) into the equivalent kohya alpha.
    """
    weights: LoraWeights = {}
    for name, layer in _peft_layers(model).items():
        down = layer.lora_A[ADAPTER].weight.detach().float().clone()
        up = layer.lora_B[ADAPTER].weight.detach().float().clone()
        rank = int(down.shape[0])
        layer_alpha = float(layer.scaling[ADAPTER]) * rank
        if alpha is not None and not math.isclose(float(alpha), layer_alpha, rel_tol=1e-6, abs_tol=1e-9):
            raise LoraFormatError(
                f"LoRA layer {prefix}.{name} scales by {layer.scaling[ADAPTER]} (alpha {layer_alpha:g} at rank "
                f"{rank}), not alpha {alpha:g} / {rank}.",
                hint="Read it with alpha=None, or create the adapter with lora_alpha=alpha and use_rslora=False.",
            )
        weights[f"{prefix}.{name}"] = LoraModule(down=down, up=up, alpha=layer_alpha if alpha is None else float(alpha))
    if not weights:
        raise LoraFormatError(f"The {prefix} model has no peft LoRA layers (adapter {ADAPTER!r}).")
    return weights


def load_into_peft(model: torch.nn.Module, prefix: str, weights: LoraWeights) -> None:
    """Copy `weights` (those under `prefix`) into the peft layers of `model`, exactly; the key sets must match."""
    layers = _peft_layers(model)
    mine = modules_under(weights, prefix)
    missing, extra = sorted(set(layers) - set(mine)), sorted(set(mine) - set(layers))
    if missing or extra:
        raise LoraFormatError(
            f"The LoRA weights do not fit the {prefix} model: {len(missing)} LoRA layers have no weights "
            f"(e.g. {missing[:3]}), {len(extra)} weights have no LoRA layer (e.g. {extra[:3]}).",
            hint="Resume only from checkpoints trained with the same targets and model.",
        )
    with torch.no_grad():
        for name, module in mine.items():
            layer = layers[name]
            lora_a, lora_b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            if tuple(lora_a.shape) != tuple(module.down.shape) or tuple(lora_b.shape) != tuple(module.up.shape):
                raise LoraFormatError(
                    f"LoRA {prefix}.{name}: checkpoint shapes {tuple(module.down.shape)}/{tuple(module.up.shape)} "
                    f"differ from the layer's {tuple(lora_a.shape)}/{tuple(lora_b.shape)} (another rank?)."
                )
            lora_a.copy_(module.down.to(lora_a.dtype))
            lora_b.copy_(module.up.to(lora_b.dtype))
            layer.lora_alpha[ADAPTER] = module.alpha
            layer.scaling[ADAPTER] = module.scale
