"""Double of lllyasviel/stable-diffusion-webui-forge:modules_forge/forge_version.py."""

version = "2.0.1v1.10.1"
