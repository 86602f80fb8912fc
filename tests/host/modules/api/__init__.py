"""Double of the AUTOMATIC1111/stable-diffusion-webui:modules/api package."""
