"""Double of AUTOMATIC1111/stable-diffusion-webui:extensions-builtin/Lora/network_lora.py: plain LoRA modules.

A module with ``lora_up.weight`` and ``lora_down.weight`` (``lora_mid.weight`` optional, LoCon's CP form) on a
Linear-like layer (Linear, MultiheadAttention's out_proj type, MultiheadAttention itself) or a Conv2d; any other
layer type raises AssertionError at load time, as the real host does. The update is ``up @ down`` reshaped to
``[out, in]`` (+ the down weight's kernel for Conv2d), times alpha / rank and the te or unet multiplier. The double
keeps the tensors (reshaped the way the real torch.nn.Linear/Conv2d stand-ins would hold them) instead of modules.
"""

from __future__ import annotations

import network

_LINEAR_TYPES = ("Linear", "NonDynamicallyQuantizableLinear", "MultiheadAttention")


class ModuleTypeLora(network.ModuleType):
    def create_module(self, net: network.Network, weights: network.NetworkWeights):
        if all(x in weights.w for x in ["lora_up.weight", "lora_down.weight"]):
            return NetworkModuleLora(net, weights)
        return None


class NetworkModuleLora(network.NetworkModule):
    def __init__(self, net: network.Network, weights: network.NetworkWeights):
        super().__init__(net, weights)
        self.up_model = self.create_module(weights.w, "lora_up.weight")
        self.down_model = self.create_module(weights.w, "lora_down.weight")
        self.mid_model = self.create_module(weights.w, "lora_mid.weight", none_ok=True)
        self.dim = weights.w["lora_down.weight"].shape[0]

    def create_module(self, weights, key, none_ok=False):
        """The weight as the real host's stand-in layer holds it: [out, in] for a Linear-like target, [out, in, kh,
        kw] for a Conv2d target (the down weight keeps the layer's kernel when it is not 1x1)."""
        weight = weights.get(key)
        if weight is None and none_ok:
            return None
        layer_type = getattr(self.sd_module, "type_name", type(self.sd_module).__name__)
        is_linear = layer_type in _LINEAR_TYPES
        is_conv = layer_type == "Conv2d"
        if is_linear:
            return weight.reshape(weight.shape[0], -1).detach().float()
        if is_conv and key in ("lora_down.weight", "lora_mid.weight", "lora_up.weight"):
            if weight.dim() == 2:
                weight = weight.reshape(weight.shape[0], -1, 1, 1)
            return weight.detach().float()
        raise AssertionError(f"Lora layer {self.network_key} matched a layer with unsupported type: {layer_type}")

    def calc_updown(self, orig_weight):
        up = self.up_model.to(orig_weight.device, dtype=orig_weight.dtype)
        down = self.down_model.to(orig_weight.device, dtype=orig_weight.dtype)
        output_shape = [up.size(0), down.size(1)]
        if self.mid_model is not None:
            raise NotImplementedError("the double does not model LoCon's CP-decomposed (lora_mid) modules")
        if len(down.shape) == 4:
            output_shape += down.shape[2:]
        dyn_dim = self.network.dyn_dim
        if dyn_dim is not None:  # <lora:name:te:unet:dyn>: keep the first dyn_dim ranks
            dyn_dim = min(int(dyn_dim), down.shape[0])
            up, down = up[:, :dyn_dim], down[:dyn_dim]
        updown = (up.reshape(up.size(0), -1) @ down.reshape(down.size(0), -1)).reshape(output_shape)
        return self.finalize_updown(updown, orig_weight, output_shape)

    def forward(self, x, y):
        raise NotImplementedError("the double applies networks to weights only (lora_functional off)")
