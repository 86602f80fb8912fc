"""Diffusion hosts behind the Generator protocol: `webui` (inside the WebUI) and `diffusers` (standalone)."""
