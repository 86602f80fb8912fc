"""WebUI glue: registrations only (shared/design/ARCHITECTURE.md §2); the callbacks live in easyphoto_webui/.

Loaded by the WebUI's script loader with this extension's folder first on sys.path, so the `easyphoto_webui` and
`easyphoto` packages are imported here, at the top, and stay cached in sys.modules after the loader restores
sys.path (shared/reference/host-api.md §1.5). Nothing heavy is imported or loaded at this point.
"""

from modules import script_callbacks

from easyphoto_webui import callbacks

script_callbacks.on_ui_settings(callbacks.on_ui_settings)
script_callbacks.on_ui_tabs(callbacks.on_ui_tabs)
script_callbacks.on_app_started(callbacks.on_app_started)
