"""Test double of the AUTOMATIC1111 Stable Diffusion WebUI (and Forge) host, for CI without GPU or WebUI.

Layout mirrors the real import names (``launch``, ``modules.*``, ``extensions-builtin/Lora``,
``extensions/sd-webui-controlnet``, ``forge/modules_forge``); ``harness.WebUIHost`` puts this folder first on
``sys.path`` and runs the real startup order. Written from shared/reference/host-api.md section 7 (no host code).
"""
