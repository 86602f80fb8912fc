"""Double of lllyasviel/stable-diffusion-webui-forge:modules_forge/config.py."""

always_disabled_extensions = ["sd-webui-controlnet", "multidiffusion-upscaler-for-automatic1111", "forge_space_example"]
