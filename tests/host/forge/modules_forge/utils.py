"""Double of lllyasviel/stable-diffusion-webui-forge:modules_forge/utils.py (``prepare_free_memory`` only).

Forge's upscalers call ``prepare_free_memory()`` before they load a model: it frees room for inference on the torch
device (``aggressive=True``: unloads every model). The double records each call's ``aggressive`` flag in
``free_memory_calls`` (double-only).
"""

free_memory_calls = []  # double-only


def prepare_free_memory(aggressive=False):
    free_memory_calls.append(aggressive)
