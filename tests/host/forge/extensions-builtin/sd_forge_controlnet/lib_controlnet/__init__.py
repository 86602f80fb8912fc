"""Double of Forge's extensions-builtin/sd_forge_controlnet/lib_controlnet (``from lib_controlnet import ...``)."""
