"""Random identity LoRAs for the tiny (or real-size) models: the shapes the trainer exports, without training."""

from __future__ import annotations


def random_lora(parts, *, rank: int, scale: float, seed: int, alpha: float | None = None) -> dict:
    """LoraWeights over every target module of each (prefix, model, targets) part: up and down drawn from one
    seeded generator (N(0, 1) × `scale`), so the same arguments always give the same weights."""
    import torch

    from easyphoto.sd import lora as L

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for prefix, model, targets in parts:
        for key in L.module_keys(model, prefix, targets):
            shape = model.get_submodule(key.partition(".")[2]).weight.shape
            tail = tuple(shape[2:])
            down = torch.randn((rank, shape[1], *tail), generator=generator) * scale
            up = torch.randn((shape[0], rank, *tail), generator=generator) * scale
            weights[key] = L.LoraModule(down=down, up=up, alpha=float(rank if alpha is None else alpha))
    return weights
