"""Double of Mikubill/sd-webui-controlnet:scripts/external_code.py: the one-line re-export."""

from internal_controlnet.external_code import *  # noqa: F403
