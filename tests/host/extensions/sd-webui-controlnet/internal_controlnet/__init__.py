"""Double of Mikubill/sd-webui-controlnet:internal_controlnet (the importable API package, CN >= 1.1.448)."""
