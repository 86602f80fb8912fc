"""Gradio front end: the EasyPhoto tab (WebUI) and the standalone app share `build_ui`.

Written for gradio 3.41.2 (A1111) and 4.44 (Forge): no `.style()`, no `_js`, no `source=`/`tool=`, and no work at
build time beyond reading the manifest from disk (no model load, no download, no network).
"""

from easyphoto.ui.tabs import build_ui

__all__ = ["build_ui"]
