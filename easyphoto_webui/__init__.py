"""The WebUI glue behind scripts/easyphoto.py: the callbacks that build the tab, the settings section and the REST
routes (`callbacks`), the host's "Send to" buttons (`paste`) and who may call the API (`api_guard`).

The only code that imports both the host (`modules`) and EasyPhoto's front ends (easyphoto.ui, easyphoto.api,
easyphoto.app); the engine side of the host is easyphoto.backends.webui. Not part of the standalone install: the
WebUI loads it from the extension folder, like scripts/. Nothing is imported here, so loading it is cheap.
"""
