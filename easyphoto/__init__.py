"""EasyPhoto: identity LoRA training and studio portraits, as a WebUI extension and a standalone app.

Importing this package is cheap on purpose (the WebUI imports it while building its UI): no torch,
no gradio, no model loading here. Heavy modules are imported inside the functions that need them.
"""

__version__ = "0.1.0"
