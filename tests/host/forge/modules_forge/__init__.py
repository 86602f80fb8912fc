"""Double of lllyasviel/stable-diffusion-webui-forge:modules_forge (its presence is how extensions detect Forge)."""
