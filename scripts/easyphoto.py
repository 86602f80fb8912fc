"""WebUI glue: registrations only (shared/design/ARCHITECTURE.md §2).

Loaded by the WebUI's script loader with this extension's folder first on sys.path, so the `easyphoto` package
is imported here, at the top, and stays cached in sys.modules after the loader restores sys.path
(shared/reference/host-api.md §1.5). Nothing heavy is imported or loaded at this point.
"""

from modules import script_callbacks

from easyphoto.backends import webui

script_callbacks.on_ui_settings(webui.on_ui_settings)
script_callbacks.on_ui_tabs(webui.on_ui_tabs)
script_callbacks.on_app_started(webui.on_app_started)
