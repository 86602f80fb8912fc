"""What training and inference share about Stable Diffusion 1.5: the LoRA file format (:mod:`easyphoto.sd.lora`)
and loading a base model (:mod:`easyphoto.sd.base_model`, with the shipped config folder ``sd15/``).

Capability layers (generation, backends, portrait) import this package, never easyphoto.train.
"""
