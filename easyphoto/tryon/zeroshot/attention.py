"""Attention processors the try-on backends install on diffusers' UNet2DConditionModel.

Two mechanisms from the papers, written against diffusers' `Attention` module (its to_q/to_k/to_v/to_out weights
are the published ones; only the computation around them changes):

- Reference attention (Leffa, OOTDiffusion): a reference UNet sees the garment, and each of its self-attention
  layers (`attn1`) records the tokens it attends over; the generative UNet's self-attention layer of the same name
  then attends over its own tokens AND the garment's (keys and values from both, queries from its own), which is
  what "concatenate the two feature maps, self-attend, keep the person's half" computes, without the discarded
  half's queries.
- Skipped cross-attention (CatVTON): no text encoder and no cross-attention; the `attn2` layers return their input
  unchanged (so the block's residual adds the normalised hidden states, as the published model was trained).

    bank = ReferenceBank()
    reference_unet.set_attn_processor({...attn1: ReferenceWriter(bank, name)})   # leffa.py, ootd.py install them
    generative_unet.set_attn_processor({...attn1: ReferenceReader(bank, name)})
    reference_unet(garment_latent, t, ...)             # fills the bank, one entry per attn1 layer
    generative_unet(person_input, t, ...)              # reads it
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ReferenceBank:
    """The garment tokens of each self-attention layer, keyed by the layer's module name (both UNets share the
    architecture, so names match whatever order the blocks run in)."""

    def __init__(self):
        self.tokens: dict[str, torch.Tensor] = {}

    def clear(self) -> None:
        self.tokens.clear()


def attend(attn, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """diffusers' scaled-dot-product attention of `attn` with queries from `hidden_states`, keys/values from
    `context` (both (batch, tokens, channels); SD 1.5's transformer blocks have no group/spatial norm)."""
    batch = hidden_states.shape[0]
    query = attn.to_q(hidden_states)
    key = attn.to_k(context)
    value = attn.to_v(context)
    head_dim = key.shape[-1] // attn.heads
    query, key, value = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
    if getattr(attn, "norm_q", None) is not None:
        query = attn.norm_q(query)
    if getattr(attn, "norm_k", None) is not None:
        key = attn.norm_k(key)
    out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


class ReferenceWriter:
    """attn1 of the reference UNet: ordinary self-attention that also records its input tokens."""

    def __init__(self, bank: ReferenceBank, name: str):
        self.bank, self.name = bank, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        self.bank.tokens[self.name] = hidden_states
        return attend(attn, hidden_states, hidden_states)


class ReferenceReader:
    """attn1 of the generative UNet: self-attention over its own tokens and the reference's of the same layer.
    `norm`: the block's own first LayerNorm, applied to the reference tokens when the bank holds them un-normalised
    (OOTDiffusion records a block's input; Leffa records attn1's, already normalised)."""

    def __init__(self, bank: ReferenceBank, name: str, norm=None):
        self.bank, self.name, self.norm = bank, name, norm

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        garment = self.bank.tokens.get(self.name)
        if garment is None:
            raise RuntimeError(f"No reference tokens for {self.name}: run the reference UNet first.")
        if self.norm is not None:
            garment = self.norm(garment)
        if garment.shape[0] != hidden_states.shape[0]:  # one garment pass shared by a guidance batch
            garment = garment.expand(hidden_states.shape[0], *garment.shape[1:])
        return attend(attn, hidden_states, torch.cat([hidden_states, garment.to(hidden_states.dtype)], dim=1))


class SkipAttention:
    """A cross-attention that is not there: the block's residual adds its (normalised) input back."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        return hidden_states


class PlainAttention:
    """diffusers' self-attention, through `attend` (the same arithmetic as the readers and writers)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        return attend(attn, hidden_states, context)


__all__ = ["PlainAttention", "ReferenceBank", "ReferenceReader", "ReferenceWriter", "SkipAttention", "attend"]
