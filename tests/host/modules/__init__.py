"""The double of the WebUI ``modules`` package (AUTOMATIC1111/stable-diffusion-webui:modules/)."""
