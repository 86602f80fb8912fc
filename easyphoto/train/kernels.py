"""Two exact rewrites of UNet computations the trainer installs while it trains (speed levers of TrainConfig).

Both compute the same function as the code they stand in for, so the learned weights match the lever-off run up to
float rounding (tests/test_trainer.py checks each against it):

* **Small 3×3 convolutions as one matrix product** (`small_conv_matmul`). On a CPU, oneDNN's convolution is slow
  on feature maps of a few pixels: at 128 px the SD 1.5 UNet's two lowest levels are 4×4 and 2×2, where a
  1280-channel 3×3 convolution is a product of a handful of rows with a 1280 × 11520 weight. Unfolded (im2col)
  into one GEMM, forward and backward measured 2-4× faster there, and slower from 8×8 up (bench/train_step.py).
* **Cross-attention keys and values computed once** (`shared_cross_attention`). When every sample of a batch has
  the same caption (the accumulated micro-steps of a step run as one batch), the UNet gets that caption's text
  states once (batch 1) and each cross-attention projects them to keys and values once, broadcast over the batch.
  The gradient reaching the text states is the sum over the samples, as with one copy per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMALL_CONV_MAX_PIXELS = 16  # 4×4: the largest feature map where the GEMM measured faster on a CPU


def _is_plain_3x3(conv: torch.nn.Module) -> bool:
    """A 3×3 convolution with zero padding 1, stride 1 (the resnets, the upsamplers) or 2 (the downsamplers), not a
    LoRA wrapper."""
    return (
        type(conv) is torch.nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride in ((1, 1), (2, 2))
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def conv3x3_as_matmul(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(x) as unfold + one matrix product: rows = every output pixel of every sample, columns = out channels."""
    stride = conv.stride[0]
    batch, height, width = x.shape[0], (x.shape[2] - 1) // stride + 1, (x.shape[3] - 1) // stride + 1
    rows = F.unfold(x, 3, padding=1, stride=stride).transpose(1, 2).reshape(batch * height * width, -1)
    weight = conv.weight.reshape(conv.out_channels, -1).t()
    out = rows @ weight if conv.bias is None else torch.addmm(conv.bias, rows, weight)
    return out.view(batch, height, width, conv.out_channels).permute(0, 3, 1, 2).contiguous()


class _SmallConvForward:
    """Instance `forward` of a patched convolution: small CPU feature maps take the GEMM, everything else the
    module's own forward (GPU, larger maps, validation renders at full size)."""

    def __init__(self, conv: torch.nn.Conv2d, max_pixels: int):
        self.conv, self.max_pixels = conv, max_pixels
        self.calls = 0  # how many inputs took the matrix product (tests count it)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.conv.stride[0]
        out_pixels = ((x.shape[-2] - 1) // stride + 1) * ((x.shape[-1] - 1) // stride + 1)
        if x.device.type == "cpu" and x.ndim == 4 and out_pixels <= self.max_pixels:
            self.calls += 1
            return conv3x3_as_matmul(self.conv, x)
        return type(self.conv).forward(self.conv, x)


def install_small_conv_matmul(model: torch.nn.Module, max_pixels: int = SMALL_CONV_MAX_PIXELS) -> list[_SmallConvForward]:
    """Route `model`'s plain 3×3 convolutions through conv3x3_as_matmul on small CPU feature maps; returns the
    installed forwards (remove_small_conv_matmul undoes it)."""
    installed = []
    for module in model.modules():
        if _is_plain_3x3(module) and "forward" not in vars(module):
            module.forward = _SmallConvForward(module, max_pixels)
            installed.append(module.forward)
    return installed


def remove_small_conv_matmul(installed: list[_SmallConvForward]) -> None:
    for forward in installed:
        if vars(forward.conv).get("forward") is forward:
            del forward.conv.forward


class SharedTextAttention:
    """diffusers attention processor: `inner` (AttnProcessor2_0 or AttnProcessor) for everything, except a
    cross-attention whose text states have batch 1 for a batch of samples. There the keys and values are projected
    once and broadcast; the query, SDPA and output projection run as usual."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        batch = hidden_states.shape[0]
        if encoder_hidden_states is None or encoder_hidden_states.shape[0] == batch:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        _check_plain_cross_attention(attn, hidden_states, encoder_hidden_states, attention_mask)
        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        # One copy per sample of the projected keys/values (77 tokens: cheap), so that every SDPA kernel sees the
        # strides it expects; its backward sums the samples' gradients into the one projection.
        key, value = key.expand(batch, -1, -1).contiguous(), value.expand(batch, -1, -1).contiguous()
        heads, head_dim = attn.heads, key.shape[-1] // attn.heads
        query = query.view(batch, -1, heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def _check_plain_cross_attention(attn, hidden_states, encoder_hidden_states, attention_mask) -> None:
    """The broadcast path covers the SD 1.5 / SDXL UNet's cross-attention only; anything else is a bug to report,
    not a silently different computation."""
    unusual = [
        name for name, present in (
            ("a 4-D input", hidden_states.ndim != 3),
            ("an attention mask", attention_mask is not None),
            ("a group norm", getattr(attn, "group_norm", None) is not None),
            ("a spatial norm", getattr(attn, "spatial_norm", None) is not None),
            ("a cross norm", bool(getattr(attn, "norm_cross", None))),
            ("q/k norms", getattr(attn, "norm_q", None) is not None or getattr(attn, "norm_k", None) is not None),
            ("text states of another batch than 1", encoder_hidden_states.shape[0] != 1),
        ) if present
    ]
    if unusual:
        raise ValueError(f"Shared cross-attention supports the SD UNet's plain cross-attention, not one with "
                         f"{', '.join(unusual)}; turn shared_cross_attention off.")


def set_attention(unet, kind: str, shared_text: bool) -> None:
    """Install `kind` attention ("sdpa" or "classic") on every attention of `unet`; with `shared_text`, wrapped so
    that batch-1 text states are projected once (the SDPA path, which classic, the lever-off comparison, is not)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    inner = AttnProcessor2_0() if kind == "sdpa" else AttnProcessor()
    unet.set_attn_processor(SharedTextAttention(inner) if shared_text else inner)
