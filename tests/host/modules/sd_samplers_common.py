"""Minimal double of AUTOMATIC1111/stable-diffusion-webui:modules/sd_samplers_common.py."""

from collections import namedtuple

SamplerData = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])


class Sampler:
    """Base of the real samplers; the double never samples."""

    def __init__(self, funcname):
        self.funcname = funcname
        self.config = None
