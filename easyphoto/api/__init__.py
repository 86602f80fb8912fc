"""REST API under /easyphoto/v1, mounted by the WebUI glue and by `python -m easyphoto serve`."""

from easyphoto.api.routes import API_PREFIX, build_router, install

__all__ = ["API_PREFIX", "build_router", "install"]
